package media

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// kill9ChildEnv, when set, makes TestRecorderKill9 the child: it records
// into the directory the variable names until it is killed.
const kill9ChildEnv = "MEDIA_KILL9_CHILD_DIR"

// kill9Source is the child's camera: the clip paced in real time at four
// times its bitrate (about 4 Mbit/s, a typical IP camera), so that a
// segment is about 2 MB and its write takes long enough to be hit.
const kill9Source = "synthetic:?scale=4"

// kill9Reused is what the writer logs when a restart reuses the epoch
// record the store already holds (recorder_write.go, loadEpoch).
const kill9Reused = "using the stored epoch record"

// TestRecorderKill9 runs a real Recorder in a child process (this test
// binary again) on a paced synthetic camera with 1 s segments, and kills
// it with SIGKILL at random moments: each time 0.3–2 s after the child
// stored a segment, so the kill lands anywhere in cutting, encrypting or
// storing one. The child gets only the custodians' public keys (files the
// parent writes); the parent keeps the private ones. After every kill:
//
//   - store.Open repairs what the kill left (only temporary files removed
//     or complete files re-indexed; nothing damaged, unknown, dropped or
//     without its epoch record), and no temporary file is left;
//   - index and files agree: every .seg and .epoch file is indexed, and
//     every indexed segment reads back with its hash checked;
//   - nothing stored before is lost, segments never overlap, and each
//     epoch's record never changes once stored;
//   - every stored segment decrypts with dc-a's and dc-b's shares, and
//     each decrypted segment alone is one whole GOP that ffprobe decodes
//     without an error;
//   - the next child resumes into the same store: the segment count grows
//     every run, and a restart inside an epoch whose record is stored
//     reuses that record (it logs so, and never makes a second one: that
//     would conflict in the store and lose footage, which the child would
//     log as an error);
//   - the custody chain survives every kill: each stored record and
//     segment verifies under the store's node key (a file the parent
//     writes) and the segments form one chain, sequence 0, 1, 2… with no
//     gap, each run continuing where the last stored segment left off.
func TestRecorderKill9(t *testing.T) {
	if dir := os.Getenv(kill9ChildEnv); dir != "" {
		kill9Child(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts child processes and records in real time")
	}
	t.Parallel() // waits on real time; overlaps the GStreamer test
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	a, b, r := testKeys(t)
	for _, k := range []*keys.CustodianKey{a, b, r} {
		if err := os.WriteFile(filepath.Join(dir, k.Name()+".pub"), k.Custodian().ArmoredPublicKey(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nodeKey, _, err := keys.LoadOrCreateNodeKey(filepath.Join(dir, kill9NodeKey))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.NewCustodySigner(testStore, &nodeKey)
	nodeKey.Zero()
	if err != nil {
		t.Fatal(err)
	}
	defer signer.Zero()
	haveFFprobe := true
	if _, err := exec.LookPath("ffprobe"); err != nil {
		haveFFprobe = false
		t.Log("ffprobe not installed: each segment is only checked to hold a whole GOP of TS frames")
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	const iterations = 8
	var (
		prev      []store.SegmentMeta                   // segments after the last kill
		epochFP   = map[time.Time]keys.KeyFingerprint{} // epoch start → its record's fingerprint
		checked   = map[time.Time]bool{}                // segments already decrypted and probed
		reuses    int
		total     store.Recovery
		startTime = time.Now()
	)
	for it := range iterations {
		before := countFiles(storeDir, ".seg")
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecorderKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), kill9ChildEnv+"="+dir)
		var stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		// The child has stored a segment of its own once a new .seg file
		// is in place (its index entry may still be on the way).
		deadline := time.Now().Add(15 * time.Second)
		for countFiles(storeDir, ".seg") <= before {
			select {
			case err := <-exited:
				t.Fatalf("iteration %d: child exited before storing a segment: %v\n%s", it, err, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				t.Fatalf("iteration %d: child stored no segment within 15 s\n%s", it, stderr.String())
			}
		}
		// The kill moment: random, not a wait for anything. Every other
		// run is killed while a write is in flight: once a temporary file
		// shows up after the delay, plus up to 3 ms (it lands before,
		// during or after the fsync, rename or index commit).
		delay := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1700*time.Millisecond)))
		select {
		case err := <-exited:
			t.Fatalf("iteration %d: child exited on its own: %v\n%s", it, err, stderr.String())
		case <-time.After(delay):
		}
		midWrite := it%2 == 1
		if midWrite {
			deadline := time.Now().Add(5 * time.Second)
			for countFiles(storeDir, ".tmp") == 0 && time.Now().Before(deadline) {
				time.Sleep(200 * time.Microsecond)
			}
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("iteration %d: kill: %v", it, err)
		}
		err := <-exited
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: child was not killed by SIGKILL: %v\n%s", it, err, stderr.String())
		}
		log := stderr.String()
		if strings.Contains(log, "level=ERROR") || strings.Contains(log, "level=WARN") {
			t.Errorf("iteration %d: the child logged a problem:\n%s", it, log)
		}

		st, err := store.Open(storeDir, store.Options{})
		if err != nil {
			t.Fatalf("iteration %d: store.Open after kill -9: %v", it, err)
		}
		rec := st.Recovery()
		t.Logf("iteration %d: killed %v after a stored segment (mid-write: %v); recovery: %v", it, delay.Round(time.Millisecond), midWrite, rec)
		if len(rec.Damaged)+len(rec.Unknown)+len(rec.NoEpoch)+len(rec.Dropped) != 0 {
			t.Errorf("iteration %d: recovery after kill -9: %+v; want at most removed temporary files and re-indexed ones", it, rec)
		}
		total.RemovedTemp = append(total.RemovedTemp, rec.RemovedTemp...)
		total.Reindexed = append(total.Reindexed, rec.Reindexed...)

		segs := checkIndexMatchesFiles(t, st, it)
		if len(segs) <= len(prev) {
			t.Errorf("iteration %d: %d segments stored, %d before this run: the child did not resume recording", it, len(segs), len(prev))
		}
		have := map[time.Time]bool{}
		for i, m := range segs {
			have[m.Start] = true
			if i > 0 && m.Start.Before(segs[i-1].End) {
				t.Errorf("iteration %d: segment %s starts before the previous one ends (%s)", it, stamp(m.Start), stamp(segs[i-1].End))
			}
		}
		for _, m := range prev {
			if !have[m.Start] {
				t.Errorf("iteration %d: segment %s, stored before, is gone", it, stamp(m.Start))
			}
		}

		// The run's first segment: was its epoch's record already stored
		// by an earlier run? Then this run must have reused it.
		var first *store.SegmentMeta
		for i := range segs {
			if !checked[segs[i].Start] {
				first = &segs[i]
				break
			}
		}
		if first != nil {
			_, stored := epochFP[first.EpochStart]
			reused := strings.Contains(log, kill9Reused)
			if stored != reused {
				t.Errorf("iteration %d: the run's first segment is in epoch %s, stored before: %v; the child reused a stored record: %v",
					it, stamp(first.EpochStart), stored, reused)
			}
			if reused {
				reuses++
			}
		}
		eps, err := st.Epochs(testCamera, allFrom, allTo)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			fp := storedRecord(t, st, e.Start).Fingerprint
			if old, ok := epochFP[e.Start]; ok && old != fp {
				t.Errorf("iteration %d: epoch %s's record changed from %s to %s", it, stamp(e.Start), old, fp)
			}
			epochFP[e.Start] = fp
		}

		checkCustody(t, st, signer)

		// Every stored segment decrypts with two custodians' shares; each
		// new one alone decodes.
		dec := decryptAll(t, st, a, b)
		if len(dec) != len(segs) {
			t.Fatalf("iteration %d: %d segments decrypt, %d stored", it, len(dec), len(segs))
		}
		for _, d := range dec {
			if n := tsFrames(t, d.plain); n != clip.GOP {
				t.Errorf("iteration %d: segment %s holds %d frames, want one whole GOP of %d", it, stamp(d.meta.Start), n, clip.GOP)
			}
			if !checked[d.meta.Start] {
				if haveFFprobe {
					ffprobeFrames(t, d.plain, clip.GOP)
				}
				checked[d.meta.Start] = true
			}
			clear(d.plain)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		prev = segs
	}
	if reuses == 0 {
		t.Errorf("no restart reused a stored epoch record over %d runs; the test did not exercise the restart path", iterations)
	}
	t.Logf("%d kills in %v: %d segments stored, %d epoch records, %d restarts reused a stored epoch record; %d temporary files removed, %d files re-indexed",
		iterations, time.Since(startTime).Round(time.Millisecond), len(prev), len(epochFP), reuses, len(total.RemovedTemp), len(total.Reindexed))
}

