package ts

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/asticode/go-astits"
	"github.com/custos-cctv/custos/media/h264"
)

func TestPTS(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    time.Time
		want uint64
	}{
		{"epoch", time.Unix(0, 0), 0},
		{"one tick", time.Unix(0, 11112), 1},
		{"just under one tick", time.Unix(0, 11111), 0},
		{"one second", time.Unix(1, 0), 90000},
		{"wrap", time.Unix(95443, 717688889), 0},                // 2^33 ticks = 95443.7176888... s
		{"before wrap", time.Unix(95443, 717677778), 1<<33 - 1}, // one tick less
		{"before epoch", time.Unix(-1, 0), 1<<33 - 90000},       // wraps to the top
		{"recording", recordingStart, uint64(recordingStart.Unix()*90000) % (1 << 33)},
		{"zero time", time.Time{}, uint64((-62135596800%(1<<33)+(1<<33))*90000) % (1 << 33)},
	} {
		if got := PTS(tc.t); got != tc.want {
			t.Errorf("PTS(%s) = %d, want %d", tc.name, got, tc.want)
		}
	}
	// The far future must not overflow into a wrong value or panic.
	far := time.Unix(1<<62, 999999999)
	if got := PTS(far); got >= 1<<33 {
		t.Errorf("PTS(far future) = %d, not below 2^33", got)
	}
}

func TestFixtureStartNoWrap(t *testing.T) {
	if p := PTS(recordingStart); p+11*90000 >= 1<<33 || p < pcrDelayTicks {
		t.Fatalf("recordingStart PTS %d wraps within the clip; pick another", p)
	}
}

// TestSegmentFixture cuts the clip in 4 s segments and reads them back as
// one stream: boundaries on keyframes, times, tables, continuity counters,
// PTS from the wall clock, PCR, random access flags and the exact payload.
func TestSegmentFixture(t *testing.T) {
	frames := fixtureFrames(t, recordingStart)
	s := NewSegmenter(Config{})
	segs := segmentAll(t, s, frames)

	want := []struct{ frames, keys int }{{100, 4}, {100, 4}, {50, 2}}
	if len(segs) != len(want) {
		t.Fatalf("got %d segments, want %d", len(segs), len(want))
	}
	r := newTSReader()
	first := 0
	for i, seg := range segs {
		if seg.Frames != want[i].frames || seg.Keyframes != want[i].keys {
			t.Errorf("segment %d: %d frames %d keyframes, want %d and %d", i, seg.Frames, seg.Keyframes, want[i].frames, want[i].keys)
		}
		if !seg.KeyStart || !frames[first].Key {
			t.Errorf("segment %d does not start on a keyframe", i)
		}
		if !seg.Start.Equal(frames[first].Time) {
			t.Errorf("segment %d: start %v, want %v", i, seg.Start, frames[first].Time)
		}
		wantEnd := frames[first+seg.Frames-1].Time.Add(clipInterval)
		if !seg.End.Equal(wantEnd) {
			t.Errorf("segment %d: end %v, want %v", i, seg.End, wantEnd)
		}
		if seg.Bytes != len(seg.Data) || !segmentStart(seg.Data) {
			t.Errorf("segment %d: Bytes %d, len %d, starts with PAT+PMT %v", i, seg.Bytes, len(seg.Data), segmentStart(seg.Data))
		}
		if err := r.read(seg.Data); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		first += seg.Frames
	}
	if d := segs[0].Duration(); d != 4*time.Second {
		t.Errorf("first segment lasts %v, want 4s", d)
	}
	if s.Dropped() != 0 {
		t.Errorf("dropped %d frames, want 0", s.Dropped())
	}

	units, err := r.done()
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(frames) {
		t.Fatalf("read %d PES, want %d", len(units), len(frames))
	}
	if got, want := units[0].pts, PTS(recordingStart); got != want {
		t.Errorf("first PTS %d, want wall clock %d", got, want)
	}
	for i, u := range units {
		f := frames[i]
		if u.pts != PTS(f.Time) {
			t.Errorf("frame %d: PTS %d, want %d", i, u.pts, PTS(f.Time))
		}
		if !u.hasPCR || u.pcr != u.pts-pcrDelayTicks {
			t.Errorf("frame %d: PCR %d (present %v), want PTS-%d", i, u.pcr, u.hasPCR, pcrDelayTicks)
		}
		if u.rai != f.Key || u.tables != f.Key {
			t.Errorf("frame %d: random access %v, tables before %v, want %v", i, u.rai, u.tables, f.Key)
		}
		if !bytes.Equal(u.es, append(bytes.Clone(aud), f.Data...)) {
			t.Errorf("frame %d: payload differs from AUD + access unit", i)
		}
	}
}

