package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestCrashPoints stops a write or a deletion at each step, as kill -9
// would (no cleanup), and checks what Open repairs.
func TestCrashPoints(t *testing.T) {
	cases := []struct {
		point     string
		epoch     bool // crash while storing the epoch record of segment 15
		stored    bool // the interrupted write is there after Open
		temp      int  // temporary files Open removes
		reindexed int
	}{
		{point: pointTempWritten, temp: 1},
		{point: pointRenamed, stored: true, reindexed: 1},
		{point: pointBeforeIndex, stored: true, reindexed: 1},
		{point: pointTempWritten, epoch: true, temp: 1},
		{point: pointRenamed, epoch: true, stored: true, reindexed: 1},
		{point: pointBeforeIndex, epoch: true, stored: true, reindexed: 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/epoch=%v", c.point, c.epoch), func(t *testing.T) {
			t.Parallel() // fsync-bound: overlap the waits
			dir := t.TempDir()
			s := openT(t, dir, Options{MinFree: -1})
			for i := range 15 {
				putSeg(t, s, cam, i, 300)
			}
			m := segAt(cam, 15) // first of the second epoch
			var err error
			if c.epoch {
				crashAt(s, c.point, 1)
				err = s.PutEpoch(cam, m.EpochStart, m.EpochStart.Add(epochLen), record(m.EpochStart))
			} else {
				if err := s.PutEpoch(cam, m.EpochStart, m.EpochStart.Add(epochLen), record(m.EpochStart)); err != nil {
					t.Fatal(err)
				}
				crashAt(s, c.point, 1)
				err = s.Put(m, payload(15, 300))
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("interrupted write: %v", err)
			}
			s.Close()

			s = openT(t, dir, Options{MinFree: -1})
			r := s.Recovery()
			if len(r.RemovedTemp) != c.temp || len(r.Reindexed) != c.reindexed || len(r.Dropped)+len(r.Damaged)+len(r.Unknown)+len(r.NoEpoch) != 0 {
				t.Errorf("recovery: %+v; want %d temp, %d reindexed", r, c.temp, c.reindexed)
			}
			if tmp := tempFiles(t, dir); len(tmp) != 0 {
				t.Errorf("temporary files after Open: %v", tmp)
			}
			checkConsistent(t, s)
			var found bool
			if c.epoch {
				_, err := s.Epoch(cam, m.EpochStart)
				found = err == nil
			} else {
				got, _ := s.Segments(cam, m.Start, m.End)
				found = len(got) == 1
			}
			if found != c.stored {
				t.Errorf("interrupted write stored after Open: %v, want %v", found, c.stored)
			}
			// Writing resumes, the interrupted write included.
			for i := 15; i < 20; i++ {
				putSeg(t, s, cam, i, 300)
			}
			checkConsistent(t, s)
			if st, _ := s.Stats(cam); st.Segments != 20 {
				t.Errorf("after resuming: %d segments, want 20", st.Segments)
			}
		})
	}
}

// TestCrashMidRetention stops DeleteBefore after its first file, and after
// all files of a kind, and checks that Open drops the dangling entries,
// that deleted footage never comes back, and that retention completes.
func TestCrashMidRetention(t *testing.T) {
	for _, c := range []struct {
		point   string
		n       int
		dropped int // index entries Open drops
	}{
		{pointFileRemoved, 1, 1},   // one segment file gone
		{pointFileRemoved, 20, 20}, // all 20 segment files gone
		{pointFilesRemoved, 1, 20}, // segment files gone and synced, index untouched
		{pointFileRemoved, 21, 1},  // segments done, the epoch file gone
		{pointFilesRemoved, 2, 1},  // epoch file gone and synced, index untouched
	} {
		t.Run(fmt.Sprintf("%s#%d", c.point, c.n), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openT(t, dir, Options{MinFree: -1})
			for i := range 25 {
				putSeg(t, s, cam, i, 200)
			}
			// Segments 0–19 end before cutoff, and epoch 0 (epoch 1 is still used).
			cutoff := segAt(cam, 20).Start.Add(time.Millisecond)
			crashAt(s, c.point, c.n)
			if _, err := s.DeleteBefore(cam, cutoff); !errors.Is(err, errCrash) {
				t.Fatalf("interrupted DeleteBefore: %v", err)
			}
			s.Close()
			s = openT(t, dir, Options{MinFree: -1})
			r := s.Recovery()
			if len(r.Dropped) != c.dropped || len(r.Reindexed)+len(r.Damaged)+len(r.RemovedTemp)+len(r.NoEpoch) != 0 {
				t.Errorf("recovery: %+v; want %d dropped entries and nothing else", r, c.dropped)
			}
			checkConsistent(t, s)
			got, _ := s.Segments(cam, minTime, maxTime)
			// Whatever is left is a suffix: no holes.
			for k, m := range got {
				if segIndex(m) != 25-len(got)+k {
					t.Fatalf("after crash: segment %d at position %d of %d", segIndex(m), k, len(got))
				}
			}
			d, err := s.DeleteBefore(cam, cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if d.Segments+len(r.Dropped) < 1 {
				t.Errorf("nothing deleted and nothing dropped: %+v", d)
			}
			st, _ := s.Stats(cam)
			if st.Segments != 5 || st.Epochs != 1 || !st.Oldest.Equal(segAt(cam, 20).Start) {
				t.Errorf("after retention completes: %+v; want 5 segments from %v and 1 epoch", st, cutoff)
			}
			checkConsistent(t, s)
		})
	}
}

