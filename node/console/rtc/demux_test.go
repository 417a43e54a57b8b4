package rtc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/ts"
)

// clipFrames returns n frames of the fixture clip, as the synthetic camera
// gives them, stamped 40 ms apart.
func clipFrames(t testing.TB, n int) []h264.Frame {
	t.Helper()
	src, err := source.Open("synthetic:?pace=none", source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []h264.Frame
	err = src.Run(context.Background(), func(f h264.Frame) error {
		out = append(out, f)
		if len(out) == n {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatal(err)
	}
	return out
}

// muxed returns the TS of frames, tables first, and where each frame's
// packets start.
func muxed(t testing.TB, frames []h264.Frame) ([]byte, []int) {
	t.Helper()
	var m ts.Muxer
	b := m.AppendTables(nil)
	var starts []int
	for _, f := range frames {
		starts = append(starts, len(b))
		var err error
		if b, err = m.AppendFrame(b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b, starts
}

// trickle returns at most n bytes a Read, as a pipe from a node may.
type trickle struct {
	r io.Reader
	n int
}

func (t trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.n)]) }

func readAll(t *testing.T, r io.Reader) ([]frame, *demuxer) {
	t.Helper()
	d := newDemuxer(context.Background(), r, DefaultMaxFrameBytes)
	var out []frame
	for {
		f, err := d.next()
		if err == io.EOF {
			return out, d
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, f)
	}
}

// TestDemuxClip reads back every frame of the clip, PTS and bytes, from
// the project's muxer, delivered in small odd reads.
func TestDemuxClip(t *testing.T) {
	frames := clipFrames(t, clip.Frames)
	stream, _ := muxed(t, frames)
	got, _ := readAll(t, trickle{bytes.NewReader(stream), 7})
	if len(got) != len(frames) {
		t.Fatalf("read %d frames, want %d", len(got), len(frames))
	}
	for i, f := range got {
		if f.pts != ts.PTS(frames[i].Time) || f.key != frames[i].Key {
			t.Errorf("frame %d: PTS %d key %v, want %d %v", i, f.pts, f.key, ts.PTS(frames[i].Time), frames[i].Key)
		}
		if !slicesEqual(nals(f.data), nals(frames[i].Data)) {
			t.Errorf("frame %d: data differs", i)
		}
	}
}

// TestDemuxNoHoldBack: an access unit is returned as soon as its last packet
// is read, not when the next one starts — one frame interval less delay.
func TestDemuxNoHoldBack(t *testing.T) {
	frames := clipFrames(t, 3)
	stream, starts := muxed(t, frames)
	pr, pw := io.Pipe()
	defer pw.Close()
	d := newDemuxer(context.Background(), pr, DefaultMaxFrameBytes)
	go pw.Write(stream[:starts[2]]) // tables, frames 0 and 1; frame 2 never comes
	for i := range 2 {
		got := make(chan error, 1)
		go func() {
			f, err := d.next()
			if err == nil && f.pts != ts.PTS(frames[i].Time) {
				err = errors.New("wrong frame")
			}
			got <- err
		}()
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("frame %d held back until the next one starts", i)
		}
	}
}

// TestDemuxLoss: a lost TS packet costs the frames up to the next key frame,
// which decodes again; a PES longer than 64 kB (length 0 in its header)
// ends where the next one starts.
func TestDemuxLoss(t *testing.T) {
	frames := clipFrames(t, 2*clip.GOP+1)
	// Frame 1 grows past 64 kB: a PES without a length.
	frames[1].Data = append(bytes.Clone(frames[1].Data), h264.JoinNALs(append([]byte{12}, bytes.Repeat([]byte{0xff}, 70<<10)...))...)
	stream, starts := muxed(t, frames)
	// Lose the second packet of frame 3.
	cut := starts[3] + ts.PacketSize
	if cut+ts.PacketSize > starts[4] {
		t.Fatal("frame 3 fits one packet")
	}
	lossy := append(bytes.Clone(stream[:cut]), stream[cut+ts.PacketSize:]...)
	got, d := readAll(t, bytes.NewReader(lossy))
	var idx []int
	for _, f := range got {
		for i := range frames {
			if f.pts == ts.PTS(frames[i].Time) {
				idx = append(idx, i)
			}
		}
	}
	want := []int{0, 1, 2}
	for i := clip.GOP; i <= 2*clip.GOP; i++ {
		want = append(want, i)
	}
	if !equalInts(idx, want) {
		t.Fatalf("frames read %v, want %v", idx, want)
	}
	if !slicesEqual(nals(got[1].data), nals(frames[1].Data)) {
		t.Errorf("the 70 kB frame differs")
	}
	if d.skipped != clip.GOP-3 {
		t.Errorf("skipped %d, want %d", d.skipped, clip.GOP-3)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDemux: no input panics the demuxer or makes it return more than the
// frame bound.
func FuzzDemux(f *testing.F) {
	frames := clipFrames(f, 3)
	stream, _ := muxed(f, frames)
	f.Add(stream)
	f.Add(stream[:len(stream)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newDemuxer(context.Background(), bytes.NewReader(b), 1<<20)
		for range 1000 {
			fr, err := d.next()
			if err != nil {
				return
			}
			if len(fr.data) == 0 || len(fr.data) > 1<<20 {
				t.Fatalf("frame of %d bytes", len(fr.data))
			}
		}
	})
}
