package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
)

// liveTimeout bounds every wait in the live tests. Nothing is asserted on
// time: it only turns a hang into a failure, generously for a slow CI box
// running -race.
const liveTimeout = 20 * time.Second

// liveFrames makes n distinct frames of a 25-frame GOP at 25 fps.
func liveFrames(n int) []h264.Frame {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	out := make([]h264.Frame, n)
	for i := range out {
		data := fmt.Appendf([]byte{0, 0, 0, 1}, "frame %d", i)
		data = append(data, bytes.Repeat([]byte{byte(i)}, 100+i%50)...)
		out[i] = h264.Frame{Time: base.Add(time.Duration(i) * frameInterval), Key: i%clip.GOP == 0, Data: data}
	}
	return out
}

// publish hands l a copy of f and wipes the copy right after, as the
// Recorder does with its buffer.
func publish(l *Live, f h264.Frame) {
	f.Data = bytes.Clone(f.Data)
	l.Publish(f)
	clear(f.Data)
}

func sameFrame(a, b h264.Frame) bool {
	return a.Key == b.Key && a.Time.Equal(b.Time) && bytes.Equal(a.Data, b.Data)
}

func subscribe(t testing.TB, l *Live) *LiveViewer {
	t.Helper()
	v, err := l.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// next returns v's next frame, failing the test if none comes.
func next(t testing.TB, v *LiveViewer) h264.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
	defer cancel()
	f, err := v.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f
}