// checkIndexMatchesFiles checks that no temporary file is left, that the
// index holds exactly the .seg and .epoch files on disk, and that every
// indexed segment and record reads back with its hash checked. It returns
// the indexed segments.
func checkIndexMatchesFiles(t *testing.T, st *store.Store, it int) []store.SegmentMeta {
	t.Helper()
	files := map[string]int{}
	err := filepath.WalkDir(st.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		switch {
		case d.IsDir():
		case strings.HasSuffix(name, ".tmp"):
			t.Errorf("iteration %d: temporary file left after Open: %s", it, path)
		case strings.HasSuffix(name, ".seg"), strings.HasSuffix(name, ".epoch"):
			files[filepath.Ext(name)]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	segs, err := st.Segments(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := st.Epochs(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	if files[".seg"] != len(segs) || files[".epoch"] != len(eps) {
		t.Errorf("iteration %d: %d .seg and %d .epoch files on disk; the index holds %d segments and %d epoch records",
			it, files[".seg"], files[".epoch"], len(segs), len(eps))
	}
	for _, m := range segs {
		if _, err := st.ReadSegment(m); err != nil {
			t.Errorf("iteration %d: indexed segment %s: %v", it, stamp(m.Start), err)
		}
	}
	for _, e := range eps {
		if _, err := st.Epoch(testCamera, e.Start); err != nil {
			t.Errorf("iteration %d: indexed epoch record %s: %v", it, stamp(e.Start), err)
		}
	}
	return segs
}

// countFiles counts the files under dir whose names end in suffix; a
// directory that does not exist yet holds none. It runs while the child
// writes, so it ignores files that vanish under it.
func countFiles(dir, suffix string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), suffix) {
			n++
		}
		return nil
	})
	return n
}

