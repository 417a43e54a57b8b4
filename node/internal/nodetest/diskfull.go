//go:build linux

package nodetest

// A journal's disk running full, for the tests of what a node does when it
// cannot audit (the policy's audit queue, a node refusing access).

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// SmallAuditFS mounts a 1 MiB tmpfs as dir's audit directory, or skips if
// this process may not mount; it returns the directory.
func SmallAuditFS(t *testing.T, dir string) string {
	t.Helper()
	adir := filepath.Join(dir, "audit")
	if err := os.MkdirAll(adir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", adir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(adir, 0) })
	return adir
}

// FillUp writes filler files into dir until its file system is full and
// returns them, to be removed when space should return.
func FillUp(t *testing.T, dir string) []string {
	t.Helper()
	var fillers []string
	buf := make([]byte, 4096)
	for i := 0; i < 64; i++ {
		p := filepath.Join(dir, "filler-"+strconv.Itoa(i))
		f, err := os.Create(p)
		if err != nil {
			break
		}
		fillers = append(fillers, p)
		var werr error
		for werr == nil {
			_, werr = f.Write(buf)
		}
		f.Close()
		if !errors.Is(werr, syscall.ENOSPC) {
			t.Fatal(werr)
		}
	}
	return fillers
}