// TestCrashKill9 runs a child process (this test binary again) that
// writes segments, and now and then runs retention, in a loop, and kills
// it with SIGKILL at random moments. After every kill, Open must repair
// everything: no temporary file, index and files agree, every segment the
// child acknowledged is there, the stored segments are one run without
// holes, and writing resumes.
func TestCrashKill9(t *testing.T) {
	if os.Getenv("STORE_CRASH_CHILD") == "1" {
		crashChild(os.Getenv("STORE_CRASH_DIR"))
		return
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var total Recovery
	const iterations = 12
	for it := range iterations {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), "STORE_CRASH_CHILD=1", "STORE_CRASH_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acknowledged segments, plus a
		// random delay of up to 3 ms: that moment lands anywhere inside
		// the next Put or DeleteBefore (this is not a wait for anything).
		acked, want := -1, 1+rng.IntN(8)
		sc := bufio.NewScanner(out)
		for n := 0; n < want && sc.Scan(); n++ {
			acked, _ = strconv.Atoi(sc.Text())
		}
		<-time.After(time.Duration(rng.IntN(3000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // lines written before the kill are acknowledged too
			acked, _ = strconv.Atoi(sc.Text())
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("iteration %d: child was not killed: %v", it, err)
		}
		if acked < 0 {
			t.Fatalf("iteration %d: child acknowledged nothing", it)
		}

		s, err := Open(dir, Options{MinFree: -1})
		if err != nil {
			t.Fatalf("iteration %d: Open after kill: %v", it, err)
		}
		r := s.Recovery()
		t.Logf("iteration %d: acked %d; %v", it, acked, r)
		if len(r.Damaged)+len(r.Unknown)+len(r.NoEpoch) != 0 {
			t.Errorf("iteration %d: recovery %+v", it, r)
		}
		total.RemovedTemp = append(total.RemovedTemp, r.RemovedTemp...)
		total.Reindexed = append(total.Reindexed, r.Reindexed...)
		total.Dropped = append(total.Dropped, r.Dropped...)
		checkConsistent(t, s)
		got, err := s.Segments(cam, minTime, maxTime)
		if err != nil || len(got) == 0 {
			t.Fatalf("iteration %d: %d segments, %v", it, len(got), err)
		}
		lo, hi := segIndex(got[0]), segIndex(got[len(got)-1])
		if hi-lo+1 != len(got) {
			t.Errorf("iteration %d: segments %d…%d has holes (%d stored)", it, lo, hi, len(got))
		}
		if hi < acked || hi > acked+1 {
			t.Errorf("iteration %d: newest segment %d; the child acknowledged %d", it, hi, acked)
		}
		// Writing resumes: the parent writes the next one itself.
		putSeg(t, s, cam, hi+1, 1000)
		s.Close()
	}
	t.Logf("over %d kills: %d temporary files removed, %d files re-indexed, %d entries dropped",
		iterations, len(total.RemovedTemp), len(total.Reindexed), len(total.Dropped))
}

// crashChild writes segments of cam after the newest stored one, forever,
// printing each index once Put returned; every 16 segments it deletes all
// but the newest 24.
func crashChild(dir string) {
	s, err := Open(dir, Options{MinFree: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	next := 0
	if got, _ := s.Segments(cam, minTime, maxTime); len(got) > 0 {
		next = segIndex(got[len(got)-1]) + 1
	}
	w := bufio.NewWriter(os.Stdout)
	for i := next; i < next+100000; i++ {
		m := segAt(cam, i)
		if err := ensureEpoch(s, cam, m.EpochStart); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		if err := s.Put(m, payload(i, 2000+i%7*10000)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		fmt.Fprintln(w, i)
		w.Flush()
		if i%16 == 0 && i > 24 {
			if _, err := s.DeleteBefore(cam, segAt(cam, i-24).Start); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(2)
			}
		}
	}
	os.Exit(3) // never reached within the test's kills
}
