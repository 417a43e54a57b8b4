package erasure

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

const cam = "praha-1/door"

// base is a whole minute; epochs are a minute (15 segments of 4 s).
var base = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fixture is a federation of a store of praha-1, a store of brno-1 and two
// datacenters, with the node keys to sign as each.
type fixture struct {
	st      *policy.State
	signers map[string]*keys.CustodySigner
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{signers: map[string]*keys.CustodySigner{}}
	f.st = &policy.State{FederationID: "fed-1", Nodes: map[string]*policy.Node{}, Requests: map[string]*policy.Request{}}
	for _, n := range []policy.Node{
		{Name: "store", Role: policy.RoleStore, Site: "praha-1"},
		{Name: "brno", Role: policy.RoleStore, Site: "brno-1"},
		{Name: "dc-a", Role: policy.RoleDatacenter},
		{Name: "dc-b", Role: policy.RoleDatacenter},
	} {
		k := keys.NewNodePrivate()
		s, err := keys.NewCustodySigner(n.Name, &k)
		if err != nil {
			t.Fatal(err)
		}
		f.signers[n.Name] = s
		n.PublicKey = k.Public().String()
		f.st.Nodes[n.Name] = &n
	}
	return f
}

// with returns a copy of the fixture's state with r added (approved when
// approved is set).
func (f *fixture) with(rs ...*policy.Request) *policy.State {
	st := *f.st
	st.Requests = map[string]*policy.Request{}
	for _, r := range rs {
		st.Requests[r.ID] = r
	}
	return &st
}

func erasureOf(id string, from, to time.Time, cams ...string) *policy.Request {
	return &policy.Request{ID: id, Action: policy.ActionErase, Cameras: cams, From: from, To: to, Requester: "alice",
		Purpose: "subject's request", ApprovedAt: base.Add(time.Hour), Expires: time.Now().Add(time.Hour)}
}

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

