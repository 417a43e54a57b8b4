package ts

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// synth returns a fake access unit: parameter sets and an IDR slice for a
// keyframe, one non-IDR slice otherwise, padded to about size bytes.
func synth(at time.Time, key bool, size int) h264.Frame {
	body := bytes.Repeat([]byte{0xab}, max(size, 1))
	if key {
		return h264.Frame{Time: at, Key: true, Data: h264.JoinNALs([]byte{0x67, 0x42}, []byte{0x68, 0xce}, append([]byte{0x65}, body...))}
	}
	return h264.Frame{Time: at, Data: h264.JoinNALs(append([]byte{0x41}, body...))}
}

// stream builds n frames at 10 fps from recordingStart with a keyframe
// every gop frames (never, if gop is 0) after the first.
func stream(n, gop, size int) []h264.Frame {
	out := make([]h264.Frame, n)
	for i := range out {
		key := i == 0 || gop > 0 && i%gop == 0
		out[i] = synth(recordingStart.Add(time.Duration(i)*100*time.Millisecond), key, size)
	}
	return out
}

// readAll checks the segments as one stream and returns its PES units.
func readAll(tb testing.TB, segs []*Segment) []pesUnit {
	tb.Helper()
	r := newTSReader()
	for i, seg := range segs {
		if !segmentStart(seg.Data) {
			tb.Errorf("segment %d does not start with PAT and PMT", i)
		}
		if err := r.read(seg.Data); err != nil {
			tb.Fatalf("segment %d: %v", i, err)
		}
	}
	units, err := r.done()
	if err != nil {
		tb.Fatal(err)
	}
	return units
}

func counts(segs []*Segment) []int {
	var n []int
	for _, s := range segs {
		n = append(n, s.Frames)
	}
	return n
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg            Config
		target, maxDur time.Duration
		maxBytes       int
	}{
		{Config{}, 4 * time.Second, 12 * time.Second, 64 << 20},
		{Config{Target: -1, MaxDuration: -1, MaxBytes: -1}, 4 * time.Second, 12 * time.Second, 64 << 20},
		{Config{Target: 2 * time.Second}, 2 * time.Second, 6 * time.Second, 64 << 20},
		{Config{Target: 2 * time.Second, MaxDuration: time.Second}, 2 * time.Second, 6 * time.Second, 64 << 20},
		{Config{Target: time.Second, MaxDuration: 5 * time.Second, MaxBytes: 1000}, time.Second, 5 * time.Second, 1000},
	} {
		if got := [3]any{tc.cfg.target(), tc.cfg.maxDuration(), tc.cfg.maxBytes()}; got != [3]any{tc.target, tc.maxDur, tc.maxBytes} {
			t.Errorf("%+v: got target, max duration, max bytes %v, want %v", tc.cfg, got, [3]any{tc.target, tc.maxDur, tc.maxBytes})
		}
	}
}

// TestZeroSegmenter: a Segmenter declared without NewSegmenter works with
// the defaults.
func TestZeroSegmenter(t *testing.T) {
	var s Segmenter
	segs := segmentAll(t, &s, stream(100, 10, 50))
	if got := counts(segs); len(got) != 3 || got[0] != 40 || got[1] != 40 || got[2] != 20 {
		t.Errorf("frames per segment %v, want [40 40 20]", got)
	}
}

func TestCutsAtFirstKeyframeAfterTarget(t *testing.T) {
	// GOP 0.7 s, target 2 s: keyframes at 0, 0.7, 1.4, 2.1 ... cut at 2.1, 4.2
	s := NewSegmenter(Config{Target: 2 * time.Second})
	segs := segmentAll(t, s, stream(50, 7, 50))
	if got := counts(segs); len(got) != 3 || got[0] != 21 || got[1] != 21 || got[2] != 8 {
		t.Fatalf("frames per segment %v, want [21 21 8]", got)
	}
	for i, seg := range segs {
		if !seg.KeyStart || seg.Keyframes != []int{3, 3, 2}[i] {
			t.Errorf("segment %d: KeyStart %v, %d keyframes", i, seg.KeyStart, seg.Keyframes)
		}
	}
	if d := segs[0].Duration(); d != 2100*time.Millisecond {
		t.Errorf("first segment lasts %v, want 2.1s", d)
	}
	readAll(t, segs)
}