// expect reads want from v, frame by frame.
func expect(t testing.TB, v *LiveViewer, want ...h264.Frame) {
	t.Helper()
	for _, w := range want {
		if got := next(t, v); !sameFrame(got, w) {
			t.Fatalf("got %q at %s (key %v), want %q at %s (key %v)",
				head(got.Data), got.Time, got.Key, head(w.Data), w.Time, w.Key)
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// TestLiveStartsAtLatestKeyframe: a viewer joining mid-GOP gets the latest
// keyframe, the rest of its GOP, then every live frame in order, with the
// source's bytes and timestamps.
func TestLiveStartsAtLatestKeyframe(t *testing.T) {
	l := NewLive(testCamera, LiveConfig{})
	defer l.Close()
	frames := liveFrames(4 * clip.GOP)
	const joined = 2*clip.GOP + 7 // three GOPs started, 7 frames into the third
	for _, f := range frames[:joined] {
		publish(l, f)
	}
	v := subscribe(t, l)
	if l.Viewers() != 1 {
		t.Fatalf("Viewers() = %d, want 1", l.Viewers())
	}
	expect(t, v, frames[2*clip.GOP:joined]...)
	for _, f := range frames[joined:] {
		publish(l, f)
		expect(t, v, f)
	}
	if st := v.Stats(); st.Frames != uint64(len(frames)-2*clip.GOP) || st.Skips != 0 || st.Skipped != 0 || st.Queued != 0 {
		t.Errorf("Stats: %+v", st)
	}
}

// TestLiveWaitsForFirstKeyframe: frames before the first keyframe are not
// kept or delivered; a viewer that joined before it starts at it.
func TestLiveWaitsForFirstKeyframe(t *testing.T) {
	l := NewLive(testCamera, LiveConfig{})
	defer l.Close()
	frames := liveFrames(2 * clip.GOP)
	early := subscribe(t, l)
	for _, f := range frames[clip.GOP-5 : clip.GOP] { // the tail of a GOP whose keyframe we missed
		publish(l, f)
	}
	late := subscribe(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := late.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next before any keyframe: %v, want context.Canceled (nothing to deliver)", err)
	}
	for _, f := range frames[clip.GOP:] {
		publish(l, f)
	}
	expect(t, early, frames[clip.GOP:]...)
	expect(t, late, frames[clip.GOP:]...)
}

// TestLiveFanOutSharesFrames: ten viewers get the same frames, and the very
// same bytes: the hub copies a frame once, not once per viewer.
func TestLiveFanOutSharesFrames(t *testing.T) {
	l := NewLive(testCamera, LiveConfig{})
	defer l.Close()
	frames := liveFrames(30)
	publish(l, frames[0])
	publish(l, frames[1])
	viewers := make([]*LiveViewer, 10)
	for i := range viewers {
		viewers[i] = subscribe(t, l)
	}
	for _, f := range frames[2:] {
		publish(l, f)
	}
	got := make([][]h264.Frame, len(viewers))
	for i, v := range viewers {
		for range frames {
			got[i] = append(got[i], next(t, v))
		}
	}
	for i := range viewers {
		for j, f := range got[i] {
			if !sameFrame(f, frames[j]) {
				t.Fatalf("viewer %d frame %d: %q, want %q", i, j, head(f.Data), head(frames[j].Data))
			}
			if &f.Data[0] != &got[0][j].Data[0] {
				t.Fatalf("viewer %d frame %d: its own copy of the bytes; viewers must share the hub's one", i, j)
			}
		}
	}
}

// TestLivePublisherBufferWiped: the recorder wipes its frame buffer right
// after Publish; viewers, the ring and later subscribers keep the bytes.
func TestLivePublisherBufferWiped(t *testing.T) {
	l := NewLive(testCamera, LiveConfig{})
	defer l.Close()
	frames := liveFrames(3)
	v := subscribe(t, l)
	buf := make([]byte, 0, 4096) // one buffer, reused like a source's
	for _, f := range frames {
		buf = append(buf[:0], f.Data...)
		l.Publish(h264.Frame{Time: f.Time, Key: f.Key, Data: buf})
		clear(buf)
	}
	expect(t, v, frames...)
	expect(t, subscribe(t, l), frames...) // from the ring
}

// TestLiveStalledViewer: a viewer that stops reading neither blocks
// Publish nor costs a fast viewer a single frame; it loses its queue and,
// when it reads again, resumes at a keyframe, with the loss counted.
func TestLiveStalledViewer(t *testing.T) {
	now := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)
	l := NewLive(testCamera, LiveConfig{ViewerBuffer: 50, Now: func() time.Time { return now }})
	defer l.Close()
	fast := subscribe(t, l)
	frames := liveFrames(80*clip.GOP + 1) // ends with a keyframe
	const joined = 10
	for _, f := range frames[:joined] {
		publish(l, f)
	}
	expect(t, fast, frames[:joined]...)
	stalled := subscribe(t, l) // with 10 frames to catch up on

	ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
	defer cancel()
	// The publisher waits for the fast viewer to take each frame (so it is
	// fast however slow the machine), never for the stalled one.
	acks := make(chan struct{})
	published, read := make(chan error, 1), make(chan error, 1)
	go func() {
		for i, f := range frames[joined:] {
			publish(l, f)
			select {
			case <-acks:
			case <-ctx.Done():
				published <- fmt.Errorf("frame %d not taken by the fast viewer: %w", i, ctx.Err())
				return
			}
		}
		published <- nil
	}()
	go func() {
		for i, want := range frames[joined:] {
			f, err := fast.Next(ctx)
			if err != nil {
				read <- fmt.Errorf("fast viewer, frame %d: %w", i, err)
				return
			}
			if !sameFrame(f, want) {
				read <- fmt.Errorf("fast viewer got %q, want %q", head(f.Data), head(want.Data))
				return
			}
			select {
			case acks <- struct{}{}:
			case <-ctx.Done():
				read <- ctx.Err()
				return
			}
		}
		read <- nil
	}()
	for _, c := range []chan error{published, read} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("publishing %d frames with a stalled viewer did not finish in %v: Publish blocked", len(frames), liveTimeout)
		}
	}
	if st := fast.Stats(); st.Frames != uint64(len(frames)) || st.Skips != 0 || st.Skipped != 0 {
		t.Errorf("fast viewer's Stats: %+v, want every frame and no skip", st)
	}

	st := stalled.Stats()
	if st.Skips == 0 || st.Skipped == 0 || st.Frames != 0 || !st.LastSkip.Equal(now) || st.Queued > 50 {
		t.Fatalf("stalled viewer's Stats: %+v, want skips, no frame read, at most 50 queued", st)
	}
	if got := st.Skipped + uint64(st.Queued); got != uint64(len(frames)) {
		t.Errorf("stalled viewer: %d skipped + %d queued = %d, want all %d frames accounted for", st.Skipped, st.Queued, got, len(frames))
	}
	// Resumed: it plays on from a keyframe, gap-free, to the last frame.
	first := next(t, stalled)
	if !first.Key {
		t.Fatalf("stalled viewer resumes at %q, not at a keyframe", head(first.Data))
	}
	i := int(first.Time.Sub(frames[0].Time) / frameInterval)
	if !sameFrame(first, frames[i]) {
		t.Fatalf("stalled viewer resumes at %q, want frame %d", head(first.Data), i)
	}
	expect(t, stalled, frames[i+1:]...)
	if st := stalled.Stats(); st.Queued != 0 || st.Frames != uint64(len(frames)-i) {
		t.Errorf("stalled viewer after catching up: %+v", st)
	}
}

