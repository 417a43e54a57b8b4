package media

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/store"
)

// checkCustody checks what the store holds for the camera against the
// chain of custody of s's store: every epoch record and segment is sealed
// by it and verifies under its key, each link agrees with the store's
// index (camera, epoch, span) and names its epoch record's hash, and the
// links run 0, 1, 2… each naming the one before. It returns the links in
// time order.
func checkCustody(t testing.TB, st *store.Store, s *keys.CustodySigner) []keys.SegmentLink {
	t.Helper()
	eps, err := st.Epochs(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[time.Time][32]byte{}
	for _, e := range eps {
		se := storedSealedEpoch(t, st, e.Start)
		if err := se.Verify(s.Public()); err != nil || se.Store != s.Name() {
			t.Errorf("epoch record %s: sealed by %q: %v; want %q's valid seal", stamp(e.Start), se.Store, err, s.Name())
		}
		if se.Record.Camera != testCamera || !se.Record.Start.Equal(e.Start) || !se.Record.End.Equal(e.End) {
			t.Errorf("epoch record %s names %s %s–%s", stamp(e.Start), se.Record.Camera, stamp(se.Record.Start), stamp(se.Record.End))
		}
		hashes[e.Start] = se.RecordHash
	}
	metas, err := st.Segments(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	var links []keys.SegmentLink
	for _, m := range metas {
		links = append(links, checkSealedSegment(t, st, s, m, hashes[m.EpochStart]))
	}
	checkChain(t, links)
	return links
}

// checkSealedSegment checks that the stored segment m is sealed by s,
// agrees with the index and names the epoch record with hash epochHash;
// it returns the link.
func checkSealedSegment(t testing.TB, st *store.Store, s *keys.CustodySigner, m store.SegmentMeta, epochHash [32]byte) keys.SegmentLink {
	t.Helper()
	g := storedSealedSegment(t, st, m)
	l := g.Link
	if err := g.Verify(s.Public()); err != nil || l.Store != s.Name() {
		t.Errorf("segment %s: sealed by %q: %v; want %q's valid seal", stamp(m.Start), l.Store, err, s.Name())
	}
	if l.Camera != testCamera || !l.Start.Equal(m.Start) || !l.End.Equal(m.End) || !l.EpochStart.Equal(m.EpochStart) {
		t.Errorf("segment %s–%s of epoch %s: link says %s %s–%s of epoch %s",
			stamp(m.Start), stamp(m.End), stamp(m.EpochStart), l.Camera, stamp(l.Start), stamp(l.End), stamp(l.EpochStart))
	}
	if l.EpochHash != epochHash || epochHash == ([32]byte{}) {
		t.Errorf("segment %s: link names epoch record %x, the stored one hashes to %x", stamp(m.Start), l.EpochHash, epochHash)
	}
	return l
}

// checkChain checks that links run 0, 1, 2… and that each names the hash
// of the one before (zero for the first).
func checkChain(t testing.TB, links []keys.SegmentLink) {
	t.Helper()
	var prev [32]byte
	for i, l := range links {
		if l.Seq != uint64(i) || l.Prev != prev {
			t.Errorf("link %d (%s): seq %d, prev %x; want seq %d, prev %x", i, stamp(l.Start), l.Seq, l.Prev[:4], i, prev[:4])
		}
		prev = l.Hash()
	}
}

// TestCustodySealsEverything: a recording across several epochs stores
// every epoch record and segment sealed by the store; the segments form
// one chain naming their epoch records, with the store's spans, and
// another node's key verifies none of it.
func TestCustodySealsEverything(t *testing.T) {
	const length = 2 * time.Second
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, rigOpts{base: base, config: func(c *RecorderConfig) { c.EpochLength = length }})
	r.record(clip.Frames)

	links := checkCustody(t, r.st, testSigner(t))
	if len(links) != clip.Frames/clip.GOP {
		t.Fatalf("%d links, want %d", len(links), clip.Frames/clip.GOP)
	}
	epochs := map[[32]byte]bool{}
	for _, l := range links {
		epochs[l.EpochHash] = true
	}
	if len(epochs) != 5 {
		t.Errorf("links name %d epoch records, want 5", len(epochs))
	}
	if got := len(decryptDC(t, r.st)); got != len(links) {
		t.Errorf("%d segments decrypt, want %d", got, len(links))
	}

	other := newSigner(t, testStore)
	metas, err := r.st.Segments(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	if storedSealedSegment(t, r.st, metas[0]).Verify(other.Public()) == nil {
		t.Error("a segment verifies under another node's key")
	}
	if storedSealedEpoch(t, r.st, metas[0].EpochStart).Verify(other.Public()) == nil {
		t.Error("an epoch record verifies under another node's key")
	}
}

// TestCustodyChainContinuesAfterRestart: a recorder restarted on the same
// store continues the camera's chain where the last stored segment left
// it, so a restart leaves no gap.
func TestCustodyChainContinuesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first := newRig(t, rigOpts{storeDir: dir, base: base})
	first.record(2*clip.GOP + 1)
	before := checkCustody(t, first.st, testSigner(t))
	first.st.Close()

	second := newRig(t, rigOpts{storeDir: dir, base: base.Add(10 * time.Second)})
	second.record(clip.GOP + 1)
	links := checkCustody(t, second.st, testSigner(t))
	if len(before) != 3 || len(links) != 5 {
		t.Fatalf("%d links after the first run, %d after the second; want 3 and 5", len(before), len(links))
	}
	if l := links[3]; l.Seq != 3 || l.Prev != before[2].Hash() {
		t.Errorf("the restarted recorder's first link: seq %d, prev %x; want 3 after the first run's last link", l.Seq, l.Prev[:4])
	}
	if n := second.events.count(EventChainRestart); n != 0 {
		t.Errorf("%d chain-restart events after a clean restart", n)
	}
}

// TestCustodyLostSegmentTakesNoSequence: a segment the store refuses (a
// full disk, here simulated) takes no sequence number, so the chain of
// what was stored has no gap: a gap always means footage removed later.
func TestCustodyLostSegmentTakesNoSequence(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, rigOpts{base: base})
	var calls atomic.Int32
	r.rec.hookBeforePut = func(store.SegmentMeta) error {
		if calls.Add(1) == 2 {
			return fmt.Errorf("test: %w", store.ErrDiskFull)
		}
		return nil
	}
	r.record(4*clip.GOP + 1) // segments at frames 0, 25, 50, 75 and 100
	if st := r.rec.Stats(); st.SegmentsLost != 1 || st.SegmentsWritten != 4 {
		t.Fatalf("Stats: %d segments written, %d lost; want 4 and 1", st.SegmentsWritten, st.SegmentsLost)
	}
	links := checkCustody(t, r.st, testSigner(t))
	if len(links) != 4 {
		t.Fatalf("%d links, want 4", len(links))
	}
	if want := base.Add(2 * clip.GOP * frameInterval); !links[1].Start.Equal(want) {
		t.Errorf("link 1 starts at %s, want the segment after the lost one, %s", stamp(links[1].Start), stamp(want))
	}
}

