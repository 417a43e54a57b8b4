package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	j := openJ(t, dir, Options{})
	first := appendN(t, j, 0, 5)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openJ(t, dir, Options{})
	if got := j.Recovered(); len(got) != 0 {
		t.Errorf("Recovered after a clean close = %q, want nothing", got)
	}
	more := appendN(t, j, 5, 3)
	all, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, append(first, more...)) {
		t.Fatalf("Since(zero) = %v, want what Append returned", seqs(all))
	}
	checkChain(t, all, 1)
	if seq, hash := j.Head(); seq != 8 || hash != more[2].Hash {
		t.Errorf("Head = %d %s, want 8 %s", seq, hash, more[2].Hash)
	}
	r := verify(t, dir)
	wantOK(t, r)
	if r.Entries != 8 || r.LastSeq != 8 || r.LastHash != more[2].Hash {
		t.Errorf("Verify = %+v, want 8 entries ending at 8", r)
	}
}

func TestSinceAndAfter(t *testing.T) {
	j := openJ(t, t.TempDir(), Options{})
	appendN(t, j, 0, 6) // times t0 .. t0+5h
	for _, tc := range []struct {
		name string
		get  func() ([]Entry, error)
		want []uint64
	}{
		{"since zero", func() ([]Entry, error) { return j.Since(time.Time{}) }, []uint64{1, 2, 3, 4, 5, 6}},
		{"since exact time is inclusive", func() ([]Entry, error) { return j.Since(t0.Add(3 * time.Hour)) }, []uint64{4, 5, 6}},
		{"since between entries", func() ([]Entry, error) { return j.Since(t0.Add(150 * time.Minute)) }, []uint64{4, 5, 6}},
		{"since other zone", func() ([]Entry, error) {
			return j.Since(t0.Add(5 * time.Hour).In(time.FixedZone("CEST", 2*3600)))
		}, []uint64{6}},
		{"since future", func() ([]Entry, error) { return j.Since(t0.Add(24 * time.Hour)) }, nil},
		{"after 0", func() ([]Entry, error) { return j.After(0, 0) }, []uint64{1, 2, 3, 4, 5, 6}},
		{"after 4", func() ([]Entry, error) { return j.After(4, 0) }, []uint64{5, 6}},
		{"after last", func() ([]Entry, error) { return j.After(6, 0) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.get()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tc.want) {
				t.Errorf("got %v, want %v", seqs(got), tc.want)
			}
		})
	}
}