// TestLiveClose: closing the hub ends a waiting viewer with ErrLiveClosed
// naming the camera, closing a viewer ends it alone, a cancelled context
// ends Next, and nothing can subscribe to a closed hub.
func TestLiveClose(t *testing.T) {
	l := NewLive(testCamera, LiveConfig{})
	frames := liveFrames(3)
	publish(l, frames[0])

	gone := subscribe(t, l)
	gone.Close()
	gone.Close()
	if _, err := gone.Next(context.Background()); !errors.Is(err, ErrLiveClosed) {
		t.Fatalf("Next after the viewer's Close: %v, want ErrLiveClosed", err)
	}

	v := subscribe(t, l)
	expect(t, v, frames[0])
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := v.Next(ctx); errc <- err }()
	cancel()
	if err := waitErr(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after its context was cancelled: %v, want context.Canceled", err)
	}

	if n := l.Viewers(); n != 1 {
		t.Fatalf("Viewers() = %d, want 1 (the closed one left)", n)
	}
	publish(l, frames[1])
	waiting := subscribe(t, l)
	expect(t, waiting, frames[:2]...)
	go func() { _, err := waiting.Next(context.Background()); errc <- err }()
	l.Close()
	err := waitErr(t, errc)
	if !errors.Is(err, ErrLiveClosed) || !strings.Contains(err.Error(), testCamera) {
		t.Fatalf("Next when the hub closes: %v, want ErrLiveClosed naming %s", err, testCamera)
	}
	// v had frames[1] queued: the stream is cut anyway.
	if _, err := v.Next(context.Background()); !errors.Is(err, ErrLiveClosed) {
		t.Fatalf("Next with a frame queued when the hub closed: %v, want ErrLiveClosed", err)
	}
	if l.Viewers() != 0 {
		t.Errorf("Viewers() = %d after Close", l.Viewers())
	}
	l.Close()
	publish(l, frames[2]) // ignored
	if _, err := l.Subscribe(); !errors.Is(err, ErrLiveClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrLiveClosed", err)
	}
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(liveTimeout):
		t.Fatal("Next did not return")
		return nil
	}
}