// TestCustodyRefusesPlantedEpoch: an epoch record planted on the store's
// disk ahead of an epoch, of a key whose shares the intruder holds, is
// never recorded under, whether unsealed, sealed by another store or
// sealed under this store's name with another key. That epoch's segments
// are lost, loudly, with the reason; the segments around it are stored
// under the store's own records and the chain goes on; nothing stored
// opens with the intruder's keys.
func TestCustodyRefusesPlantedEpoch(t *testing.T) {
	const length = 2 * time.Second
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	planted := base.Add(length) // the epoch of segments 2 and 3
	var intruder [2]*keys.CustodianKey
	for i, name := range []string{"intruder-a", "intruder-b"} {
		k, err := keys.NewCustodianKey(name)
		if err != nil {
			t.Fatal(err)
		}
		intruder[i] = k
	}
	rec, err := keys.NewEpochKey(testCamera, planted, length, []keys.Custodian{intruder[0].Custodian(), intruder[1].Custodian()})
	if err != nil {
		t.Fatal(err)
	}
	sealedBy := func(s *keys.CustodySigner) []byte {
		b, err := keys.SealEpochRecord(s, rec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unsealed, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const refusal = "on this store's disk was not sealed by this store; refusing to record under it"
	for _, tc := range []struct {
		name   string
		record []byte
		why    string
	}{
		{"unsealed", unsealed, "not a sealed epoch record"},
		{"another store's", sealedBy(newSigner(t, "intruder")), `sealed by store "intruder"`},
		{"this store's name, another key", sealedBy(newSigner(t, testStore)), "not signed by store " + testStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{base: base, config: func(c *RecorderConfig) { c.EpochLength = length }})
			if err := r.st.PutEpoch(testCamera, rec.Start, rec.End, tc.record); err != nil {
				t.Fatal(err)
			}
			r.record(4*clip.GOP + 1) // segments at 0, 1, 2, 3 and 4 s

			st := r.rec.Stats()
			if st.SegmentsLost != 2 || st.SegmentsWritten != 3 {
				t.Errorf("Stats: %d segments written, %d lost; want 3 and 2 (the planted epoch's)", st.SegmentsWritten, st.SegmentsLost)
			}
			if !strings.Contains(st.LastError, refusal) || !strings.Contains(st.LastError, tc.why) {
				t.Errorf("last error %q, want it to say %q and %q", st.LastError, refusal, tc.why)
			}
			r.events.mu.Lock()
			var lost []string
			for _, ev := range r.events.list {
				if ev.Kind == EventSegmentLost {
					lost = append(lost, ev.Detail)
				}
			}
			r.events.mu.Unlock()
			if len(lost) != 2 || !strings.Contains(lost[0], refusal) || !strings.Contains(lost[0], stamp(planted)) {
				t.Errorf("segment-lost events %q, want 2 naming the refused record %s", lost, stamp(planted))
			}

			b, err := r.st.Epoch(testCamera, planted)
			if err != nil || !bytes.Equal(b, tc.record) {
				t.Errorf("the planted record changed in the store (%v)", err)
			}
			metas, err := r.st.Segments(testCamera, allFrom, allTo)
			if err != nil {
				t.Fatal(err)
			}
			var links []keys.SegmentLink
			for _, m := range metas {
				if m.EpochStart.Equal(planted) {
					t.Errorf("segment %s stored under the planted epoch record", stamp(m.Start))
					continue
				}
				links = append(links, checkSealedSegment(t, r.st, testSigner(t), m, storedSealedEpoch(t, r.st, m.EpochStart).RecordHash))
				ct := storedCiphertext(t, r.st, m)
				if _, err := keys.DecryptSegmentAsCustodians(rec, ct, intruder[0], intruder[1]); err == nil {
					t.Errorf("segment %s opens with the intruder's keys", stamp(m.Start))
				}
			}
			checkChain(t, links)
			if len(links) != 3 || !links[2].Start.Equal(base.Add(2*length)) {
				t.Errorf("%d segments stored, want 3: two before the planted epoch, one after", len(links))
			}
			if got := len(decryptDC(t, r.st)); got != 3 {
				t.Errorf("%d segments decrypt with dc-a and dc-b, want 3", got)
			}
		})
	}
}

