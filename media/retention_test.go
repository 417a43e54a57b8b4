package media

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store"
)

// TestRetain stores 6 hours of 10-minute segments in 1-hour epochs and
// keeps 2 hours: exactly the segments that ended before now-2h go, with
// the epochs whose segments all went; a second pass deletes nothing.
func TestRetain(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const seg, epoch = 10 * time.Minute, time.Hour
	for e := range 6 {
		es := t0.Add(time.Duration(e) * epoch)
		// The store takes records as opaque bytes; the recorder's are tested elsewhere.
		if err := st.PutEpoch(testCamera, es, es.Add(epoch), []byte(fmt.Sprint("record ", e))); err != nil {
			t.Fatal(err)
		}
		for s := range 6 {
			start := es.Add(time.Duration(s) * seg)
			m := store.SegmentMeta{Camera: testCamera, Start: start, End: start.Add(seg), EpochStart: es}
			if err := st.Put(m, []byte(fmt.Sprint("segment ", start))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Other cameras are not touched.
	other := "brno/yard"
	if err := st.PutEpoch(other, t0, t0.Add(epoch), []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(store.SegmentMeta{Camera: other, Start: t0, End: t0.Add(seg), EpochStart: t0}, []byte("x")); err != nil {
		t.Fatal(err)
	}

	now := t0.Add(6*time.Hour + 5*time.Minute) // cutoff 04:05: the 03:50–04:00 segment goes, 04:00–04:10 stays
	for _, bad := range []time.Duration{0, -time.Hour} {
		if d, err := Retain(st, testCamera, bad, now); err == nil || !strings.Contains(err.Error(), "refusing") || d.Segments != 0 {
			t.Errorf("Retain with retention %v: %+v, %v; want a refusal", bad, d, err)
		}
	}
	if _, err := Retain(nil, testCamera, time.Hour, now); err == nil {
		t.Error("Retain without a store succeeded")
	}
	if _, err := Retain(st, testCamera, time.Hour, time.Time{}); err == nil {
		t.Error("Retain at the zero time succeeded")
	}
	if s, _ := st.Stats(testCamera); s.Segments != 36 {
		t.Fatalf("a refused Retain deleted something: %+v", s)
	}

	d, err := Retain(st, testCamera, 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := t0.Add(4*time.Hour + 5*time.Minute)
	if d.Segments != 24 || d.Epochs != 4 || !d.Cutoff.Equal(cutoff) || !d.From.Equal(t0) || !d.To.Equal(t0.Add(4*time.Hour)) {
		t.Errorf("Deleted: %+v; want 24 segments from %s to %s and 4 epochs", d, t0, t0.Add(4*time.Hour))
	}
	left, err := st.Segments(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 12 || !left[0].Start.Equal(t0.Add(4*time.Hour)) {
		t.Fatalf("%d segments left, the first from %s; want 12 from 04:00", len(left), left[0].Start)
	}
	for _, m := range left {
		if m.End.Before(cutoff) {
			t.Errorf("segment %s–%s ended before the cutoff and is still stored", m.Start, m.End)
		}
	}
	if eps, _ := st.Epochs(testCamera, allFrom, allTo); len(eps) != 2 {
		t.Errorf("%d epoch records left, want the 2 that still have segments", len(eps))
	}
	if s, _ := st.Stats(other); s.Segments != 1 || s.Epochs != 1 {
		t.Errorf("another camera's footage: %+v", s)
	}
	if d, err := Retain(st, testCamera, 2*time.Hour, now); err != nil || d.Segments != 0 || d.Epochs != 0 {
		t.Errorf("Retain again: %+v, %v; want nothing more deleted", d, err)
	}
}

// TestRetainExcept: a held segment outlives retention with its epoch
// record; the rest of the expired footage goes.
func TestRetainExcept(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const seg, epoch = 10 * time.Minute, time.Hour
	for e := range 3 {
		es := t0.Add(time.Duration(e) * epoch)
		if err := st.PutEpoch(testCamera, es, es.Add(epoch), []byte(fmt.Sprint("record ", e))); err != nil {
			t.Fatal(err)
		}
		for s := range 6 {
			start := es.Add(time.Duration(s) * seg)
			if err := st.Put(store.SegmentMeta{Camera: testCamera, Start: start, End: start.Add(seg), EpochStart: es}, []byte(fmt.Sprint("segment ", start))); err != nil {
				t.Fatal(err)
			}
		}
	}
	heldStart := t0.Add(70 * time.Minute) // in the second epoch
	held := func(m store.SegmentMeta) bool { return m.Start.Equal(heldStart) }
	now := t0.Add(10 * time.Hour) // everything is past a 2 h retention
	d, err := RetainExcept(st, testCamera, 2*time.Hour, now, held)
	if err != nil {
		t.Fatal(err)
	}
	if d.Segments != 17 || d.Held != 1 || d.Epochs != 2 {
		t.Errorf("Deleted: %+v; want 17 segments and 2 epochs deleted, 1 held", d)
	}
	left, _ := st.Segments(testCamera, allFrom, allTo)
	if len(left) != 1 || !left[0].Start.Equal(heldStart) {
		t.Errorf("left: %+v; want only the held segment", left)
	}
	if _, err := st.Epoch(testCamera, t0.Add(epoch)); err != nil {
		t.Errorf("the held segment's epoch record: %v", err)
	}
	if _, err := RetainExcept(st, testCamera, 0, now, held); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("RetainExcept with zero retention: %v", err)
	}
}
