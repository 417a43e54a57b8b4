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

// TestOpenOnFullDiskWithHeadBehind is a node restarted while its disk is
// full after an append whose head write failed: the journal holds one entry
// more than the head file, and moving the head forward needs space. Open
// must still succeed (the node comes up and alarms rather than staying
// down), report the failure, continue the chain from the last entry, and
// catch the head up by itself once space is freed.
func TestOpenOnFullDiskWithHeadBehind(t *testing.T) {
	dir := smallFS(t)
	j := openJ(t, dir, Options{Now: newClock().Now})
	appendN(t, j, 1, 4)
	behind, err := os.ReadFile(auditFile(dir, headName))
	if err != nil {
		t.Fatal(err)
	}
	last := appendN(t, j, 5, 1)[0]
	j.Close()
	// The state a failed head write leaves: entry 5 in the journal, the
	// head file still at 4.
	if err := os.WriteFile(auditFile(dir, headName), behind, 0o600); err != nil {
		t.Fatal(err)
	}
	files := fillUp(t, dir)

	j, err = Open(dir, Options{Now: newClock().Now})
	if err != nil {
		t.Fatalf("Open on a full disk with the head one entry behind: %v", err)
	}
	defer j.Close()
	if seq, hash := j.Head(); seq != last.Seq || hash != last.Hash {
		t.Errorf("Head() = %d, want the journal's last entry %d", seq, last.Seq)
	}
	if err := j.Failure(); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Failure() = %v, want the head's write failing with ENOSPC", err)
	}
	if _, err := j.Append(event(6)); err == nil {
		t.Fatal("append on a full disk succeeded")
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	e, err := j.Append(event(7))
	if err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if e.Seq != last.Seq+1 || e.Prev != last.Hash {
		t.Errorf("appended entry %d after %x, want %d after the last entry %x", e.Seq, e.Prev, last.Seq+1, last.Hash)
	}
	if err := j.Failure(); err != nil {
		t.Errorf("Failure after a successful append: %v", err)
	}
	j.Close()
	wantOK(t, verify(t, dir))
}
