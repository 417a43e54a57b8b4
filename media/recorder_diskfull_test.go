package media

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/store"
)

// TestDiskFull records onto a small tmpfs whose space the test takes away
// and gives back: segments that find no room are lost with the DiskFull
// alarm raised (one event, not one per segment), everything stored before
// still decrypts, and recording is stored again once space is freed,
// continuing the custody chain without a gap.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	const minFree = 4 << 20
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, rigOpts{storeDir: filepath.Join(dir, "store"), storeOpts: store.Options{MinFree: minFree}, base: base})
	r.start()
	stored := func(n int) func() bool {
		return func() bool { return r.rec.Stats().Segments == n }
	}

	// Room: two segments are stored.
	r.src.release(2*clip.GOP + 1)
	waitFor(t, "two stored segments", stored(2))

	// Full: a ballast file leaves 1 KiB above MinFree.
	ballast := filepath.Join(dir, "ballast")
	fill(t, ballast, free(t, dir)-minFree-1<<10)
	r.src.release(2 * clip.GOP)
	waitFor(t, "two lost segments", func() bool { return r.rec.Stats().SegmentsLost == 2 })
	st := r.rec.Stats()
	if !st.DiskFull || st.DiskFullSince.IsZero() || !strings.Contains(st.LastError, "disk full") || st.Segments != 2 {
		t.Errorf("Stats on a full disk: %+v", st)
	}
	if got := r.events.count(EventDiskFull); got != 1 {
		t.Errorf("%d disk-full events, want 1", got)
	}
	if got := r.events.count(EventSegmentLost); got != 0 {
		t.Errorf("%d segment-lost events on a full disk, want none beside the disk-full alarm", got)
	}
	if got := storedFrames(t, decryptDC(t, r.st)); got != 2*clip.GOP {
		t.Errorf("%d frames decrypt after the disk filled, want %d", got, 2*clip.GOP)
	}

	// Space is back: recording is stored again and the alarm clears.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	r.src.release(2 * clip.GOP)
	waitFor(t, "four stored segments", stored(4))
	if st := r.rec.Stats(); st.DiskFull || st.SegmentsLost != 2 {
		t.Errorf("Stats once space is back: %+v", st)
	}
	if got := r.events.count(EventDiskRecovered); got != 1 {
		t.Errorf("%d disk-recovered events, want 1", got)
	}
	waitFor(t, "frames delivered", func() bool { return r.src.emitted.Load() == 6*clip.GOP+1 })
	if err := r.stop(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("Run: %v", err)
	}

	segs := decryptDC(t, r.st)
	var starts []time.Duration
	for _, s := range segs {
		starts = append(starts, s.meta.Start.Sub(base)/frameInterval)
	}
	// Frames 50–99 met the full disk; frame 150 was flushed at the stop.
	want := []time.Duration{0, clip.GOP, 4 * clip.GOP, 5 * clip.GOP, 6 * clip.GOP}
	if len(starts) != len(want) {
		t.Fatalf("stored segments start at frames %v, want %v", starts, want)
	}
	for i := range want {
		if starts[i] != want[i] {
			t.Fatalf("stored segments start at frames %v, want %v", starts, want)
		}
	}
	// The segments the full disk cost took no sequence numbers.
	checkCustody(t, r.st, testSigner(t))
}

func free(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file of n bytes (tmpfs allocates as it is written).
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}