func TestDropsUntilFirstKeyframe(t *testing.T) {
	frames := stream(30, 10, 50)
	s := NewSegmenter(Config{Target: time.Second})
	segs := segmentAll(t, s, frames[3:]) // starts mid-GOP
	if s.Dropped() != 7 {
		t.Errorf("dropped %d, want 7", s.Dropped())
	}
	if len(segs) == 0 || !segs[0].Start.Equal(frames[10].Time) || !segs[0].KeyStart {
		t.Fatalf("first segment does not start at the first keyframe: %+v", segs)
	}
}

// TestNoKeyframeCap: a camera that sends one keyframe and never another is
// cut at MaxDuration; the later segments say they start without one.
func TestNoKeyframeCap(t *testing.T) {
	s := NewSegmenter(Config{Target: time.Second, MaxDuration: 3 * time.Second})
	segs := segmentAll(t, s, stream(100, 0, 50))
	if got := counts(segs); len(got) != 4 || got[0] != 30 || got[3] != 10 {
		t.Fatalf("frames per segment %v, want [30 30 30 10]", got)
	}
	for i, seg := range segs {
		if seg.KeyStart != (i == 0) {
			t.Errorf("segment %d: KeyStart %v", i, seg.KeyStart)
		}
	}
	if units := readAll(t, segs); len(units) != 100 {
		t.Errorf("read %d frames, want 100", len(units))
	}
}

func TestMaxBytesCap(t *testing.T) {
	const maxBytes = 8 * PacketSize * 10
	s := NewSegmenter(Config{MaxBytes: maxBytes})
	segs := segmentAll(t, s, stream(200, 100, 1000))
	if len(segs) < 10 {
		t.Fatalf("%d segments, want the byte cap to cut often", len(segs))
	}
	total := 0
	for i, seg := range segs {
		if seg.Bytes > maxBytes {
			t.Errorf("segment %d: %d bytes, over the cap %d", i, seg.Bytes, maxBytes)
		}
		total += seg.Frames
	}
	if units := readAll(t, segs); total != 200 || len(units) != 200 {
		t.Errorf("frames %d, read %d, want 200", total, len(units))
	}

	_, err := s.Push(synth(recordingStart.Add(time.Hour), true, maxBytes))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized frame: err %v, want ErrFrameTooLarge", err)
	}
}

func TestBadFramesRefused(t *testing.T) {
	s := NewSegmenter(Config{})
	if _, err := s.Push(synth(recordingStart, true, 10)); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{nil, {0x65, 0x88}} {
		_, err := s.Push(h264.Frame{Time: recordingStart.Add(time.Second), Key: true, Data: data})
		if !errors.Is(err, ErrEmptyFrame) && !errors.Is(err, ErrNotAnnexB) {
			t.Errorf("Push(% x): err %v, want ErrEmptyFrame or ErrNotAnnexB", data, err)
		}
	}
	seg := s.Flush()
	if seg == nil || seg.Frames != 1 {
		t.Fatalf("refused frames changed the segment: %+v", seg)
	}
}

// TestJitterClamped: a frame stamped at or slightly before its predecessor
// is restamped just after it, so PTS keeps rising.
func TestJitterClamped(t *testing.T) {
	ms := func(n int) time.Time { return recordingStart.Add(time.Duration(n) * time.Millisecond) }
	frames := []h264.Frame{
		synth(ms(0), true, 10), synth(ms(40), false, 10), synth(ms(20), false, 10),
		synth(ms(20), false, 10), synth(ms(80), false, 10), synth(ms(-900), false, 10),
	}
	segs := segmentAll(t, NewSegmenter(Config{}), frames)
	if len(segs) != 1 || segs[0].Frames != len(frames) {
		t.Fatalf("frames per segment %v, want [%d]", counts(segs), len(frames))
	}
	units := readAll(t, segs)
	for i := 1; i < len(units); i++ {
		if units[i].pts <= units[i-1].pts {
			t.Errorf("frame %d: PTS %d not after %d", i, units[i].pts, units[i-1].pts)
		}
	}
	if !segs[0].End.After(ms(80)) {
		t.Errorf("end %v not after the last frame", segs[0].End)
	}
}

