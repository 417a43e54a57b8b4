package media

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testCamera = "praha-1/entrance"

// frameInterval is the synthetic clip's 25 fps.
const frameInterval = 40 * time.Millisecond

// custodianKeys are dc-a, dc-b and recovery, made once for all tests
// (each takes a few milliseconds).
var custodianKeys = sync.OnceValues(func() ([3]*keys.CustodianKey, error) {
	var out [3]*keys.CustodianKey
	for i, name := range []string{"dc-a", "dc-b", "recovery"} {
		k, err := keys.NewCustodianKey(name)
		if err != nil {
			return out, err
		}
		out[i] = k
	}
	return out, nil
})

// testKeys returns the custodian keys dc-a, dc-b and recovery.
func testKeys(t testing.TB) (dcA, dcB, recovery *keys.CustodianKey) {
	t.Helper()
	ks, err := custodianKeys()
	if err != nil {
		t.Fatal(err)
	}
	return ks[0], ks[1], ks[2]
}

// testStore is the policy name the test store seals under.
const testStore = "store-1"

// signerKey is the test store's custody signer, made once, so that a
// recorder restarted on a store seals with its key as a node's does.
var signerKey = sync.OnceValues(func() (*keys.CustodySigner, error) {
	k := keys.NewNodePrivate()
	defer k.Zero()
	return keys.NewCustodySigner(testStore, &k)
})

