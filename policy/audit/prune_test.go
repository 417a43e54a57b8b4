package audit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	j := openJ(t, dir, Options{Retention: 5 * day, Now: clock.Now, Node: "dc-a"})
	for i := range 10 { // days 0..9
		if _, err := j.Append(Event{Time: t0.Add(time.Duration(i) * day), Action: "grant"}); err != nil {
			t.Fatal(err)
		}
	}
	type step struct {
		name    string
		now     time.Time
		removed int
		left    []uint64 // sequence numbers left after the step
		cp      uint64   // the checkpoint's entry
	}
	for _, s := range []step{
		{"entries before day 5 go; the prune is recorded as 11", t0.Add(10 * day), 5, []uint64{6, 7, 8, 9, 10, 11}, 5},
		{"pruning again at once removes nothing", t0.Add(10 * day), 0, []uint64{6, 7, 8, 9, 10, 11}, 5},
		{"a zero time means the clock's", time.Time{}, 0, []uint64{6, 7, 8, 9, 10, 11}, 5},
		{"a day and a half later two more go", t0.Add(11*day + day/2), 2, []uint64{8, 9, 10, 11, 12}, 7},
		{"much later everything goes but the new record", t0.Add(100 * day), 5, []uint64{13}, 12},
	} {
		t.Run(s.name, func(t *testing.T) {
			clock.Set(t0.Add(10 * day))
			n, err := j.Prune(s.now)
			if err != nil || n != s.removed {
				t.Fatalf("Prune = %d, %v; want %d", n, err, s.removed)
			}
			all, err := j.Since(time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(all), s.left) {
				t.Fatalf("left %v, want %v", seqs(all), s.left)
			}
			checkChain(t, all, s.left[0])
			last := all[len(all)-1]
			if s.removed > 0 && (last.Action != ActionPrune || last.Actor != "dc-a" || last.Node != "dc-a" || !strings.Contains(last.Object, "-")) {
				t.Errorf("last entry %+v, want the prune's record", last)
			}
			r := verify(t, dir)
			wantOK(t, r)
			if r.Checkpoint == nil || r.Checkpoint.Seq != s.cp {
				t.Errorf("checkpoint %+v, want entry %d", r.Checkpoint, s.cp)
			}
		})
	}
	// The chain goes on across a reopen.
	j.Close()
	j = openJ(t, dir, Options{})
	e, err := j.Append(event(1))
	if err != nil || e.Seq != 14 {
		t.Fatalf("Append after reopen = %d, %v; want 14", e.Seq, err)
	}
	wantOK(t, verify(t, dir))
}

