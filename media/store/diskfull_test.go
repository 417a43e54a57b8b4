package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// smallFS mounts a 2 MiB tmpfs for the test, or skips if this process may
// not mount.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "store")
}

// TestDiskFull fills a real file system: Put meets ENOSPC and returns
// ErrDiskFull, leaves no temporary file, harms nothing stored, and works
// again once retention freed space.
func TestDiskFull(t *testing.T) {
	dir := smallFS(t)
	s := openT(t, dir, Options{MinFree: -1}) // only the file system's own ENOSPC
	const size = 100 << 10
	var stored []SegmentMeta
	var full error
	for i := 0; i < 40 && full == nil; i++ {
		m := segAt(cam, i)
		if full = ensureEpoch(s, cam, m.EpochStart); full != nil {
			break
		}
		if full = s.Put(m, payload(i, size)); full == nil {
			stored = append(stored, m)
		}
	}
	if !errors.Is(full, ErrDiskFull) || !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("filling 2 MiB with %d segments of 100 KiB: %v, want ErrDiskFull wrapping ENOSPC", len(stored), full)
	}
	t.Logf("full after %d segments: %v", len(stored), full)
	if h := s.Health(); !h.DiskFull || h.Reason == "" || h.Since.IsZero() {
		t.Errorf("Health after ENOSPC: %+v", h)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	for _, m := range stored {
		b, err := s.ReadSegment(m)
		if i := segIndex(m); err != nil || !bytes.Equal(b, payload(i, size)) {
			t.Fatalf("segment %d after ENOSPC: %v", i, err)
		}
	}
	checkConsistent(t, s)

	// Retention frees space (files first, so the index commit has room).
	d, err := s.DeleteBefore(cam, stored[5].End)
	if err != nil || d.Segments != 5 {
		t.Fatalf("DeleteBefore on a full disk: %+v, %v", d, err)
	}
	next := segIndex(stored[len(stored)-1]) + 1
	putSeg(t, s, cam, next, size)
	if h := s.Health(); h.DiskFull {
		t.Errorf("Health after a successful Put: %+v", h)
	}
	checkConsistent(t, s)
	s.Close()
	s = openT(t, dir, Options{MinFree: -1})
	if r := s.Recovery(); !r.Empty() {
		t.Errorf("recovery after a disk-full episode: %v", r)
	}
	checkConsistent(t, s)
}

// TestMinFree refuses writes before the file system is full, so bbolt
// never meets ENOSPC mid-commit.
func TestMinFree(t *testing.T) {
	dir := smallFS(t)
	const minFree = 1 << 20
	s := openT(t, dir, Options{MinFree: minFree})
	var n int
	var err error
	for n = 0; n < 30; n++ {
		m := segAt(cam, n)
		if err = ensureEpoch(s, cam, m.EpochStart); err == nil {
			err = s.Put(m, payload(n, 100<<10))
		}
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after %d segments: %v, want an early ErrDiskFull (no ENOSPC)", n, err)
	}
	h := s.Health()
	if !h.DiskFull || h.MinFree != minFree || h.Free < minFree-100<<10 {
		t.Errorf("Health: %+v; want the alarm, and at least MinFree minus one segment free", h)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := s.DeleteBefore(cam, segAt(cam, n/2).Start); err != nil {
		t.Fatal(err)
	}
	putSeg(t, s, cam, n, 100<<10)
	if h := s.Health(); h.DiskFull {
		t.Errorf("Health after space was freed: %+v", h)
	}
	checkConsistent(t, s)
}

// TestMinFreeDefault: the zero Options keep DefaultMinFree free.
func TestMinFreeDefault(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if h := s.Health(); h.MinFree != DefaultMinFree || h.Free <= 0 || h.DiskFull {
		t.Errorf("Health: %+v", h)
	}
	s.minFree = 1 << 62 // more than any disk
	err := s.PutEpoch(cam, base, base.Add(epochLen), record(base))
	if !errors.Is(err, ErrDiskFull) {
		t.Errorf("PutEpoch under MinFree: %v, want ErrDiskFull", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), epochsDir)); len(ents) != 0 {
		t.Errorf("refused write left %v", ents)
	}
}
