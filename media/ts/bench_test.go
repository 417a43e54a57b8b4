package ts

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/asticode/go-astits"
	"github.com/custos-cctv/custos/media/h264"
)

func fixtureBytes(frames []h264.Frame) int64 {
	var n int64
	for _, f := range frames {
		n += int64(len(f.Data))
	}
	return n
}

// BenchmarkMux segments the fixture's 250 frames in 4 s segments, as a
// recorder does: one long-lived Segmenter, the clip replayed 10 s later each
// time. MB/s counts H.264 in; the segments are fresh memory each time.
func BenchmarkMux(b *testing.B) {
	frames := fixtureFrames(b, recordingStart)
	b.SetBytes(fixtureBytes(frames))
	b.ReportAllocs()
	s := NewSegmenter(Config{})
	shift := time.Duration(0)
	for b.Loop() {
		for _, f := range frames {
			f.Time = f.Time.Add(shift)
			if _, err := s.Push(f); err != nil {
				b.Fatal(err)
			}
		}
		shift += clipFrames * clipInterval
	}
}

// BenchmarkMuxAstits muxes the same frames with go-astits' muxer, the
// alternative weighed in the package doc, into one buffer (no segmenting).
func BenchmarkMuxAstits(b *testing.B) {
	frames := fixtureFrames(b, recordingStart)
	b.SetBytes(fixtureBytes(frames))
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		m := astits.NewMuxer(context.Background(), &buf)
		if err := m.AddElementaryStream(astits.PMTElementaryStream{ElementaryPID: PIDVideo, StreamType: astits.StreamTypeH264Video}); err != nil {
			b.Fatal(err)
		}
		m.SetPCRPID(PIDVideo)
		for _, f := range frames {
			pts := int64(PTS(f.Time))
			_, err := m.WriteData(&astits.MuxerData{
				PID: PIDVideo,
				AdaptationField: &astits.PacketAdaptationField{
					RandomAccessIndicator: f.Key,
					HasPCR:                true,
					PCR:                   &astits.ClockReference{Base: pts - int64(pcrDelayTicks)},
				},
				PES: &astits.PESData{
					Header: &astits.PESHeader{
						StreamID: streamIDVideo,
						OptionalHeader: &astits.PESOptionalHeader{
							MarkerBits:      2,
							PTSDTSIndicator: astits.PTSDTSIndicatorOnlyPTS,
							PTS:             &astits.ClockReference{Base: pts},
						},
					},
					Data: append(bytes.Clone(aud), f.Data...),
				},
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkMuxer muxes the fixture into one reused buffer, like for like
// with BenchmarkMuxAstits.
func BenchmarkMuxer(b *testing.B) {
	frames := fixtureFrames(b, recordingStart)
	b.SetBytes(fixtureBytes(frames))
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var m Muxer
		buf = m.AppendTables(buf[:0])
		for _, f := range frames {
			var err error
			if buf, err = m.AppendFrame(buf, f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