// kill9NodeKey is the store's node key file in the test's directory.
const kill9NodeKey = "node.key"

// kill9Child records testCamera into DIR/store until it is killed. It
// has the custodians' public keys only, and the store's node key.
func kill9Child(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "kill9 child:", err)
		os.Exit(2)
	}
	var cs []keys.Custodian
	for _, name := range []string{"dc-a", "dc-b", "recovery"} {
		pub, err := os.ReadFile(filepath.Join(dir, name+".pub"))
		if err != nil {
			fail(err)
		}
		c, err := keys.NewCustodian(name, pub)
		if err != nil {
			fail(err)
		}
		cs = append(cs, c)
	}
	nodeKey, err := keys.LoadNodeKey(filepath.Join(dir, kill9NodeKey))
	if err != nil {
		fail(err)
	}
	signer, err := keys.NewCustodySigner(testStore, &nodeKey)
	nodeKey.Zero()
	if err != nil {
		fail(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		fail(err)
	}
	src, err := source.Open(kill9Source, source.Options{})
	if err != nil {
		fail(err)
	}
	rec, err := NewRecorder(RecorderConfig{
		Camera:     testCamera,
		Source:     src,
		Store:      st,
		Custodians: cs,
		Signer:     signer,
		Segment:    ts.Config{Target: time.Second}, // one GOP per segment
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		fail(err)
	}
	fail(fmt.Errorf("Run returned: %w", rec.Run(context.Background())))
}

// lockedBuffer is a bytes.Buffer that a child's output can be copied
// into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
