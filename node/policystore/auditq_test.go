package policystore

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy/audit"
)

// A batch the journal refuses for lack of space is written once space
// returns: a moment of a full disk leaves no hole in the journal.
func TestAuditQueueRetriesAfterDiskFull(t *testing.T) {
	dir := t.TempDir()
	adir := nodetest.SmallAuditFS(t, dir)
	j, err := audit.Open(dir, audit.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := NewQueue(j, t.Logf)
	defer q.Close()
	fillers := nodetest.FillUp(t, adir)
	for i := range 5 {
		q.Enqueue(audit.Event{Actor: "test", Action: "while-full", Object: strconv.Itoa(i)})
	}
	q.Flush() // reported, not written: it must not hang on a full disk
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

// After Close an event is written at once, not queued where no writer
// would ever take it.
func TestQueueWritesAfterClose(t *testing.T) {
	j, err := audit.Open(t.TempDir(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := NewQueue(j, t.Logf)
	q.Enqueue(audit.Event{Actor: "t", Action: "before-close"})
	q.Close()
	q.Close() // twice is harmless
	q.Enqueue(audit.Event{Actor: "t", Action: "after-close"})
	q.Flush() // returns at once on a closed queue
	es, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Action)
	}
	if len(got) != 2 || got[0] != "before-close" || got[1] != "after-close" {
		t.Fatalf("journal holds %v, want before-close then after-close", got)
	}
}
