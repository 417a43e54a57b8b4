package store

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDeleteBefore: retention removes exactly the segments that end
// before the cutoff and the epoch records that end before it and that no
// remaining segment uses; it is idempotent.
func TestDeleteBefore(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	// Segments of 4 s starting 2 s into the grid: segment 14 is
	// [58 s, 62 s), in epoch 0 but ending in epoch 1.
	off := 2 * time.Second
	for i := range 45 {
		m := segAt(cam, i)
		m.Start, m.End = m.Start.Add(off), m.End.Add(off)
		m.EpochStart = epochOf(m.Start)
		if err := ensureEpoch(s, cam, m.EpochStart); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(m, payload(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	putSeg(t, s, "other/cam", 0, 100) // another camera is never touched
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

	steps := []struct {
		cutoff     time.Time
		want       Deleted // Camera and Cutoff filled in below
		firstLeft  int     // index of the oldest segment left
		epochsLeft []time.Time
	}{
		{at(2), Deleted{}, 0, []time.Time{at(0), at(60), at(120)}}, // nothing ends before 2 s
		{at(6), Deleted{}, 0, []time.Time{at(0), at(60), at(120)}}, // segment 0 ends at 6 s: not before
		{at(7), Deleted{Segments: 1, Bytes: 100, From: at(2), To: at(6)}, 1, []time.Time{at(0), at(60), at(120)}},
		// Epoch 0 ends at 60 s, but segment 14 (58–62 s) still uses it.
		{at(61), Deleted{Segments: 13, Bytes: 1300, From: at(6), To: at(58)}, 14, []time.Time{at(0), at(60), at(120)}},
		// Segment 14 goes, and with it epoch 0.
		{at(63), Deleted{Segments: 1, Bytes: 100, From: at(58), To: at(62), Epochs: 1, EpochsFrom: at(0), EpochsTo: at(60)}, 15, []time.Time{at(60), at(120)}},
		{at(63), Deleted{}, 15, []time.Time{at(60), at(120)}}, // idempotent
		// Everything: every segment ends before the cutoff.
		{at(1000), Deleted{Segments: 30, Bytes: 3000, From: at(62), To: at(182), Epochs: 2, EpochsFrom: at(60), EpochsTo: at(180)}, 45, nil},
		{at(1000), Deleted{}, 45, nil},
	}
	for i, st := range steps {
		d, err := s.DeleteBefore(cam, st.cutoff)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		st.want.Camera, st.want.Cutoff = cam, st.cutoff
		if d != st.want {
			t.Errorf("step %d: DeleteBefore(%v)\n got %+v\nwant %+v", i, st.cutoff.Sub(base), d, st.want)
		}
		segs, _ := s.Segments(cam, minTime, maxTime)
		if len(segs) != 45-st.firstLeft || (len(segs) > 0 && segIndex(segs[0]) != st.firstLeft) {
			t.Errorf("step %d: %d segments left, want %d from %d", i, len(segs), 45-st.firstLeft, st.firstLeft)
		}
		eps, _ := s.Epochs(cam, minTime, maxTime)
		var starts []time.Time
		for _, e := range eps {
			starts = append(starts, e.Start)
		}
		if !slices.EqualFunc(starts, st.epochsLeft, time.Time.Equal) {
			t.Errorf("step %d: epochs left %v, want %v", i, starts, st.epochsLeft)
		}
		checkConsistent(t, s)
	}
	if st, _ := s.Stats("other/cam"); st.Segments != 1 || st.Epochs != 1 {
		t.Errorf("other camera: %+v", st)
	}
	// Empty date directories went with their segments.
	if ents, _ := os.ReadDir(filepath.Join(dir, segmentsDir, "praha-1%2Fentrance")); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if cams, _ := s.Cameras(); !slices.Equal(cams, []string{"other/cam"}) {
		t.Errorf("Cameras after deleting all of %s: %v", cam, cams)
	}
}

// TestDeleteBeforeDamaged: retention also removes quarantined files.
func TestDeleteBeforeDamaged(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	m := putSeg(t, s, cam, 0, 100)
	esc, _ := escapeCamera(cam)
	path := filepath.Join(dir, segmentRel(esc, segName{m.Start, m.End, m.EpochStart, m.SHA256}))
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, Options{MinFree: -1})
	if r := s.Recovery(); len(r.Damaged) != 1 {
		t.Fatalf("recovery: %+v", r)
	}
	d, err := s.DeleteBefore(cam, m.End.Add(time.Second))
	if err != nil || d.Damaged != 1 || d.Segments != 0 || d.Epochs != 0 {
		t.Errorf("DeleteBefore: %+v, %v", d, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, damagedDir, esc)); len(ents) != 0 {
		t.Errorf("quarantine left: %v", ents)
	}
}
