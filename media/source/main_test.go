package source

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a clock that moves only when Advance is called.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

func (c *fakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// collector records what a source emits, with arrival times.
type collector struct {
	mu      sync.Mutex
	frames  []h264.Frame
	arrived []time.Time
	limit   int // emit fails with errEnough after this many; 0 = never
}

var errEnough = errors.New("enough frames")

func (c *collector) emit(f h264.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && len(c.frames) >= c.limit {
		return errEnough
	}
	c.frames = append(c.frames, f)
	c.arrived = append(c.arrived, time.Now())
	return nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

func (c *collector) snapshot() ([]h264.Frame, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]h264.Frame(nil), c.frames...), append([]time.Time(nil), c.arrived...)
}

// run starts src.Run in the background; the returned func waits for and
// returns Run's result. Cleanup cancels and waits, so no goroutine leaks.
func run(t testing.TB, src Source, c *collector) (cancel context.CancelFunc, result func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, c.emit) }()
	var once sync.Once
	var err error
	result = func() error {
		once.Do(func() {
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return within 20s")
			}
		})
		return err
	}
	t.Cleanup(func() { cancel(); result() })
	return cancel, result
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fixture is the clip split into access units, each a list of NALs.
type fixture struct {
	aus     [][][]byte
	bySlice map[string]int // last slice NAL → frame number
}

func loadFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{aus: splitAccessUnits(clip.H264), bySlice: map[string]int{}}
	if len(f.aus) != clip.Frames {
		t.Fatalf("fixture has %d access units, want %d", len(f.aus), clip.Frames)
	}
	for i, au := range f.aus {
		f.bySlice[string(lastSlice(au))] = i
	}
	return f
}

func lastSlice(nals [][]byte) []byte {
	for i := len(nals) - 1; i >= 0; i-- {
		if t := h264.Type(nals[i]); t >= 1 && t <= 5 {
			return nals[i]
		}
	}
	return nil
}

// index finds which fixture frame f is, by its picture.
func (fx *fixture) index(t testing.TB, f h264.Frame) int {
	t.Helper()
	i, ok := fx.bySlice[string(lastSlice(h264.SplitNALs(f.Data)))]
	if !ok {
		t.Fatalf("frame (key=%v, %d bytes) is not a fixture frame: corrupt or foreign", f.Key, len(f.Data))
	}
	return i
}

// checkFrame asserts f is fixture frame i byte for byte (AUDs aside), and
// that a keyframe starts with SPS and PPS.
func (fx *fixture) checkFrame(t testing.TB, f h264.Frame, i int) {
	t.Helper()
	got := h264.SplitNALs(f.Data)
	var want [][]byte
	for _, n := range fx.aus[i] {
		if h264.Type(n) != h264.NALAUD {
			want = append(want, n)
		}
	}
	wantKey := i%clip.GOP == 0
	if f.Key != wantKey {
		t.Fatalf("frame %d: Key = %v, want %v", i, f.Key, wantKey)
	}
	if f.Key && (len(got) < 3 || h264.Type(got[0]) != h264.NALSPS || h264.Type(got[1]) != h264.NALPPS) {
		t.Fatalf("keyframe %d does not start with SPS, PPS: types %v", i, types(got))
	}
	if len(got) != len(want) {
		t.Fatalf("frame %d: NAL types %v, want %v", i, types(got), types(want))
	}
	for k := range got {
		if !bytes.Equal(got[k], want[k]) {
			t.Fatalf("frame %d NAL %d (type %d): %d bytes differ from the fixture's %d", i, k, h264.Type(got[k]), len(got[k]), len(want[k]))
		}
	}
}

func types(nals [][]byte) []int {
	var out []int
	for _, n := range nals {
		out = append(out, h264.Type(n))
	}
	return out
}
