package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// open opens the journal in dir and closes it when the test ends.
func openJ(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// event is the i-th test event, at t0 plus i hours.
func event(i int) Event {
	return Event{
		Time:     t0.Add(time.Duration(i) * time.Hour),
		Node:     "store-brno",
		Actor:    "admin:alice",
		Action:   "live-view",
		Object:   "camera:till-" + string(rune('a'+i%26)),
		Decision: Allow,
		Reason:   "grant g-12",
	}
}

// appendN appends events from, from+1, … from+n-1.
func appendN(t testing.TB, j *Journal, from, n int) []Entry {
	t.Helper()
	var out []Entry
	for i := from; i < from+n; i++ {
		e, err := j.Append(event(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

// build makes a closed journal of n entries in a new directory.
func build(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 0, n)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func auditFile(dir, name string) string { return filepath.Join(dir, subdir, name) }

// lines returns the journal's lines, each with its newline.
func lines(t testing.TB, dir string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(auditFile(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t testing.TB, dir string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(auditFile(dir, journalName), bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func verify(t testing.TB, dir string) Report {
	t.Helper()
	r, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

func wantOK(t testing.TB, r Report) {
	t.Helper()
	if !r.OK || r.Fault != "" || r.FirstBad != 0 {
		t.Fatalf("Verify = %+v, want OK", r)
	}
}

// checkChain fails unless es are consecutive, starting at first, and linked.
func checkChain(t testing.TB, es []Entry, first uint64) {
	t.Helper()
	for i, e := range es {
		if want := first + uint64(i); e.Seq != want {
			t.Fatalf("entry %d has seq %d, want %d", i, e.Seq, want)
		}
		if e.Hash != e.sum() {
			t.Fatalf("entry %d: hash does not match contents", e.Seq)
		}
		if i > 0 && e.Prev != es[i-1].Hash {
			t.Fatalf("entry %d: prev %s, want the hash of entry %d, %s", e.Seq, e.Prev, es[i-1].Seq, es[i-1].Hash)
		}
	}
}

func seqs(es []Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}
