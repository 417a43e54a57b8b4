package release

import (
	"bytes"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
)

// FuzzDemuxTS: the export's demuxer reads decrypted segments, which a
// compromised store could shape at will (under a key it was sent for):
// whatever the bytes, it returns frames inside them or an error, and never
// panics. It is one pass over the packets, so it cannot loop.
func FuzzDemuxTS(f *testing.F) {
	ref := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mux ts.Muxer
	b := mux.AppendTables(nil)
	for i := range 3 {
		b, _ = mux.AppendFrame(b, h264.Frame{Time: ref.Add(time.Duration(i) * 40 * time.Millisecond), Key: i == 0,
			Data: append([]byte{0, 0, 0, 1, 0x65}, bytes.Repeat([]byte{byte(i)}, 300)...)})
	}
	f.Add(b)
	f.Add(b[:ts.PacketSize])
	f.Add(make([]byte, ts.PacketSize))
	// A bounded PES whose length ends inside its own header (this once
	// sliced backwards and panicked).
	short := make([]byte, ts.PacketSize)
	copy(short, []byte{0x47, 0x40 | ts.PIDVideo>>8, ts.PIDVideo & 0xff, 0x10, 0, 0, 1, 0xe0, 0, 1, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1})
	f.Add(short)
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := demuxTS(b, ref)
		if err != nil && len(frames) != 0 {
			t.Fatalf("frames with an error: %v", err)
		}
		for _, fr := range frames {
			if len(fr.Data) > len(b) {
				t.Fatalf("a frame of %d bytes from %d", len(fr.Data), len(b))
			}
		}
		clearFrames(frames)
	})
}

// demuxTS reads back what ts.Muxer writes: the same frames, times (to the
// 90 kHz tick) and keyframe flags.
func TestDemuxTSRoundTrip(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var mux ts.Muxer
	var b []byte
	b = mux.AppendTables(b)
	var frames []h264.Frame
	for i := range 60 {
		nal := byte(h264.NALIDR)
		if i%25 != 0 {
			nal = 1 // a non-IDR slice
		}
		data := append([]byte{0, 0, 0, 1, 0x60 | nal}, bytes.Repeat([]byte{byte(i + 1)}, 50+i*97)...)
		fr := h264.Frame{Time: base.Add(time.Duration(i) * time.Second / clip.FPS), Key: i%25 == 0, Data: data}
		frames = append(frames, fr)
		var err error
		if b, err = mux.AppendFrame(b, fr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := demuxTS(b, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(frames) {
		t.Fatalf("%d frames read back, %d written", len(got), len(frames))
	}
	for i, g := range got {
		at := base.Add(time.Duration(i) * time.Second / clip.FPS)
		if g.Ticks != ticksOf(at) || g.Key != frames[i].Key || !bytes.HasSuffix(g.Data, frames[i].Data) {
			t.Fatalf("frame %d: ticks %d (want %d), key %v", i, g.Ticks, ticksOf(at), g.Key)
		}
		if ticksOf(timeOfTicks(g.Ticks)) != g.Ticks {
			t.Fatalf("frame %d: timeOfTicks does not round-trip", i)
		}
	}
	if _, err := demuxTS(b[:len(b)-1], base); err == nil {
		t.Error("a truncated packet was accepted")
	}
}
