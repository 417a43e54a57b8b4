package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// putOffset stores n segments of camera shifted 2 s off the epoch grid, so
// that segment 14 ([58 s, 62 s)) is in epoch 0 but ends in epoch 1, and
// returns their metas (size and hash filled in).
func putOffset(t *testing.T, s *Store, camera string, n int) []SegmentMeta {
	t.Helper()
	var out []SegmentMeta
	for i := range n {
		m := segAt(camera, i)
		m.Start, m.End = m.Start.Add(2*time.Second), m.End.Add(2*time.Second)
		m.EpochStart = epochOf(m.Start)
		if err := ensureEpoch(s, camera, m.EpochStart); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(m, payload(i, 100+i)); err != nil {
			t.Fatal(err)
		}
		m.Size, m.SHA256 = int64(100+i), sha(payload(i, 100+i))
		out = append(out, m)
	}
	return out
}

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

func starts[T any](xs []T, start func(T) time.Time) []time.Time {
	var out []time.Time
	for _, x := range xs {
		out = append(out, start(x))
	}
	return out
}

func segStart(m SegmentMeta) time.Time { return m.Start }
func epStart(m EpochMeta) time.Time    { return m.Start }

// TestDeleteRange: an erasure removes exactly the segments that overlap
// the range (the ones that straddle its ends whole), reports each with the
// hash it was stored under, removes the epoch records wholly inside the
// range, leaves everything else, and is idempotent.
func TestDeleteRange(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	segs := putOffset(t, s, cam, 45) // segment i is [2+4i, 6+4i) s; epochs [0,60) [60,120) [120,180)
	putSeg(t, s, "other/cam", 5, 100)

	// [20 s, 130 s): segment 4 (18–22) straddles from, segment 31
	// (126–130) ends at to; segment 32 (130–134) starts at to and stays.
	// Epoch 1 lies inside; epochs 0 and 2 straddle the ends and stay.
	er, err := s.DeleteRange(cam, at(20), at(130), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := segs[4:32]
	if !slices.Equal(er.Segments, want) {
		t.Errorf("erased segments %v\nwant %v", starts(er.Segments, segStart), starts(want, segStart))
	}
	if got := starts(er.Epochs, epStart); !slices.EqualFunc(got, []time.Time{at(60)}, time.Time.Equal) {
		t.Errorf("erased epochs %v, want the one at 60 s", got)
	}
	if len(er.Held) != 0 || er.Camera != cam || !er.From.Equal(at(20)) || !er.To.Equal(at(130)) {
		t.Errorf("erased: %+v", er)
	}
	left, _ := s.Segments(cam, minTime, maxTime)
	if wantLeft := slices.Concat(segs[:4], segs[32:]); !slices.Equal(left, wantLeft) {
		t.Errorf("left %v\nwant %v", starts(left, segStart), starts(wantLeft, segStart))
	}
	eps, _ := s.Epochs(cam, minTime, maxTime)
	if got := starts(eps, epStart); !slices.EqualFunc(got, []time.Time{at(0), at(120)}, time.Time.Equal) {
		t.Errorf("epochs left %v", got)
	}
	for _, m := range er.Segments {
		if _, err := s.ReadSegment(m); !isNotFound(err) {
			t.Errorf("erased segment %s reads: %v", formatTime(m.Start), err)
		}
	}
	checkConsistent(t, s)
	if st, _ := s.Stats("other/cam"); st.Segments != 1 || st.Epochs != 1 {
		t.Errorf("other camera: %+v", st)
	}

	// Again: nothing more.
	er, err = s.DeleteRange(cam, at(20), at(130), nil)
	if err != nil || len(er.Segments)+len(er.Epochs) != 0 {
		t.Errorf("second erasure: %+v, %v", er, err)
	}
	// A range between segments' starts and ends still takes the segment.
	er, err = s.DeleteRange(cam, at(3), at(4), nil)
	if err != nil || !slices.Equal(er.Segments, segs[0:1]) || len(er.Epochs) != 0 {
		t.Errorf("erasing [3 s, 4 s): %v, %v", starts(er.Segments, segStart), err)
	}
	checkConsistent(t, s)
}

// TestDeleteRangeHeld: held segments stay, and so does their epoch record.
func TestDeleteRangeHeld(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	segs := putOffset(t, s, cam, 45)
	held := func(m SegmentMeta) bool { return m.Start.Equal(segs[20].Start) }
	er, err := s.DeleteRange(cam, at(20), at(130), held)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Concat(segs[4:20], segs[21:32]); !slices.Equal(er.Segments, want) {
		t.Errorf("erased %v\nwant %v", starts(er.Segments, segStart), starts(want, segStart))
	}
	if !slices.Equal(er.Held, segs[20:21]) || len(er.Epochs) != 0 {
		t.Errorf("held %v, epochs erased %v; want segment 20 held and its epoch kept", starts(er.Held, segStart), starts(er.Epochs, epStart))
	}
	if _, err := s.ReadSegment(segs[20]); err != nil {
		t.Errorf("held segment: %v", err)
	}
	if _, err := s.Epoch(cam, at(60)); err != nil {
		t.Errorf("held segment's epoch: %v", err)
	}
	checkConsistent(t, s)
	// Once the hold is gone, erasing again takes the segment and the epoch.
	er, err = s.DeleteRange(cam, at(20), at(130), nil)
	if err != nil || !slices.Equal(er.Segments, segs[20:21]) || len(er.Epochs) != 1 {
		t.Errorf("after the hold: %v, %v epochs, %v", starts(er.Segments, segStart), len(er.Epochs), err)
	}
	checkConsistent(t, s)
}

// TestDeleteRangeBadInput: nothing is deleted for a bad range or camera.
func TestDeleteRangeBadInput(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	putOffset(t, s, cam, 20)
	for _, c := range []struct {
		camera   string
		from, to time.Time
		msg      string
	}{
		{cam, at(50), at(10), "reversed"},
		{cam, at(10), at(10), "empty"},
		{"../etc", at(0), at(100), `path element ".."`},
		{cam, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), at(10), "outside"},
	} {
		_, err := s.DeleteRange(c.camera, c.from, c.to, nil)
		if !errors.Is(err, ErrInvalid) || !contains(err, c.msg) {
			t.Errorf("DeleteRange(%q, %v, %v): %v; want ErrInvalid saying %q", c.camera, c.from, c.to, err, c.msg)
		}
		if err := s.AddTombstone(c.camera, c.from, c.to); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddTombstone(%q, %v, %v): %v; want ErrInvalid", c.camera, c.from, c.to, err)
		}
	}
	if st, _ := s.Stats(cam); st.Segments != 20 {
		t.Errorf("bad input deleted footage: %+v", st)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// TestTombstone: after an erasure, neither its segments nor its epoch
// records can be stored again, also after a restart; footage outside the
// range can.
func TestTombstone(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	segs := putOffset(t, s, cam, 45)
	if err := s.AddTombstone(cam, at(20), at(130)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTombstone(cam, at(20), at(130)); err != nil {
		t.Fatalf("the same tombstone again: %v", err)
	}
	// A tombstone alone deletes nothing; re-putting what is still stored
	// is refused all the same (a replica must not be told it is fine).
	if st, _ := s.Stats(cam); st.Segments != 45 {
		t.Errorf("tombstone deleted footage: %+v", st)
	}
	if left, err := s.UnderTombstones(cam); err != nil || !slices.Equal(left, segs[4:32]) {
		t.Errorf("UnderTombstones before the deletion: %v, %v", starts(left, segStart), err)
	}
	if err := s.Put(segs[10], payload(10, 110)); !errors.Is(err, ErrErased) {
		t.Errorf("Put again of a stored segment inside the tombstone: %v; want ErrErased", err)
	}
	if _, err := s.DeleteRange(cam, at(20), at(130), nil); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, i := range []int{4, 10, 20, 31} { // straddling from, inside (20: in the erased epoch), ending at to
			err := s.Put(segs[i], payload(i, 100+i))
			if !errors.Is(err, ErrErased) || !contains(err, "erased range") {
				t.Errorf("%s: Put of erased segment %d: %v; want ErrErased", when, i, err)
			}
		}
		if err := s.PutEpoch(cam, at(60), at(120), record(at(60))); !errors.Is(err, ErrErased) {
			t.Errorf("%s: PutEpoch of the erased epoch: %v; want ErrErased", when, err)
		}
		if got, _ := s.Segments(cam, at(20), at(130)); len(got) != 0 {
			t.Errorf("%s: %d segments in the erased range", when, len(got))
		}
		ts, err := s.Tombstones(cam)
		if err != nil || len(ts) != 1 || ts[0] != (Tombstone{cam, at(20), at(130)}) {
			t.Errorf("%s: Tombstones: %+v, %v", when, ts, err)
		}
		if ts, err := s.Tombstones("other/cam"); err != nil || len(ts) != 0 {
			t.Errorf("%s: other camera's tombstones: %+v, %v", when, ts, err)
		}
	}
	check("after the erasure")
	s.Close()
	s = openT(t, dir, Options{MinFree: -1})
	check("after reopening")

	// Outside the range writing goes on: a segment ending at from, one
	// starting at to, and new footage.
	before := SegmentMeta{Camera: cam, Start: at(18), End: at(20), EpochStart: at(0)}
	if err := s.Put(before, []byte("ends where the erased range starts")); err != nil {
		t.Errorf("Put of a segment ending at the erased range's start: %v", err)
	}
	if err := s.Put(segs[32], payload(32, 132)); err != nil {
		t.Errorf("Put again of the kept segment starting at the range's end: %v", err)
	}
	// An epoch only partly erased can be stored (segments outside need
	// it); one covered by two adjacent erasures cannot.
	if err := s.AddTombstone(cam, at(200), at(260)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEpoch(cam, at(240), at(300), record(at(240))); err != nil {
		t.Errorf("PutEpoch of a partly erased epoch: %v", err)
	}
	if err := s.AddTombstone(cam, at(260), at(400)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEpoch(cam, at(300), at(360), record(at(300))); !errors.Is(err, ErrErased) {
		t.Errorf("PutEpoch inside the second erasure: %v", err)
	}
	if err := s.PutEpoch(cam, at(1200), at(1260), record(at(1200))); err != nil {
		t.Errorf("PutEpoch after the erasures: %v", err)
	}
	// PutEpoch covered only by the union of two tombstones.
	s2 := openT(t, t.TempDir(), Options{MinFree: -1})
	for _, r := range [][2]int{{0, 30}, {30, 70}} {
		if err := s2.AddTombstone(cam, at(r[0]), at(r[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.PutEpoch(cam, at(0), at(60), record(at(0))); !errors.Is(err, ErrErased) {
		t.Errorf("PutEpoch covered by two adjacent tombstones: %v", err)
	}
	if err := s2.PutEpoch(cam, at(60), at(120), record(at(60))); err != nil {
		t.Errorf("PutEpoch partly covered: %v", err)
	}
}

// TestCrashMidErase stops DeleteRange at each deletion step, as kill -9
// would, and checks that Open leaves a consistent store with nothing
// outside the range touched and nothing erased back, and that running the
// erasure again finishes it.
func TestCrashMidErase(t *testing.T) {
	// Segments 0–24 of 4 s; the range [-1 s, 62 s) takes segments 0–15
	// (15 straddles to) and epoch 0; epoch 1 stays for segments 16–24.
	from, to := at(-1), at(62)
	for _, c := range []struct {
		point   string
		n       int
		dropped int
		epoch   bool // the crash came after the segments were unindexed
	}{
		{pointFileRemoved, 1, 1, false},
		{pointFileRemoved, 16, 16, false},
		{pointFilesRemoved, 1, 16, false},
		{pointFileRemoved, 17, 1, true}, // segments done, the epoch file removed
		{pointFilesRemoved, 2, 1, true},
	} {
		t.Run(fmt.Sprintf("%s#%d", c.point, c.n), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openT(t, dir, Options{MinFree: -1})
			var segs []SegmentMeta
			for i := range 25 {
				segs = append(segs, putSeg(t, s, cam, i, 200))
			}
			if err := s.AddTombstone(cam, from, to); err != nil {
				t.Fatal(err)
			}
			crashAt(s, c.point, c.n)
			if _, err := s.DeleteRange(cam, from, to, nil); !errors.Is(err, errCrash) {
				t.Fatalf("interrupted DeleteRange: %v", err)
			}
			s.Close()
			s = openT(t, dir, Options{MinFree: -1})
			r := s.Recovery()
			if len(r.Dropped) != c.dropped || len(r.Reindexed)+len(r.Damaged)+len(r.RemovedTemp)+len(r.NoEpoch) != 0 {
				t.Errorf("recovery: %+v; want %d dropped entries and nothing else", r, c.dropped)
			}
			checkConsistent(t, s)
			if got, _ := s.Segments(cam, segs[16].Start, maxTime); !slices.Equal(got, segs[16:]) {
				t.Errorf("outside the range after the crash: %v", starts(got, segStart))
			}
			if err := s.Put(segs[3], payload(3, 200)); !errors.Is(err, ErrErased) {
				t.Errorf("Put into the range after the crash: %v", err)
			}
			left, err := s.UnderTombstones(cam)
			if wantLeft := 16 - c.dropped; c.epoch {
				if err != nil || len(left) != 0 {
					t.Errorf("UnderTombstones after the segments went: %d, %v", len(left), err)
				}
			} else if err != nil || !slices.Equal(left, segs[c.dropped:16]) {
				t.Errorf("UnderTombstones after the crash: %v, %v; want the %d segments not yet deleted", starts(left, segStart), err, wantLeft)
			}
			er, err := s.DeleteRange(cam, from, to, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantSegs, wantEps := 16-c.dropped, 1
			if c.epoch {
				wantSegs, wantEps = 0, 0
			}
			if len(er.Segments) != wantSegs || len(er.Epochs) != wantEps {
				t.Errorf("resumed erasure removed %d segments and %d epochs; want %d and %d", len(er.Segments), len(er.Epochs), wantSegs, wantEps)
			}
			st, _ := s.Stats(cam)
			if st.Segments != 9 || st.Epochs != 1 || !st.Oldest.Equal(segs[16].Start) {
				t.Errorf("after the erasure completes: %+v; want segments 16–24 and one epoch", st)
			}
			if _, err := s.Epoch(cam, segs[0].EpochStart); !isNotFound(err) {
				t.Errorf("erased epoch record: %v", err)
			}
			if left, err := s.UnderTombstones(cam); err != nil || len(left) != 0 {
				t.Errorf("UnderTombstones after the erasure completes: %v, %v", starts(left, segStart), err)
			}
			checkConsistent(t, s)
		})
	}
}

// TestDeleteRangeDamaged: an erasure also removes quarantined copies of
// the range, and only those.
func TestDeleteRangeDamaged(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	var paths []string
	esc, _ := escapeCamera(cam)
	for i := range 3 {
		m := putSeg(t, s, cam, i*5, 100) // segments 0, 5, 10
		paths = append(paths, filepath.Join(dir, segmentRel(esc, segName{m.Start, m.End, m.EpochStart, m.SHA256})))
	}
	for _, p := range paths {
		if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openT(t, dir, Options{MinFree: -1})
	if r := s.Recovery(); len(r.Damaged) != 3 {
		t.Fatalf("recovery: %+v", r)
	}
	er, err := s.DeleteRange(cam, segAt(cam, 5).Start, segAt(cam, 6).Start, nil)
	if err != nil || er.Damaged != 1 || len(er.Segments) != 0 {
		t.Errorf("DeleteRange: %+v, %v", er, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, damagedDir, esc))
	if len(ents) != 2 {
		t.Errorf("quarantine holds %d files, want the 2 outside the range", len(ents))
	}
}

// TestDeleteBeforeExcept: retention keeps held segments, and the epoch
// records they use, and counts them.
func TestDeleteBeforeExcept(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	segs := putOffset(t, s, cam, 45)
	held := func(m SegmentMeta) bool { return m.Start.Equal(segs[20].Start) || m.Start.Equal(segs[21].Start) }
	d, err := s.DeleteBeforeExcept(cam, at(1000), held)
	if err != nil {
		t.Fatal(err)
	}
	if d.Segments != 43 || d.Held != 2 || d.Epochs != 2 || !d.EpochsFrom.Equal(at(0)) || !d.EpochsTo.Equal(at(180)) {
		t.Errorf("DeleteBeforeExcept: %+v; want 43 segments and epochs 0 and 2 deleted, 2 held", d)
	}
	left, _ := s.Segments(cam, minTime, maxTime)
	if !slices.Equal(left, segs[20:22]) {
		t.Errorf("left %v, want segments 20 and 21", starts(left, segStart))
	}
	eps, _ := s.Epochs(cam, minTime, maxTime)
	if got := starts(eps, epStart); !slices.EqualFunc(got, []time.Time{at(60)}, time.Time.Equal) {
		t.Errorf("epochs left %v, want the held segments' epoch", got)
	}
	checkConsistent(t, s)
	// The hold ends: plain retention deletes the rest.
	d, err = s.DeleteBefore(cam, at(1000))
	if err != nil || d.Segments != 2 || d.Epochs != 1 || d.Held != 0 {
		t.Errorf("after the hold: %+v, %v", d, err)
	}
}

// TestTombstoneRacesPut erases a range while a writer stores segments
// into it: whatever the interleaving, every Put in the range either
// happened before the tombstone (and DeleteRange removed it) or was
// refused with ErrErased, so nothing of the range is left.
func TestTombstoneRacesPut(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	from, to := segAt(cam, 20).Start, segAt(cam, 40).Start
	errs := make(chan error, 1)
	refused := 0
	go func() {
		for i := range 60 {
			m := segAt(cam, i)
			if err := ensureEpoch(s, cam, m.EpochStart); err != nil {
				errs <- err
				return
			}
			err := s.Put(m, payload(i, 100))
			switch {
			case errors.Is(err, ErrErased) && i >= 20 && i < 40:
				refused++
			case err != nil:
				errs <- fmt.Errorf("Put %d: %w", i, err)
				return
			}
		}
		errs <- nil
	}()
	if err := s.AddTombstone(cam, from, to); err != nil {
		t.Fatal(err)
	}
	er, err := s.DeleteRange(cam, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Segments(cam, from, to); len(got) != 0 {
		t.Errorf("%d segments in the erased range after the race", len(got))
	}
	if len(er.Segments)+refused != 20 {
		t.Errorf("%d segments erased and %d refused; want 20 in all", len(er.Segments), refused)
	}
	if st, _ := s.Stats(cam); st.Segments != 40 {
		t.Errorf("%d segments stored outside the range, want 40", st.Segments)
	}
	checkConsistent(t, s)
}