func TestAppendNormalizes(t *testing.T) {
	clock := newClock()
	j := openJ(t, t.TempDir(), Options{Now: clock.Now, Node: "dc-a"})
	long := strings.Repeat("€", MaxFieldBytes) // 3 bytes a rune: must be cut on a rune boundary
	in := Event{Actor: "nodekey:\xff\xfe", Object: long, Reason: "a\x00b\n<&>"}
	got, err := j.Append(in)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(t0) || got.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want the clock's %v in UTC", got.Time, t0)
	}
	if got.Node != "dc-a" {
		t.Errorf("Node = %q, want Options.Node", got.Node)
	}
	if got.Actor != "nodekey:\uFFFD" {
		t.Errorf("Actor = %q, want invalid UTF-8 replaced", got.Actor)
	}
	if len(got.Object) > MaxFieldBytes || !utf8.ValidString(got.Object) || !strings.HasSuffix(got.Object, truncMark) {
		t.Errorf("Object is %d bytes (valid %v), want cut to %d with a marker", len(got.Object), utf8.ValidString(got.Object), MaxFieldBytes)
	}
	e, err := j.Append(Event{Time: t0.In(time.FixedZone("CEST", 2*3600)), Node: "store-1"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Node != "store-1" || e.Time.Location() != time.UTC {
		t.Errorf("got node %q time %v, want the caller's node and UTC", e.Node, e.Time)
	}
	back, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0] != got || back[1] != e {
		t.Errorf("read back %+v, want %+v and %+v", back, got, e)
	}
	if _, err := j.Append(Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("Append accepted a time in the year 10000")
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	j := openJ(t, dir, Options{})
	const workers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := j.Append(event(w*each + i)); err != nil {
					errs <- err
				}
			}
		})
	}
	// A reader and verifiers, with and without the Journal's lock, run
	// beside the writers and must never see damage.
	wg.Go(func() {
		for range 5 {
			if _, err := j.Since(time.Time{}); err != nil {
				errs <- err
			}
			if r, err := j.Verify(); err != nil || !r.OK {
				errs <- errors.Join(err, errors.New(r.String()))
			}
		}
	})
	wg.Go(func() {
		for range 50 {
			if r, err := Verify(dir); err != nil || !r.OK {
				errs <- errors.Join(err, errors.New(r.String()))
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*each {
		t.Fatalf("%d entries, want %d", len(all), workers*each)
	}
	checkChain(t, all, 1)
	wantOK(t, verify(t, dir))
}

func TestOpenRecoversFromCrash(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, dir string) // leaves the state a crash leaves, after 5 entries
		note  string                         // in Verify's notes before Open, and in Recovered
		want  uint64                         // entries that survive
	}{
		{"torn half line", func(t *testing.T, dir string) {
			line := nextLine(t, dir)
			writeLines(t, dir, append(lines(t, dir), line[:len(line)/2]))
		}, "unterminated", 5},
		{"torn newline only", func(t *testing.T, dir string) {
			line := nextLine(t, dir)
			writeLines(t, dir, append(lines(t, dir), line[:len(line)-1]))
		}, "unterminated", 5},
		{"head one behind", func(t *testing.T, dir string) {
			old, err := os.ReadFile(auditFile(dir, headName))
			if err != nil {
				t.Fatal(err)
			}
			j := openJ(t, dir, Options{})
			appendN(t, j, 5, 1)
			j.Close()
			if err := os.WriteFile(auditFile(dir, headName), old, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "head", 6},
		{"temporary files left", func(t *testing.T, dir string) {
			if err := os.WriteFile(auditFile(dir, ".head.json-123.tmp"), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := build(t, 5)
			tc.crash(t, dir)
			before := verify(t, dir)
			wantOK(t, before)
			if tc.note != "" && !strings.Contains(strings.Join(before.Notes, "\n"), tc.note) {
				t.Errorf("Verify notes %q, want one about %q", before.Notes, tc.note)
			}
			j := openJ(t, dir, Options{})
			rec := strings.Join(j.Recovered(), "\n")
			if tc.note != "" && !strings.Contains(rec, tc.note) || tc.note == "" && rec != "" {
				t.Errorf("Recovered = %q, want a note about %q", rec, tc.note)
			}
			e, err := j.Append(event(9))
			if err != nil {
				t.Fatal(err)
			}
			if e.Seq != tc.want+1 {
				t.Errorf("appended seq %d, want %d", e.Seq, tc.want+1)
			}
			j.Close()
			after := verify(t, dir)
			wantOK(t, after)
			if len(after.Notes) != 0 || after.Entries != int(tc.want)+1 {
				t.Errorf("after recovery Verify = %+v, want %d entries and no notes", after, tc.want+1)
			}
			if ents, _ := os.ReadDir(auditFile(dir, "")); len(ents) != 4 {
				t.Errorf("audit dir has %d files, want journal, head and two locks", len(ents))
			}
		})
	}
}

// nextLine is the line the next append to the closed journal in dir would
// write: what a crash may leave partly written.
func nextLine(t *testing.T, dir string) []byte {
	t.Helper()
	ls := lines(t, dir)
	last := mustDecode(t, ls[len(ls)-1])
	next := Entry{Seq: last.Seq + 1, Prev: last.Hash, Event: event(int(last.Seq))}
	next.Hash = next.sum()
	line, err := encodeLine(next)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestOpenRefusesUnknownEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"head missing", func(t *testing.T, dir string) { os.Remove(auditFile(dir, headName)) }},
		{"head garbage", func(t *testing.T, dir string) { os.WriteFile(auditFile(dir, headName), []byte("x"), 0o600) }},
		{"journal past a head that is not on its chain", func(t *testing.T, dir string) {
			b, _ := encodeRecord(position{Seq: 3, Hash: Digest{3}})
			os.WriteFile(auditFile(dir, headName), b, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := build(t, 5)
			tc.damage(t, dir)
			j, err := Open(dir, Options{})
			if !errors.Is(err, ErrDamaged) {
				j.Close()
				t.Fatalf("Open = %v, want ErrDamaged", err)
			}
			if r := verify(t, dir); r.OK || r.Fault != FaultHead {
				t.Errorf("Verify = %+v, want a head fault", r)
			}
		})
	}
}

// A crash between writing a batch (one write and fsync) and updating the
// head leaves the head several entries behind a journal that chains on
// from it: Open moves the head forward, loses nothing, and says so.
func TestOpenRepairsHeadBehindABatch(t *testing.T) {
	dir := build(t, 3)
	head, err := os.ReadFile(auditFile(dir, headName))
	if err != nil {
		t.Fatal(err)
	}
	j := openJ(t, dir, Options{})
	batch := []Event{event(3), event(4), event(5), event(6)}
	if _, err := j.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// The head as it was before the batch: what the crash left.
	if err := os.WriteFile(auditFile(dir, headName), head, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := verify(t, dir); !r.OK || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "4 entries behind") {
		t.Fatalf("Verify = %+v, want OK with a note about the batch", r)
	}
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after a crash inside a batch: %v", err)
	}
	defer j.Close()
	if rec := j.Recovered(); len(rec) != 1 || !strings.Contains(rec[0], "from entry 3 to 7") {
		t.Errorf("Recovered = %q, want the head moved from 3 to 7", rec)
	}
	e, err := j.Append(event(7))
	if err != nil || e.Seq != 8 {
		t.Fatalf("append after recovery: %+v %v, want entry 8", e, err)
	}
	if r := verify(t, dir); !r.OK || r.Entries != 8 {
		t.Errorf("Verify = %+v, want 8 entries, OK", r)
	}
}

func TestAppendAfterDeletedTailKeepsEvidence(t *testing.T) {
	dir := build(t, 5)
	writeLines(t, dir, lines(t, dir)[:4])
	j := openJ(t, dir, Options{})
	e, err := j.Append(event(7))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 6 {
		t.Errorf("appended seq %d, want 6 (chained on from the head)", e.Seq)
	}
	r := verify(t, dir)
	if r.Fault != FaultDeleted || r.FirstBad != 5 {
		t.Errorf("Verify = %+v, want entry 5 deleted", r)
	}
}

func TestLockClosedAndModes(t *testing.T) {
	dir := t.TempDir()
	j := openJ(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	appendN(t, j, 0, 1)
	for name, want := range map[string]os.FileMode{
		"": os.ModeDir | 0o700, journalName: 0o600, headName: 0o600, lockName: 0o600, writeLockName: 0o600,
	} {
		if fi, err := os.Stat(auditFile(dir, name)); err != nil || fi.Mode() != want {
			t.Errorf("%q: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	_, err1 := j.Append(event(1))
	_, err2 := j.Since(time.Time{})
	_, err3 := j.Prune(t0)
	_, err4 := j.Verify()
	for i, err := range []error{err1, err2, err3, err4} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d after Close = %v, want ErrClosed", i, err)
		}
	}
	openJ(t, dir, Options{}) // the lock was released
	if _, err := Open(t.TempDir(), Options{Retention: -time.Hour}); err == nil {
		t.Error("Open accepted a negative retention")
	}
}

func mustDecode(t testing.TB, line []byte) Entry {
	t.Helper()
	e, err := DecodeEntry(line)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFailedAppendIsUndone(t *testing.T) {
	dir := t.TempDir()
	j := openJ(t, dir, Options{})
	appendN(t, j, 0, 2)
	fsync = func(*os.File) error { fsync = (*os.File).Sync; return errors.New("injected fsync failure") }
	t.Cleanup(func() { fsync = (*os.File).Sync })
	if _, err := j.Append(event(2)); err == nil {
		t.Fatal("Append succeeded although its fsync failed")
	}
	e, err := j.Append(event(3))
	if err != nil || e.Seq != 3 {
		t.Fatalf("Append after a failed one = %d, %v; want 3", e.Seq, err)
	}
	all, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(all); !slices.Equal(got, []uint64{1, 2, 3}) || all[2].Object != event(3).Object {
		t.Errorf("journal holds %v, want 1..3 without the failed event", got)
	}
	wantOK(t, verify(t, dir))
}

// AppendBatch is many Appends in one write: the same chain, the same head,
// and a batch with a bad event records nothing.
func TestAppendBatch(t *testing.T) {
	dir := t.TempDir()
	j := openJ(t, dir, Options{})
	first := appendN(t, j, 0, 2)
	batch, err := j.AppendBatch([]Event{event(2), event(3), event(4)})
	if err != nil || len(batch) != 3 {
		t.Fatalf("AppendBatch = %d entries, %v", len(batch), err)
	}
	if _, err := j.AppendBatch([]Event{event(5), {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}); err == nil {
		t.Fatal("AppendBatch with an event in the year 10000 succeeded")
	}
	all, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, append(first, batch...)) {
		t.Fatalf("Since(zero) = %v, want the two appends then the batch", seqs(all))
	}
	checkChain(t, all, 1)
	if seq, hash := j.Head(); seq != 5 || hash != batch[2].Hash {
		t.Errorf("Head = %d %s, want 5 %s", seq, hash, batch[2].Hash)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	r := verify(t, dir)
	wantOK(t, r)
	if r.Entries != 5 {
		t.Errorf("Verify = %+v, want 5 entries", r)
	}
}

// After reads from the nearest mark before what it is asked for: its
// answers equal a full scan's at every cursor, before and after a prune
// moves every offset, and a damaged line before the mark is not read while
// one after it is reported with its line number in the file.
func TestAfterReadsFromMarks(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	j := openJ(t, dir, Options{Retention: 5 * day, Now: clock.Now})
	const n = 3*markEvery + 40
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{Time: t0.Add(time.Duration(i) * time.Minute), Action: "live-view", Object: fmt.Sprintf("camera:%d", i)}
	}
	if _, err := j.AppendBatch(events); err != nil {
		t.Fatal(err)
	}
	check := func(stage string) {
		t.Helper()
		all, err := j.Since(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		last := all[len(all)-1].Seq
		for _, seq := range []uint64{0, 1, markEvery - 1, markEvery, markEvery + 1, 2 * markEvery, last - 5, last - 1, last, last + 3} {
			got, err := j.After(seq, 0)
			if err != nil {
				t.Fatalf("%s: After(%d): %v", stage, seq, err)
			}
			var want []uint64
			for _, e := range all {
				if e.Seq > seq {
					want = append(want, e.Seq)
				}
			}
			if !slices.Equal(seqs(got), want) {
				t.Fatalf("%s: After(%d) = %d entries from %v, want %d from %v", stage, seq, len(got), first(seqs(got)), len(want), first(want))
			}
		}
	}
	check("fresh")
	if got, err := j.After(markEvery-2, 5); err != nil || !slices.Equal(seqs(got), []uint64{markEvery - 1, markEvery, markEvery + 1, markEvery + 2, markEvery + 3}) {
		t.Fatalf("After(%d, 5) = %v, %v", markEvery-2, seqs(got), err)
	}
	j.mu.Lock()
	marks := len(j.marks)
	j.mu.Unlock()
	if marks != 3 {
		t.Fatalf("%d marks after a full read of %d entries, want 3", marks, n)
	}
	// A prune rewrites the file: the marks must not point into the old one.
	clock.Set(t0.Add(7 * day))
	if _, err := j.Prune(t0.Add(5*day + (n/2)*time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after a prune")

	// A prune in the middle of a read: the read finishes on the old file,
	// and the marks it learned there are not kept.
	clock.Set(t0.Add(8 * day))
	pruned := false
	if _, err := j.read("test", 0, 0, func(e *Entry) bool {
		if !pruned {
			pruned = true
			if _, err := j.Prune(t0.Add(5*day + (3*n/4)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	check("after a prune during a read")

	// Damage entry 10's line, then 2*markEvery+5's.
	j.Close()
	path := filepath.Join(dir, subdir, journalName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	j2 := openJ(t, dir, Options{Retention: 5 * day, Now: clock.Now})
	all, err := j2.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	base := all[0].Seq
	flip := func(seq uint64) int {
		i := int(seq - base)
		lines[i] = bytes.Replace(lines[i], []byte("live-view"), []byte("live-vieW"), 1)
		return i + 1
	}
	early := flip(base + 10)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	// j2 learned its marks before the damage; reads from a mark past the
	// damaged line do not see it.
	tail := all[len(all)-1].Seq
	if got, err := j2.After(tail-3, 0); err != nil || len(got) != 3 {
		t.Fatalf("After(%d) with damage before its mark = %d entries, %v", tail-3, len(got), err)
	}
	if _, err := j2.After(base, 0); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("line %d:", early)) {
		t.Fatalf("After(%d) past damaged line %d: %v", base, early, err)
	}
	late := flip(tail - 20)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := j2.After(tail-25, 0); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("line %d:", late)) {
		t.Fatalf("After(%d) over damaged line %d: %v", tail-25, late, err)
	}
}

func first(s []uint64) any {
	if len(s) == 0 {
		return "nothing"
	}
	return s[0]
}

// BenchmarkJournalAfter: what a datacenter's pull costs on a store with a
// month of entries (100 000): the entries after its copy's last, 20 behind
// the head; the baseline is the same answer from a scan of every line.
func BenchmarkJournalAfter(b *testing.B) {
	j := openJ(b, b.TempDir(), Options{})
	const n = 100_000
	batch := make([]Event, 1000)
	for i := 0; i < n; i += len(batch) {
		for k := range batch {
			batch[k] = event(i + k)
		}
		if _, err := j.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	head, _ := j.Head()
	perPull := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(time.Since(start))/float64(b.N)/float64(time.Millisecond), "ms/pull")
	}
	b.Run("marks", func(b *testing.B) {
		j.Since(time.Time{}) // learns the marks, as the first pull does
		start := time.Now()
		for b.Loop() {
			if got, err := j.After(head-20, 0); err != nil || len(got) != 20 {
				b.Fatal(len(got), err)
			}
		}
		perPull(b, start)
	})
	b.Run("full-scan", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			got, err := j.read("after", 0, 0, func(e *Entry) bool { return e.Seq > head-20 })
			if err != nil || len(got) != 20 {
				b.Fatal(len(got), err)
			}
		}
		perPull(b, start)
	})
}