// TestLiveRingBounds: the ring keeps RingGOPs GOPs within MaxRingBytes; a
// GOP too big for the cap is not kept, so a new viewer starts at the next
// keyframe while existing viewers miss nothing.
func TestLiveRingBounds(t *testing.T) {
	frames := liveFrames(6 * clip.GOP)
	size := 0
	for _, f := range frames[:clip.GOP] {
		size += len(f.Data)
	}
	l := NewLive(testCamera, LiveConfig{RingGOPs: 3, MaxRingBytes: size + size/2, ViewerBuffer: len(frames)})
	defer l.Close()
	v := subscribe(t, l)
	for _, f := range frames {
		publish(l, f)
		l.mu.Lock()
		kept, held := 0, 0
		for _, g := range l.gops {
			kept += g.bytes
			for _, f := range g.frames {
				held += len(f.Data)
			}
		}
		if len(l.gops) > 3 || l.ringBytes > l.cfg.MaxRingBytes || kept != l.ringBytes || held != kept {
			t.Fatalf("ring of %d GOPs, %d bytes counted, %d in GOPs, %d held: over its bounds or miscounted",
				len(l.gops), l.ringBytes, kept, held)
		}
		l.mu.Unlock()
	}
	expect(t, v, frames...)
	expect(t, subscribe(t, l), frames[5*clip.GOP:]...)

	small := NewLive(testCamera, LiveConfig{MaxRingBytes: size / 2, ViewerBuffer: len(frames)})
	defer small.Close()
	for _, f := range frames[:clip.GOP+20] { // 20 frames of the second GOP: over size/2
		publish(small, f)
	}
	late := subscribe(t, small)
	for _, f := range frames[clip.GOP+3:] {
		publish(small, f)
	}
	expect(t, late, frames[2*clip.GOP:3*clip.GOP]...)
}

// clipFrames returns the first n frames the synthetic source delivers.
func clipFrames(t testing.TB, n int) []h264.Frame {
	t.Helper()
	src, err := source.Open("synthetic:?pace=none", source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out []h264.Frame
	err = src.Run(ctx, func(f h264.Frame) error {
		f.Data = bytes.Clone(f.Data)
		if out = append(out, f); len(out) == n {
			cancel()
		}
		return nil
	})
	if len(out) != n {
		t.Fatalf("synthetic source delivered %d frames, want %d: %v", len(out), n, err)
	}
	return out
}

// TestRecorderPublishesLive: with Live set, a viewer joining a recording
// starts at the latest keyframe and sees every later frame (the recorder
// wipes its buffers, the viewer keeps the bytes), and recording is
// unaffected.
func TestRecorderPublishesLive(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	want := clipFrames(t, clip.Frames)
	l := NewLive(testCamera, LiveConfig{ViewerBuffer: clip.Frames})
	defer l.Close()
	r := newRig(t, rigOpts{base: base, config: func(c *RecorderConfig) { c.Live = l }})
	r.start()
	const joined = clip.GOP + 5
	r.src.release(joined)
	waitFor(t, "frames delivered", func() bool { return r.src.emitted.Load() == joined })
	v := subscribe(t, l)
	r.src.release(clip.Frames - joined)
	for i := clip.GOP; i < clip.Frames; i++ {
		f := next(t, v)
		if !f.Time.Equal(base.Add(time.Duration(i)*frameInterval)) || f.Key != want[i].Key || !bytes.Equal(f.Data, want[i].Data) {
			t.Fatalf("live frame %d: at %s, key %v, %d bytes; want frame %d of the clip", i-clip.GOP, f.Time, f.Key, len(f.Data), i)
		}
		if i == clip.GOP && !f.Key {
			t.Fatal("live view does not start at a keyframe")
		}
	}
	if err := r.stop(); err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
	if got := storedFrames(t, decryptDC(t, r.st)); got != clip.Frames {
		t.Fatalf("%d frames recorded with a live viewer, want %d", got, clip.Frames)
	}
	if st := v.Stats(); st.Skips != 0 || st.Frames != clip.Frames-clip.GOP {
		t.Errorf("viewer's Stats: %+v", st)
	}
}

// BenchmarkLivePublish measures one frame of the clip through the hub:
// Publish (the one copy) and every viewer's Next. Allocations should not
// grow with viewers.
func BenchmarkLivePublish(b *testing.B) {
	frames := clipFrames(b, clip.Frames)
	size := 0
	for _, f := range frames {
		size += len(f.Data)
	}
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) {
			l := NewLive(testCamera, LiveConfig{})
			defer l.Close()
			viewers := make([]*LiveViewer, n)
			for i := range viewers {
				viewers[i] = subscribe(b, l)
			}
			ctx := context.Background()
			b.SetBytes(int64(size / len(frames)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.Publish(frames[i%len(frames)])
				i++
				for _, v := range viewers {
					if _, err := v.Next(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