// testSigner returns the test store's custody signer.
func testSigner(t testing.TB) *keys.CustodySigner {
	t.Helper()
	s, err := signerKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newSigner makes a custody signer with a new node key.
func newSigner(t testing.TB, name string) *keys.CustodySigner {
	t.Helper()
	k := keys.NewNodePrivate()
	defer k.Zero()
	s, err := keys.NewCustodySigner(name, &k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Zero)
	return s
}

func custodians(t testing.TB) []keys.Custodian {
	a, b, r := testKeys(t)
	return []keys.Custodian{a.Custodian(), b.Custodian(), r.Custodian()}
}

// testSource plays the synthetic clip unpaced, but only as many frames as
// the test released, so a test knows exactly what was recorded. With a
// non-zero base, frame n is stamped base+n·40ms instead of the source's
// own clock.
type testSource struct {
	inner   source.Source
	base    time.Time
	tokens  chan struct{}
	emitted atomic.Int64
}

var _ source.Source = (*testSource)(nil)

func newTestSource(t testing.TB, base time.Time) *testSource {
	t.Helper()
	inner, err := source.Open("synthetic:?pace=none", source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &testSource{inner: inner, base: base, tokens: make(chan struct{}, 1<<16)}
}

// release lets n more frames through.
func (s *testSource) release(n int) {
	for range n {
		s.tokens <- struct{}{}
	}
}

func (s *testSource) Run(ctx context.Context, emit func(h264.Frame) error) error {
	n := 0
	return s.inner.Run(ctx, func(f h264.Frame) error {
		select {
		case <-s.tokens:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !s.base.IsZero() {
			f.Time = s.base.Add(time.Duration(n) * frameInterval)
		}
		n++
		if err := emit(f); err != nil {
			return err
		}
		s.emitted.Add(1)
		return nil
	})
}

func (s *testSource) Stats() source.Stats { return s.inner.Stats() }

// events collects what OnEvent reports.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) count(kind EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.list {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// rig is a recorder on a store in a temporary directory, running on its
// own goroutine.
type rig struct {
	t      testing.TB
	st     *store.Store
	src    *testSource
	rec    *Recorder
	events *events
	cancel context.CancelFunc
	done   chan error
}

type rigOpts struct {
	storeDir  string              // default: a fresh temporary directory
	storeOpts store.Options       // default: the store's own
	signer    *keys.CustodySigner // default: testSigner
	base      time.Time           // restamp frames from here (see testSource)
	config    func(*RecorderConfig)
}

func newRig(t testing.TB, o rigOpts) *rig {
	t.Helper()
	if o.storeDir == "" {
		o.storeDir = t.TempDir()
	}
	st, err := store.Open(o.storeDir, o.storeOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if o.signer == nil {
		o.signer = testSigner(t)
	}
	r := &rig{t: t, st: st, src: newTestSource(t, o.base), events: &events{}, done: make(chan error, 1)}
	cfg := RecorderConfig{
		Camera:        testCamera,
		Source:        r.src,
		Store:         st,
		Custodians:    custodians(t),
		Signer:        o.signer,
		Segment:       ts.Config{Target: time.Second}, // one GOP of the clip per segment
		QueueSegments: 64,
		OnEvent:       r.events.add,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	if r.rec, err = NewRecorder(cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.rec.Run(ctx) }()
	r.t.Cleanup(func() { r.stop() })
}

// stop ends Run and returns its error; calling it again returns nil.
func (r *rig) stop() error {
	r.t.Helper()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(20 * time.Second):
		r.t.Fatal("Run did not return 20 s after its context ended")
		return nil
	}
}

// record releases n frames, waits until the source delivered them all and
// stops the recorder, which stores everything.
func (r *rig) record(n int) {
	r.t.Helper()
	r.start()
	r.src.release(n)
	waitFor(r.t, "frames delivered", func() bool { return r.src.emitted.Load() == int64(n) })
	if err := r.stop(); err != context.Canceled {
		r.t.Fatalf("Run after a clean stop: %v, want context.Canceled", err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// allTime spans every time the store accepts.
var allFrom, allTo = time.Unix(0, 0), time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)

// decrypted is one stored segment read back.
type decrypted struct {
	meta  store.SegmentMeta
	rec   *keys.EpochRecord
	plain []byte
}

// decryptAll reads every stored segment of the camera and decrypts it the
// way a release does: custodians a and b answer for each segment and the
// answers open it (no epoch key is rebuilt).
func decryptAll(t testing.TB, st *store.Store, a, b *keys.CustodianKey) []decrypted {
	t.Helper()
	metas, err := st.Segments(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	records := map[time.Time]*keys.EpochRecord{}
	var out []decrypted
	for _, m := range metas {
		rec, ok := records[m.EpochStart]
		if !ok {
			rec = storedRecord(t, st, m.EpochStart)
			records[m.EpochStart] = rec
		}
		ct := storedCiphertext(t, st, m)
		pt, err := keys.DecryptSegmentAsCustodians(rec, ct, a, b)
		if err != nil {
			t.Fatalf("decrypt segment %s with %s+%s: %v", m.Start, a.Name(), b.Name(), err)
		}
		out = append(out, decrypted{meta: m, rec: records[m.EpochStart], plain: pt})
	}
	return out
}

// storedRecord returns the record inside the stored sealed epoch record.
func storedRecord(t testing.TB, st *store.Store, start time.Time) *keys.EpochRecord {
	t.Helper()
	return storedSealedEpoch(t, st, start).Record
}

func storedSealedEpoch(t testing.TB, st *store.Store, start time.Time) *keys.SealedEpoch {
	t.Helper()
	b, err := st.Epoch(testCamera, start)
	if err != nil {
		t.Fatalf("epoch record %s: %v", start, err)
	}
	se, err := keys.ParseSealedEpoch(b)
	if err != nil {
		t.Fatalf("epoch record %s: %v", start, err)
	}
	return se
}

// storedSealedSegment reads a stored segment as the sealed segment it is.
func storedSealedSegment(t testing.TB, st *store.Store, m store.SegmentMeta) *keys.SealedSegment {
	t.Helper()
	b, err := st.ReadSegment(m)
	if err != nil {
		t.Fatalf("read segment %s: %v", m.Start, err)
	}
	g, err := keys.ParseSealedSegment(b)
	if err != nil {
		t.Fatalf("segment %s: %v", m.Start, err)
	}
	return g
}

// storedCiphertext is a stored segment's OpenPGP message, its link
// stripped.
func storedCiphertext(t testing.TB, st *store.Store, m store.SegmentMeta) []byte {
	t.Helper()
	return storedSealedSegment(t, st, m).Ciphertext
}

// tsFrames counts the access units in MPEG-TS: each is one PES, which
// starts in a packet with payload_unit_start_indicator on the video PID.
func tsFrames(t testing.TB, b []byte) int {
	t.Helper()
	if len(b)%ts.PacketSize != 0 {
		t.Fatalf("TS of %d bytes: not whole packets", len(b))
	}
	n := 0
	for p := b; len(p) > 0; p = p[ts.PacketSize:] {
		if p[0] != 0x47 {
			t.Fatal("TS packet without sync byte")
		}
		pid := int(p[1]&0x1f)<<8 | int(p[2])
		if pid == ts.PIDVideo && p[1]&0x40 != 0 {
			n++
		}
	}
	return n
}

func storedFrames(t testing.TB, segs []decrypted) int {
	t.Helper()
	n := 0
	for _, s := range segs {
		n += tsFrames(t, s.plain)
	}
	return n
}

// decryptDC decrypts every stored segment with dc-a's and dc-b's shares.
func decryptDC(t testing.TB, st *store.Store) []decrypted {
	t.Helper()
	a, b, _ := testKeys(t)
	return decryptAll(t, st, a, b)
}
