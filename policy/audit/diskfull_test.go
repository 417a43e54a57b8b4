package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// smallFS mounts a 1 MiB tmpfs for the test, or skips if this process may
// not mount.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillUp writes filler files into dir until the file system is full, and
// returns them.
func fillUp(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		p := filepath.Join(dir, "filler-"+strconv.Itoa(i))
		f, err := os.Create(p)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return files
			}
			t.Fatal(err)
		}
		files = append(files, p)
		for {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
		f.Close()
		if i > 64 {
			return files
		}
	}
}

// TestDiskFullRecovers fills a real file system under a journal: appends
// fail while it is full, Failure says so, and once space is freed the
// journal records again by itself (no reopen), its chain intact.
func TestDiskFullRecovers(t *testing.T) {
	dir := smallFS(t)
	j := openJ(t, dir, Options{Now: newClock().Now})
	appendN(t, j, 1, 5)
	files := fillUp(t, dir)
	var failed int
	for i := 6; i < 200; i++ {
		if _, err := j.Append(event(i)); err != nil {
			failed++
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append on a full file system: %v, want ENOSPC", err)
			}
			if j.Failure() == nil {
				t.Fatal("Failure is nil after a failed append")
			}
		}
		if failed >= 3 {
			break
		}
	}
	if failed == 0 {
		t.Fatal("no append failed on a full file system")
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	e, err := j.Append(event(1000))
	if err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if err := j.Failure(); err != nil {
		t.Errorf("Failure after a successful append: %v", err)
	}
	es, err := j.After(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkChain(t, es, 1)
	if last := es[len(es)-1]; last.Seq != e.Seq || last.Hash != e.Hash {
		t.Errorf("last entry %d, want the one appended after recovery (%d)", last.Seq, e.Seq)
	}
	j.Close()
	wantOK(t, verify(t, dir))
	j = openJ(t, dir, Options{})
	if got, _ := j.Head(); got != e.Seq {
		t.Errorf("head after reopen %d, want %d", got, e.Seq)
	}
}