func TestPruneDefaultRetentionAndOrder(t *testing.T) {
	now := t0.Add(100 * day)
	j := openJ(t, t.TempDir(), Options{})
	for _, age := range []time.Duration{40 * day, 31 * day, 29 * day, 35 * day, 10 * day} {
		if _, err := j.Append(Event{Time: now.Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	// Only a run at the start goes: entry 4 (35 days old) waits behind 3.
	if n, err := j.Prune(now); n != 2 || err != nil {
		t.Fatalf("Prune = %d, %v; want 2 (30-day default, oldest run only)", n, err)
	}
	all, _ := j.Since(time.Time{})
	if got := seqs(all); !slices.Equal(got, []uint64{3, 4, 5, 6}) {
		t.Errorf("left %v, want 3..6", got)
	}
}

func TestPruneKeepsDamage(t *testing.T) {
	dir := build(t, 10) // hourly from t0
	ls := lines(t, dir)
	ls[3] = rehash(t, ls[3], func(e *Entry) { e.Reason = "forged" }) // entry 4; detected at entry 5
	writeLines(t, dir, ls)
	j := openJ(t, dir, Options{Retention: time.Hour})
	n, err := j.Prune(t0.Add(100 * day))
	if n != 2 || !errors.Is(err, ErrDamaged) {
		t.Fatalf("Prune = %d, %v; want entries 1-2 removed and ErrDamaged", n, err)
	}
	t.Log(err)
	r, err := j.Verify()
	if err != nil || r.Fault != FaultEdited || r.FirstBad != 4 {
		t.Fatalf("Verify after prune = %+v, %v; want entry 4 still reported edited", r, err)
	}
}

// TestInterruptedPrune leaves the state of a crash between writing the
// checkpoint and replacing the journal, after an earlier complete prune.
func TestInterruptedPrune(t *testing.T) {
	dir := pruned(t) // checkpoint 5, entries 6..11
	ls := lines(t, dir)
	e8 := mustDecode(t, ls[2])
	b, err := Checkpoint{Seq: 8, Hash: e8.Hash, Time: e8.Time, Pruned: t0.Add(20 * day)}.encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(auditFile(dir, ""), checkpointName, b); err != nil {
		t.Fatal(err)
	}
	r := verify(t, dir)
	wantOK(t, r)
	if !strings.Contains(strings.Join(r.Notes, " "), "interrupted") {
		t.Errorf("notes %q, want the interrupted prune", r.Notes)
	}
	j := openJ(t, dir, Options{})
	if rec := strings.Join(j.Recovered(), " "); !strings.Contains(rec, "interrupted prune") {
		t.Errorf("Recovered = %q, want the finished prune", rec)
	}
	all, _ := j.Since(time.Time{})
	if got := seqs(all); !slices.Equal(got, []uint64{9, 10, 11}) {
		t.Errorf("left %v, want 9..11", got)
	}
	j.Close()
	r = verify(t, dir)
	wantOK(t, r)
	if len(r.Notes) != 0 {
		t.Errorf("notes %q after Open, want none", r.Notes)
	}
}

// A prune that fails between its two steps is finished, as Open would,
// before the next append: the journal does not stay off until a restart.
func TestPruneFailingAfterCheckpoint(t *testing.T) {
	dir := build(t, 4) // hourly from t0
	j := openJ(t, dir, Options{Retention: time.Hour})
	testHookAfterCheckpoint = func() error { return errors.New("injected crash") }
	t.Cleanup(func() { testHookAfterCheckpoint = func() error { return nil } })
	if _, err := j.Prune(t0.Add(2*time.Hour + time.Minute)); err == nil {
		t.Fatal("Prune succeeded despite the injected failure")
	}
	r := verify(t, dir)
	wantOK(t, r)
	if r.Checkpoint == nil || r.Checkpoint.Seq != 2 || len(r.Notes) != 1 {
		t.Fatalf("Verify = %+v, want checkpoint 2 written and an interrupted prune noted", r)
	}
	testHookAfterCheckpoint = func() error { return nil }
	if e, err := j.Append(event(5)); err != nil || e.Seq != 5 {
		t.Fatalf("Append after the failed prune = %d, %v; want 5", e.Seq, err)
	}
	all, _ := j.Since(time.Time{})
	if got := seqs(all); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("after the repair %v, want 3, 4, 5", got)
	}
	j.Close()
	r = verify(t, dir)
	wantOK(t, r)
	if len(r.Notes) != 0 {
		t.Errorf("notes %q after the repair, want none", r.Notes)
	}
	j = openJ(t, dir, Options{})
	if e, err := j.Append(event(6)); err != nil || e.Seq != 6 {
		t.Errorf("Append after reopen = %d, %v; want 6", e.Seq, err)
	}
}

// SetRetention: the policy's retention replaces the one the journal was
// opened with from the next Prune on; a non-positive one is refused.
func TestSetRetention(t *testing.T) {
	clock := newClock()
	j := openJ(t, t.TempDir(), Options{Retention: 5 * day, Now: clock.Now, Node: "dc-a"})
	for i := range 10 {
		if _, err := j.Append(Event{Time: t0.Add(time.Duration(i) * day), Action: "grant"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.SetRetention(8 * day); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Prune(t0.Add(10 * day)); err != nil || n != 2 {
		t.Fatalf("Prune with 8 days kept = %d, %v; want days 0 and 1 gone", n, err)
	}
	if j.Retention() != 8*day {
		t.Errorf("Retention() = %v", j.Retention())
	}
	for _, d := range []time.Duration{0, -day} {
		if err := j.SetRetention(d); err == nil {
			t.Errorf("SetRetention(%v) accepted", d)
		}
	}
	if j.Retention() != 8*day {
		t.Errorf("a refused SetRetention changed it to %v", j.Retention())
	}
}