// TestClockStepBack: a step back of more than a second ends the segment;
// the next starts at the next keyframe with its own, earlier, time.
func TestClockStepBack(t *testing.T) {
	frames := stream(40, 10, 20)
	for i := 15; i < len(frames); i++ {
		frames[i].Time = frames[i].Time.Add(-time.Hour)
	}
	s := NewSegmenter(Config{Target: 10 * time.Second})
	segs := segmentAll(t, s, frames)
	if got := counts(segs); len(got) != 2 || got[0] != 15 || got[1] != 20 {
		t.Fatalf("frames per segment %v, want [15 20]", got)
	}
	if s.Dropped() != 5 || !segs[1].Start.Equal(frames[20].Time) || !segs[1].KeyStart {
		t.Errorf("dropped %d (want 5); second segment starts %v (want %v)", s.Dropped(), segs[1].Start, frames[20].Time)
	}
	readAll(t, segs)
}

// TestGapForward: a frame more than MaxDuration after the previous one ends
// the segment instead of stretching it over the gap.
func TestGapForward(t *testing.T) {
	frames := stream(40, 10, 20)
	for i := 15; i < len(frames); i++ {
		frames[i].Time = frames[i].Time.Add(time.Minute)
	}
	segs := segmentAll(t, NewSegmenter(Config{}), frames)
	if got := counts(segs); len(got) != 2 || got[0] != 15 || got[1] != 20 {
		t.Fatalf("frames per segment %v, want [15 20]", got)
	}
	if want := frames[14].Time.Add(100 * time.Millisecond); !segs[0].End.Equal(want) {
		t.Errorf("first segment ends %v, want %v", segs[0].End, want)
	}
}

// TestFlush: Flush returns the partial segment, nil when none is open, and
// the Segmenter then waits for a keyframe with counters running on.
func TestFlush(t *testing.T) {
	s := NewSegmenter(Config{})
	if seg := s.Flush(); seg != nil {
		t.Fatalf("Flush on an empty Segmenter: %+v, want nil", seg)
	}
	frames := stream(60, 10, 20)
	var segs []*Segment
	for _, f := range frames[:25] {
		if seg, err := s.Push(f); err != nil || seg != nil {
			t.Fatalf("Push: %v %v", seg, err)
		}
	}
	segs = append(segs, s.Flush())
	if s.Flush() != nil {
		t.Error("second Flush returned a segment")
	}
	segs = append(segs, segmentAll(t, s, frames[25:])...)
	if got := counts(segs); len(got) != 2 || got[0] != 25 || got[1] != 30 || s.Dropped() != 5 {
		t.Errorf("frames per segment %v, dropped %d; want [25 30], 5", got, s.Dropped())
	}
	readAll(t, segs) // continuity counters run on across the Flush
}

// TestSingleFrameEnd: a one-frame segment ends one frame interval after
// its start: the previous segment's interval, else 40 ms.
func TestSingleFrameEnd(t *testing.T) {
	s := NewSegmenter(Config{})
	if _, err := s.Push(synth(recordingStart, true, 10)); err != nil {
		t.Fatal(err)
	}
	if seg := s.Flush(); seg.Duration() != defaultInterval {
		t.Errorf("lone frame lasts %v, want %v", seg.Duration(), defaultInterval)
	}
	frames := stream(3, 0, 10) // 100 ms apart
	for i := range frames {
		frames[i].Time = frames[i].Time.Add(time.Second)
	}
	segs := segmentAll(t, s, frames)
	if d := segs[0].Duration(); d != 300*time.Millisecond {
		t.Errorf("3 frames last %v, want 300ms", d)
	}
	if _, err := s.Push(synth(recordingStart.Add(2*time.Second), true, 10)); err != nil {
		t.Fatal(err)
	}
	if seg := s.Flush(); seg.Duration() != 100*time.Millisecond {
		t.Errorf("lone frame after 10 fps lasts %v, want 100ms", seg.Duration())
	}
}