// TestCustodyChainRestartsOnBadNewest: when the camera's newest stored
// segment is not this store's valid link (sealed with another key or name,
// or damaged on disk), a restarted recorder cannot continue the chain: it
// starts a new one at 0, says so, and records on.
func TestCustodyChainRestartsOnBadNewest(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	renamed, err := testSigner(t).Named("store-2") // shares the key: never zeroed here
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer *keys.CustodySigner // of the second run
		damage bool                // damage the newest segment's file
		why    string
	}{
		// Another key or name also refuses the first run's epoch record,
		// so those second runs record in a later epoch.
		{"another key", newSigner(t, testStore), false, "not signed by store " + testStore},
		{"another name", renamed, false, `sealed by store "store-1", not by this store ("store-2")`},
		{"damaged", testSigner(t), true, "does not match its sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := newRig(t, rigOpts{storeDir: dir, base: base})
			first.record(2*clip.GOP + 1)
			first.st.Close()
			if tc.damage {
				damageNewestSegment(t, dir)
			}

			again := base.Add(10 * time.Second)
			if tc.signer != testSigner(t) {
				again = base.Add(time.Hour)
			}
			second := newRig(t, rigOpts{storeDir: dir, base: again, signer: tc.signer})
			second.record(clip.GOP + 1)

			if st := second.rec.Stats(); st.SegmentsLost != 0 || st.SegmentsWritten != 2 {
				t.Errorf("Stats: %d segments written, %d lost; want 2 and none", st.SegmentsWritten, st.SegmentsLost)
			}
			var details []string
			second.events.mu.Lock()
			for _, ev := range second.events.list {
				if ev.Kind == EventChainRestart {
					details = append(details, ev.Detail)
				}
			}
			second.events.mu.Unlock()
			if len(details) != 1 || !strings.Contains(details[0], "starting a new chain at sequence 0") || !strings.Contains(details[0], tc.why) {
				t.Errorf("chain-restart events %q, want one saying %q", details, tc.why)
			}

			metas, err := second.st.Segments(testCamera, again, allTo)
			if err != nil {
				t.Fatal(err)
			}
			var links []keys.SegmentLink
			for _, m := range metas {
				links = append(links, checkSealedSegment(t, second.st, tc.signer, m, storedSealedEpoch(t, second.st, m.EpochStart).RecordHash))
			}
			if len(links) != 2 {
				t.Fatalf("%d segments stored by the second run, want 2", len(links))
			}
			checkChain(t, links) // a new chain: 0, 1, the first with no previous link
		})
	}
}

// damageNewestSegment flips a byte of the newest segment file in the
// store at dir (names sort by start within a day's directory).
func damageNewestSegment(t *testing.T, dir string) {
	t.Helper()
	var newest string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".seg") && path > newest {
			newest = path
		}
		return err
	})
	if err != nil || newest == "" {
		t.Fatalf("no segment file under %s: %v", dir, err)
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(newest, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