func payload(i int) []byte {
	b := make([]byte, 64+i)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

// record puts n segments of 4 s of camera c from base into s, with an
// epoch record per minute.
func record(t *testing.T, s *store.Store, c string, n int) []store.SegmentMeta {
	t.Helper()
	var out []store.SegmentMeta
	for i := range n {
		start := at(4 * i)
		ep := base.Add(start.Sub(base) / time.Minute * time.Minute)
		if _, err := s.Epoch(c, ep); err != nil {
			if err := s.PutEpoch(c, ep, ep.Add(time.Minute), []byte("record "+ep.String())); err != nil {
				t.Fatal(err)
			}
		}
		m := store.SegmentMeta{Camera: c, Start: start, End: start.Add(4 * time.Second), EpochStart: ep}
		if err := s.Put(m, payload(i)); err != nil {
			t.Fatal(err)
		}
		m.Size, m.SHA256 = int64(len(payload(i))), sha256.Sum256(payload(i))
		out = append(out, m)
	}
	return out
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startEraser(t *testing.T, f *fixture, self, dir string, p *nodetest.Policy, s *store.Store, j *nodetest.Journal) *Eraser {
	t.Helper()
	e, err := Start(Deps{Name: self, Dir: dir, Policy: p, Audit: j, Logf: t.Logf,
		Self:    func(*policy.State) string { return self },
		Custody: f.signers[self],
		Media:   func() *store.Store { return s },
		Retry:   50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func starts(ms []store.SegmentMeta) []time.Time {
	var out []time.Time
	for _, m := range ms {
		out = append(out, m.Start)
	}
	return out
}

func waitReceipt(t *testing.T, e *Eraser, st *policy.State, self, id string) *keys.ErasureReceipt {
	t.Helper()
	var rec *keys.ErasureReceipt
	nodetest.WaitTrue(t, 10*time.Second, self+"'s receipt of "+id, func() bool {
		b, ok := e.Receipt(id)
		if !ok {
			return false
		}
		r, err := Open(st, self, id, b)
		if err != nil {
			t.Fatalf("own receipt: %v", err)
		}
		rec = r
		return r.State == keys.ErasureDone
	})
	return rec
}

// TestEraseOnStore: an approved erasure deletes exactly the segments that
// overlap its range (whole), the epoch records wholly inside it, audits
// every hash, signs a receipt, and nothing of the range can be stored
// again; what is outside stays.
func TestEraseOnStore(t *testing.T) {
	f := newFixture(t)
	s := openStore(t)
	segs := record(t, s, cam, 30) // [0 s, 120 s): epochs at 0 s and 60 s
	other := record(t, s, "praha-1/till", 30)
	p := nodetest.NewPolicy(f.with())
	j := &nodetest.Journal{}
	dir := t.TempDir()
	e := startEraser(t, f, "store", dir, p, s, j)

	// Nothing is erased before the approval.
	time.Sleep(120 * time.Millisecond)
	if got, _ := s.Segments(cam, base, at(120)); len(got) != 30 {
		t.Fatalf("before any erasure: %d segments", len(got))
	}

	// [58 s, 120 s): segment 14 ([56 s, 60 s)) overlaps the start and goes
	// whole; the epoch at 60 s is wholly inside and goes; the one at 0 s
	// stays for segments 0-13.
	r := erasureOf("e-1", at(58), at(120), cam)
	st := f.with(r)
	p.Set(st)
	rec := waitReceipt(t, e, st, "store", "e-1")

	left, err := s.Segments(cam, base, at(120))
	if err != nil {
		t.Fatal(err)
	}
	if want := starts(segs[:14]); !slices.Equal(starts(left), want) {
		t.Fatalf("left %v, want segments 0-13 %v", starts(left), want)
	}
	if got, _ := s.Segments("praha-1/till", base, at(120)); len(got) != len(other) {
		t.Fatalf("another camera lost footage: %d of %d segments", len(got), len(other))
	}
	if _, err := s.Epoch(cam, at(60)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("epoch record at 60 s (wholly erased): %v, want gone", err)
	}
	if _, err := s.Epoch(cam, base); err != nil {
		t.Errorf("epoch record at 0 s (used by kept segments): %v", err)
	}

	if len(rec.Cameras) != 1 {
		t.Fatalf("receipt cameras %+v", rec.Cameras)
	}
	c := rec.Cameras[0]
	var sums [][32]byte
	var bytes int64
	for _, m := range segs[14:] {
		sums = append(sums, m.SHA256)
		bytes += m.Size
	}
	if c.Segments != 16 || c.Epochs != 1 || c.Bytes != bytes || c.Digest != keys.SegmentsDigest(sums) {
		t.Errorf("receipt %+v; want 16 segments, %d bytes, 1 epoch, digest %s", c, bytes, keys.SegmentsDigest(sums))
	}

	// The audit lists every hash removed, and the summary.
	var listed []string
	for _, ev := range j.Of("erase-segments") {
		_, hs, _ := strings.Cut(ev.Reason, ": ")
		listed = append(listed, strings.Fields(hs)...)
	}
	if len(listed) != 16 {
		t.Fatalf("audit lists %d segment hashes, want 16", len(listed))
	}
	for i, m := range segs[14:] {
		if want := sha256Hex(m.SHA256); listed[i] != want {
			t.Fatalf("audited hash %d = %s, want %s", i, listed[i], want)
		}
	}
	if done := j.Of("erasure-done"); len(done) != 1 || done[0].Object != "e-1" {
		t.Fatalf("erasure-done events %+v", done)
	}

	// Nothing of the range can come back (a late replica, a re-upload).
	if err := s.Put(segs[20], payload(20)); !errors.Is(err, store.ErrErased) {
		t.Errorf("Put of an erased segment: %v, want ErrErased", err)
	}

	// Further passes (every policy change, every retry) neither redo nor
	// re-audit the finished erasure.
	p.Set(f.with(r))
	time.Sleep(200 * time.Millisecond)
	if n := len(j.Of("erasure-done")); n != 1 {
		t.Errorf("%d erasure-done events after more passes, want 1", n)
	}
}

func sha256Hex(s [32]byte) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 64)
	for i, c := range s {
		b[2*i], b[2*i+1] = hex[c>>4], hex[c&15]
	}
	return string(b)
}

// TestEraseAgainAfterRestore: a node restarted on media restored from a
// backup made before the erasure (its segments back, its tombstones gone)
// erases them again at its first pass, and reports it.
func TestEraseAgainAfterRestore(t *testing.T) {
	f := newFixture(t)
	r := erasureOf("e-1", at(0), at(40), cam)
	st := f.with(r)
	p := nodetest.NewPolicy(st)
	dir := t.TempDir()

	s1 := openStore(t)
	record(t, s1, cam, 20)
	e1 := startEraser(t, f, "dc-a", dir, p, s1, &nodetest.Journal{})
	if rec := waitReceipt(t, e1, st, "dc-a", "e-1"); rec.Cameras[0].Segments != 10 {
		t.Fatalf("first erasure: %+v", rec.Cameras)
	}
	e1.Close()

	s2 := openStore(t) // the restored backup
	record(t, s2, cam, 20)
	j := &nodetest.Journal{}
	startEraser(t, f, "dc-a", dir, p, s2, j)
	nodetest.WaitTrue(t, 10*time.Second, "the restored segments erased again", func() bool {
		got, _ := s2.Segments(cam, base, at(80))
		return len(got) == 10 && len(j.Of("erasure-done")) == 1
	})
	if tb, err := s2.Tombstones(cam); err != nil || len(tb) != 1 {
		t.Fatalf("tombstones after the restore: %v, %v", tb, err)
	}
}

// TestEraseSkipsHeldFootage: a hold approved before an offline node
// applied the erasure keeps its footage there; the receipt says so.
func TestEraseSkipsHeldFootage(t *testing.T) {
	f := newFixture(t)
	s := openStore(t)
	record(t, s, cam, 30)
	hold := &policy.Request{ID: "h-1", Action: policy.ActionHold, Cameras: []string{cam}, From: at(100), To: at(108),
		Until: time.Now().Add(time.Hour), ApprovedAt: base.Add(time.Hour), Purpose: "incident", Expires: time.Now().Add(time.Hour)}
	st := f.with(erasureOf("e-1", at(60), at(120), cam), hold)
	j := &nodetest.Journal{}
	e := startEraser(t, f, "dc-a", t.TempDir(), nodetest.NewPolicy(st), s, j)
	rec := waitReceipt(t, e, st, "dc-a", "e-1")
	if c := rec.Cameras[0]; c.Segments != 13 || c.Held != 2 || c.Epochs != 0 {
		t.Errorf("receipt %+v; want 13 segments deleted, 2 held, the epoch kept for them", c)
	}
	left, _ := s.Segments(cam, at(60), at(120))
	if want := []time.Time{at(100), at(104)}; !slices.Equal(starts(left), want) {
		t.Errorf("left in the range: %v, want the held %v", starts(left), want)
	}
	if len(j.Of("hold")) != 1 {
		t.Errorf("the active hold was not audited: %+v", j.Events())
	}
}

// TestStoreErasesOnlyItsSite: a store's receipt covers only its own site's
// cameras; a datacenter's covers all.
func TestStoreErasesOnlyItsSite(t *testing.T) {
	f := newFixture(t)
	st := f.with(erasureOf("e-1", at(0), at(40), "brno-1/gate", cam))
	for self, want := range map[string][]string{"store": {cam}, "dc-b": {"brno-1/gate", cam}} {
		s := openStore(t)
		e := startEraser(t, f, self, t.TempDir(), nodetest.NewPolicy(st), s, &nodetest.Journal{})
		rec := waitReceipt(t, e, st, self, "e-1")
		var got []string
		for _, c := range rec.Cameras {
			got = append(got, c.Camera)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s's receipt covers %v, want %v", self, got, want)
		}
	}
}

// TestCollect: the status comes from each holder's own signed receipt; a
// receipt signed by another node, or of another request, is caught.
func TestCollect(t *testing.T) {
	f := newFixture(t)
	r := erasureOf("e-1", at(0), at(40), cam)
	st := f.with(r, erasureOf("e-2", at(0), at(40), cam))
	seal := func(signer, node, id string) []byte {
		s, err := f.signers[signer].Named(node)
		if err != nil {
			t.Fatal(err)
		}
		b, err := keys.SealErasureReceipt(s, &keys.ErasureReceipt{Federation: "fed-1", Request: id, Node: node, State: keys.ErasureDone,
			Time: time.Now(), Cameras: []keys.ErasedCamera{{Camera: cam, Segments: 10, Epochs: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	answers := map[string][]byte{
		"store": seal("store", "store", "e-1"),
		"dc-a":  seal("dc-b", "dc-a", "e-1"), // dc-b claims dc-a's completion
	}
	fetch := func(_ context.Context, node, id string) ([]byte, error) {
		if node == "brno" {
			t.Errorf("asked brno, whose site has no camera of the erasure")
		}
		return answers[node], nil
	}
	got, err := Collect(context.Background(), st, "e-1", fetch)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"store": keys.ErasureDone, "dc-a": Invalid, "dc-b": Pending}
	if len(got.Rows) != len(want) {
		t.Fatalf("rows %+v", got.Rows)
	}
	for _, row := range got.Rows {
		if row.State != want[row.Node] {
			t.Errorf("%s: %s (%s), want %s", row.Node, row.State, row.Note, want[row.Node])
		}
	}
	if got.State == keys.ErasureDone {
		t.Error("erasure shown done with dc-a's receipt forged and dc-b's missing")
	}

	// A genuine receipt of another erasure does not count for this one.
	answers["dc-a"] = seal("dc-a", "dc-a", "e-2")
	answers["dc-b"] = seal("dc-b", "dc-b", "e-1")
	got, _ = Collect(context.Background(), st, "e-1", fetch)
	if got.Rows[0].Node != "dc-a" || got.Rows[0].State != Invalid {
		t.Errorf("dc-a with a receipt of e-2: %+v", got.Rows[0])
	}
	answers["dc-a"] = seal("dc-a", "dc-a", "e-1")
	got, _ = Collect(context.Background(), st, "e-1", fetch)
	if got.State != keys.ErasureDone {
		t.Errorf("all three receipts genuine: state %s, rows %+v", got.State, got.Rows)
	}

	// A revoked holder is not asked and does not hold the erasure up.
	f.st.Nodes["dc-b"].Revoked = true
	delete(answers, "dc-b")
	got, _ = Collect(context.Background(), st, "e-1", fetch)
	if got.State != keys.ErasureDone || got.Rows[1].Node != "dc-b" || got.Rows[1].State != Revoked {
		t.Errorf("with dc-b revoked: state %s, rows %+v", got.State, got.Rows)
	}
	f.st.Nodes["dc-b"].Revoked = false

	// Unreachable nodes say so; an unapproved erasure is pending on all.
	got, _ = Collect(context.Background(), st, "e-1", func(context.Context, string, string) ([]byte, error) {
		return nil, errors.New("node \"dc-b\" is not a live member")
	})
	if got.Rows[0].State != Unreachable {
		t.Errorf("unreachable: %+v", got.Rows[0])
	}
	r.ApprovedAt = time.Time{}
	got, _ = Collect(context.Background(), st, "e-1", fetch)
	for _, row := range got.Rows {
		if row.State != Pending || row.Note != "not approved" {
			t.Errorf("unapproved: %+v", row)
		}
	}
	if _, err := Collect(context.Background(), st, "nope", fetch); err == nil {
		t.Error("unknown request accepted")
	}
	st.Requests["r-1"] = &policy.Request{ID: "r-1"}
	if _, err := Collect(context.Background(), st, "r-1", fetch); err == nil || !strings.Contains(err.Error(), "not an erasure") {
		t.Errorf("a view request: %v", err)
	}
}

// TestHoldsAuditedOncePerChange: an active hold is audited when it starts,
// not again at every restart of the node; one that ended while the node
// was down is audited as ended when it returns.
func TestHoldsAuditedOncePerChange(t *testing.T) {
	f := newFixture(t)
	s := openStore(t)
	record(t, s, cam, 5)
	hold := &policy.Request{ID: "h-1", Action: policy.ActionHold, Cameras: []string{cam}, From: at(0), To: at(8),
		Until: time.Now().Add(time.Hour), ApprovedAt: base.Add(time.Hour), Purpose: "incident", Expires: time.Now().Add(time.Hour)}
	// An erasure elsewhere marks the end of each first pass (done).
	er := erasureOf("e-1", at(12), at(16), cam)
	dir := t.TempDir()
	run := func(st *policy.State) *nodetest.Journal {
		t.Helper()
		j := &nodetest.Journal{}
		e := startEraser(t, f, "store", dir, nodetest.NewPolicy(st), s, j)
		nodetest.WaitTrue(t, 10*time.Second, "a pass", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.done["e-1"]
		})
		e.Close()
		return j
	}
	held := f.with(er, hold)
	if j := run(held); len(j.Of("hold")) != 1 {
		t.Fatalf("first start: %+v, want the hold audited", j.Events())
	}
	if j := run(held); len(j.Of("hold")) != 0 || len(j.Of("hold-ended")) != 0 {
		t.Fatalf("a restart audited the unchanged hold again: %+v", j.Events())
	}
	if j := run(f.with(er)); len(j.Of("hold-ended")) != 1 || len(j.Of("hold")) != 0 {
		t.Fatalf("a hold that ended while down: %+v, want hold-ended once", j.Events())
	}
}
