package policystore

import (
	"os"
	"strconv"
	"sync"
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

// A burst of events is written in a few batches, not one write (three
// fsyncs) per event; a lone event is written at once; Flush does not wait
// out the gap; nothing is lost or reordered.
func TestQueueGroupsBursts(t *testing.T) {
	j, err := audit.Open(t.TempDir(), audit.Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := NewQueue(j, t.Logf)
	defer q.Close()
	var mu sync.Mutex
	var writes []int
	q.append = func(b []audit.Event) ([]audit.Entry, error) {
		mu.Lock()
		writes = append(writes, len(b))
		mu.Unlock()
		return j.AppendBatch(b)
	}
	const n = 200
	start := time.Now()
	for i := range n {
		q.Enqueue(audit.Event{Actor: "t", Action: "burst", Object: strconv.Itoa(i)})
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	q.Flush()
	es, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n {
		t.Fatalf("%d entries, want %d", len(es), n)
	}
	for i, e := range es {
		if e.Object != strconv.Itoa(i) {
			t.Fatalf("entry %d is %q", i, e.Object)
		}
	}
	mu.Lock()
	got := len(writes)
	mu.Unlock()
	// At most one write per minGap, plus the first and Flush's.
	if limit := int(took/minGap) + 3; got > limit {
		t.Fatalf("%d writes for %d events over %v; want at most %d", got, n, took.Round(time.Millisecond), limit)
	}
	t.Logf("%d events over %v in %d writes", n, took.Round(time.Millisecond), got)

	// After a quiet spell, one event is written without a Flush.
	time.Sleep(2 * minGap)
	q.Enqueue(audit.Event{Actor: "t", Action: "lone"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if es, _ := j.Since(time.Time{}); len(es) == n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone event was not written within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Flush in the middle of a gap writes at once.
	q.Enqueue(audit.Event{Actor: "t", Action: "a"})
	q.Enqueue(audit.Event{Actor: "t", Action: "b"})
	q.Flush()
	if es, _ := j.Since(time.Time{}); len(es) != n+3 {
		t.Fatalf("after Flush: %d entries, want %d", len(es), n+3)
	}
}

// Enqueue racing Close never panics on the closed wake channel, and every
// event ends up journaled.
func TestQueueEnqueueRacesClose(t *testing.T) {
	for range 20 {
		j, err := audit.Open(t.TempDir(), audit.Options{Node: "n"})
		if err != nil {
			t.Fatal(err)
		}
		q := NewQueue(j, t.Logf)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					q.Enqueue(audit.Event{Actor: "t", Action: "race", Object: strconv.Itoa(g*100 + i)})
				}
			}()
		}
		q.Close()
		wg.Wait()
		es, err := j.Since(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 100 {
			t.Fatalf("%d entries, want 100", len(es))
		}
		j.Close()
	}
}
