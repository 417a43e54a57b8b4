package node

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

// A batch the journal refuses for lack of space is written once space
// returns: a moment of a full disk leaves no hole in the journal.
func TestAuditQueueRetriesAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	adir := smallAuditFS(t, dir)
	j, err := audit.Open(dir, audit.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := newAuditQueue(j, t.Logf)
	defer q.close()
	fillers := fillUp(t, adir)
	for i := range 5 {
		q.enqueue(audit.Event{Actor: "test", Action: "while-full", Object: strconv.Itoa(i)})
	}
	q.flush() // reported, not written: it must not hang on a full disk
	count := func() int {
		es, err := j.Since(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Action == "while-full" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("%d events written on a full disk", n)
	}
	for _, p := range fillers {
		os.Remove(p)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 events journaled after space returned", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d events journaled, want exactly 5 (no duplicates)", n)
	}
	if _, err := audit.Verify(dir); err != nil {
		t.Fatalf("the journal after the retry: %v", err)
	}
}

// smallAuditFS mounts a 1 MiB tmpfs as dir's audit directory, or skips if
// this process may not mount; it returns the directory.
func smallAuditFS(t *testing.T, dir string) string {
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

// fillUp writes filler files into dir until its file system is full and
// returns them, to be removed when space should return.
func fillUp(t *testing.T, dir string) []string {
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