// TestAstitsReadsOutput has an independent demuxer read the concatenated
// segments: PAT, PMT (H.264 on the PCR PID) and every PES with its PTS.
func TestAstitsReadsOutput(t *testing.T) {
	frames := fixtureFrames(t, recordingStart)
	var all []byte
	for _, seg := range segmentAll(t, NewSegmenter(Config{}), frames) {
		all = append(all, seg.Data...)
	}
	dmx := astits.NewDemuxer(context.Background(), bytes.NewReader(all))
	var pats, pmts, n int
	for {
		d, err := dmx.NextData()
		if errors.Is(err, astits.ErrNoMorePackets) {
			break
		}
		if err != nil {
			t.Fatalf("astits: %v", err)
		}
		switch {
		case d.PAT != nil:
			pats++
			if len(d.PAT.Programs) != 1 || d.PAT.Programs[0].ProgramMapID != PIDPMT {
				t.Errorf("PAT programs %+v", d.PAT.Programs)
			}
		case d.PMT != nil:
			pmts++
			es := d.PMT.ElementaryStreams
			if d.PMT.PCRPID != PIDVideo || len(es) != 1 || es[0].ElementaryPID != PIDVideo || es[0].StreamType != astits.StreamTypeH264Video {
				t.Errorf("PMT: PCR PID %#x, streams %+v", d.PMT.PCRPID, es)
			}
		case d.PES != nil:
			if n >= len(frames) {
				t.Fatalf("more PES than frames")
			}
			oh := d.PES.Header.OptionalHeader
			if oh == nil || oh.PTS == nil || uint64(oh.PTS.Base) != PTS(frames[n].Time) {
				t.Fatalf("PES %d: optional header %+v, want PTS %d", n, oh, PTS(frames[n].Time))
			}
			if !bytes.Equal(d.PES.Data, append(bytes.Clone(aud), frames[n].Data...)) {
				t.Errorf("PES %d: data differs", n)
			}
			af := d.FirstPacket.AdaptationField
			if af == nil || !af.HasPCR || af.RandomAccessIndicator != frames[n].Key {
				t.Errorf("PES %d: adaptation field %+v", n, af)
			}
			n++
		}
	}
	if n != len(frames) || pats != 10 || pmts != 10 {
		t.Errorf("read %d PES, %d PAT, %d PMT; want %d, 10, 10 (one per keyframe)", n, pats, pmts, len(frames))
	}
}

// TestMuxPayloadSizes round-trips frames of every size around the packet
// boundaries, where stuffing is 0, 1, 2 or 183 bytes, and past the 16-bit
// PES length.
func TestMuxPayloadSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sizes []int
	for n := 2; n < 800; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 65500, 65510, 65515, 65516, 65530, 200_000)
	var m Muxer
	r := newTSReader()
	var want [][]byte
	for i, n := range sizes {
		data := make([]byte, n+4)
		for j := range data {
			data[j] = byte(rng.Uint32() | 1) // no accidental start codes matter here
		}
		copy(data, []byte{0, 0, 0, 1, 0x41})
		withAUD := i%3 == 0
		if withAUD {
			copy(data, append(bytes.Clone(aud), 0, 0, 0, 1, 0x41))
		}
		out, err := m.AppendFrame(nil, h264.Frame{Time: recordingStart.Add(time.Duration(i) * time.Millisecond), Key: i%50 == 0, Data: data})
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if err := r.read(out); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if withAUD {
			want = append(want, data)
		} else {
			want = append(want, append(bytes.Clone(aud), data...))
		}
	}
	units, err := r.done()
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range units {
		if !bytes.Equal(u.es, want[i]) {
			t.Errorf("size %d: payload differs (got %d bytes, want %d)", sizes[i], len(u.es), len(want[i]))
		}
	}
}

func TestMuxRejects(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		want error
	}{
		{nil, ErrEmptyFrame},
		{[]byte{}, ErrEmptyFrame},
		{[]byte{0x65, 1, 2}, ErrNotAnnexB},
		{[]byte{0, 1, 0x65}, ErrNotAnnexB},
		{[]byte{0, 0, 1}, ErrNotAnnexB},
		{[]byte{0, 0, 0, 0}, ErrNotAnnexB},
		{[]byte{0, 0, 2, 0x65}, ErrNotAnnexB},
	} {
		var m Muxer
		dst := []byte("keep")
		out, err := m.AppendFrame(dst, h264.Frame{Time: recordingStart, Key: true, Data: tc.data})
		if !errors.Is(err, tc.want) {
			t.Errorf("AppendFrame(% x): err %v, want %v", tc.data, err, tc.want)
		}
		if string(out) != "keep" || m != (Muxer{}) {
			t.Errorf("AppendFrame(% x) changed the buffer or the counters", tc.data)
		}
	}
}
