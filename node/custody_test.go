package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

type custodyFixture struct {
	st     *policy.State
	signer *keys.CustodySigner
	rec    *keys.EpochRecord
	sealed []byte // rec, sealed by signer
	ct     []byte
}

// newCustodyFixture: a policy with store "store" of site praha-1 (and a
// store of another site, and a datacenter), and an epoch record the store
// sealed.
func newCustodyFixture(t *testing.T) *custodyFixture {
	t.Helper()
	nk := func() (*keys.CustodySigner, string) {
		k := keys.NewNodePrivate()
		s, err := keys.NewCustodySigner("store", &k)
		if err != nil {
			t.Fatal(err)
		}
		return s, k.Public().String()
	}
	s, pub := nk()
	_, brnoPub := nk()
	_, dcPub := nk()
	st := &policy.State{Nodes: map[string]*policy.Node{
		"store":  {Name: "store", Role: policy.RoleStore, Site: "praha-1", PublicKey: pub},
		"brno":   {Name: "brno", Role: policy.RoleStore, Site: "brno-1", PublicKey: brnoPub},
		"dc-a":   {Name: "dc-a", Role: policy.RoleDatacenter, PublicKey: dcPub},
		"store2": {Name: "store2", Role: policy.RoleStore, Site: "praha-1", PublicKey: brnoPub},
	}}
	var custodians []keys.Custodian
	for _, name := range []string{"dc-a", "dc-b"} {
		ck, err := keys.NewCustodianKey(name)
		if err != nil {
			t.Fatal(err)
		}
		custodians = append(custodians, ck.Custodian())
		ck.Zero()
	}
	rec, err := keys.NewEpochKey("praha-1/entrance", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), keys.DefaultEpochLength, custodians)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keys.SealEpochRecord(s, rec)
	if err != nil {
		t.Fatal(err)
	}
	return &custodyFixture{st: st, signer: s, rec: rec, sealed: sealed, ct: []byte("an OpenPGP message")}
}

func (f *custodyFixture) segment(t *testing.T, s *keys.CustodySigner, seq uint64, start time.Time, prev [32]byte) ([]byte, keys.SegmentLink) {
	t.Helper()
	e, err := keys.ParseSealedEpoch(f.sealed)
	if err != nil {
		t.Fatal(err)
	}
	b, l, err := keys.SealSegment(s, keys.SegmentLink{Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochHash: e.RecordHash,
		Seq: seq, Start: start, End: start.Add(4 * time.Second), Prev: prev}, f.ct)
	if err != nil {
		t.Fatal(err)
	}
	return b, l
}

// A seal verifies only under the key the policy holds for a store of the
// camera's site — also after that store was revoked — and never under a
// datacenter's, another site's store's, or an unknown name.
func TestCustodySealsVerifyAgainstThePolicy(t *testing.T) {
	f := newCustodyFixture(t)
	cam := f.rec.Camera
	e, err := custody.VerifyEpoch(f.st, cam, f.sealed)
	if err != nil {
		t.Fatal(err)
	}
	seg, _ := f.segment(t, f.signer, 0, f.rec.Start.Add(time.Second), [32]byte{})
	if _, err := custody.VerifySegment(f.st, cam, seg, e); err != nil {
		t.Fatal(err)
	}
	f.st.Nodes["store"].Revoked = true
	if _, err := custody.VerifyEpoch(f.st, cam, f.sealed); err != nil {
		t.Errorf("a revoked store's old record no longer verifies: %v", err)
	}
	f.st.Nodes["store"].Revoked = false

	if _, err := custody.VerifyEpoch(f.st, "brno-1/entrance", f.sealed); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("praha-1's record accepted for another camera: %v", err)
	}
	rb, _ := f.rec.Marshal()
	if _, err := custody.VerifyEpoch(f.st, cam, rb); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("an unsealed record accepted: %v", err)
	}
	for _, name := range []string{"dc-a", "brno", "nobody"} {
		s, err := f.signer.Named(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := keys.SealEpochRecord(s, f.rec)
		if _, err := custody.VerifyEpoch(f.st, cam, b); !errors.Is(err, custody.ErrBroken) || !strings.Contains(err.Error(), "not a store of site praha-1") {
			t.Errorf("a record sealed as %s: %v", name, err)
		}
	}
	// store2 is a store of the site, but the signature is store's key.
	s2, _ := f.signer.Named("store2")
	b, _ := keys.SealEpochRecord(s2, f.rec)
	if _, err := custody.VerifyEpoch(f.st, cam, b); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a record sealed with another store's key verified: %v", err)
	}

	// A segment made for another epoch record is refused with this one.
	other, err := keys.NewEpochKey(cam, f.rec.Start, keys.DefaultEpochLength, []keys.Custodian{mustCustodian(t, "dc-a"), mustCustodian(t, "dc-b")})
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := keys.SealEpochRecord(f.signer, other)
	oe, err := custody.VerifyEpoch(f.st, cam, ob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custody.VerifySegment(f.st, cam, seg, oe); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a segment opened with another epoch record: %v", err)
	}
	if _, err := custody.VerifySegment(f.st, "praha-1/yard", seg, nil); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a segment of another camera: %v", err)
	}
}

// testReplica is a datacenter's replica side without a mesh: its journal,
// media store and policy, and a puller of store "store" of praha-1.
type testReplica struct {
	r      *replicas
	p      *puller
	ar     *auditReplica
	dj     *audit.Journal
	st     *store.Store
	logged *[]string
}

func newTestReplica(t *testing.T, pst *policy.State) *testReplica {
	t.Helper()
	dir := t.TempDir()
	dj, err := audit.Open(dir, audit.Options{Node: "dc-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dj.Close() })
	st, err := store.Open(MediaDir(dir), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol := policystore.WithState(pst)
	logged := new([]string)
	r := &replicas{n: &Node{cfg: Config{Name: "dc-a"}, audit: dj, policy: pol, logf: func(format string, a ...any) { *logged = append(*logged, fmt.Sprintf(format, a...)) }},
		st: st, pullers: map[string]*puller{}}
	ar, err := openAuditReplica(filepath.Join(dir, "replicas", "audit"), "store")
	if err != nil {
		t.Fatal(err)
	}
	p := &puller{store: "store", site: "praha-1", audit: ar}
	r.pullers["store"] = p
	return &testReplica{r: r, p: p, ar: ar, dj: dj, st: st, logged: logged}
}

func mustCustodian(t *testing.T, name string) keys.Custodian {
	t.Helper()
	ck, err := keys.NewCustodianKey(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Zero()
	return ck.Custodian()
}

// The chain check: consecutive links pass; a jump is a gap counting the
// missing segments; a repeat, a step back or a substituted predecessor is
// tampering; a restart (sequence 0, no predecessor) is a gap of unknown
// size; a skipped segment's reason is kept for the gap that follows.
func TestCustodyChain(t *testing.T) {
	f := newCustodyFixture(t)
	t0 := f.rec.Start.Add(time.Second)
	links := make([]keys.SegmentLink, 6)
	var prev [32]byte
	for i := range links {
		_, links[i] = f.segment(t, f.signer, uint64(i), t0.Add(time.Duration(i)*4*time.Second), prev)
		prev = links[i].Hash()
	}
	run := func(order ...int) (gaps []*keys.ManifestGap, err error) {
		c := custodyChain{camera: f.rec.Camera}
		for _, i := range order {
			g, err := c.next(&links[i])
			if err != nil {
				return gaps, err
			}
			if g != nil {
				gaps = append(gaps, g)
			}
		}
		return gaps, nil
	}
	if gaps, err := run(0, 1, 2, 3, 4, 5); err != nil || len(gaps) != 0 {
		t.Errorf("a whole chain: %v, %v", gaps, err)
	}
	if gaps, err := run(2, 3, 4); err != nil || len(gaps) != 0 {
		t.Errorf("a chain that starts inside the range: %v, %v", gaps, err)
	}
	gaps, err := run(0, 1, 4, 5)
	if err != nil || len(gaps) != 1 || gaps[0].Missing != 2 || !gaps[0].From.Equal(links[1].End) || !gaps[0].To.Equal(links[4].Start) {
		t.Errorf("two removed segments: %+v, %v", gaps, err)
	}
	for name, order := range map[string][]int{"repeated": {0, 1, 1, 2}, "swapped": {0, 2, 1, 3}, "backwards": {3, 2}} {
		if _, err := run(order...); !errors.Is(err, custody.ErrBroken) {
			t.Errorf("%s segments: %v, want a broken chain", name, err)
		}
	}
	// A link of the right sequence number whose predecessor is another
	// segment than the one served before it (a substitute, sealed by the
	// store's key for another history) breaks the chain.
	_, sub := f.segment(t, f.signer, 2, links[2].Start, [32]byte{7})
	c := custodyChain{camera: f.rec.Camera}
	c.next(&links[0])
	c.next(&links[1])
	if _, err := c.next(&sub); !errors.Is(err, custody.ErrBroken) {
		t.Errorf("a substituted segment: %v", err)
	}
	// A restart of the chain (the store lost its newest segment) is a gap
	// of unknown size, never silent.
	_, restart := f.segment(t, f.signer, 0, links[5].End.Add(time.Minute), [32]byte{})
	c = custodyChain{camera: f.rec.Camera}
	c.next(&links[4])
	c.next(&links[5])
	if g, err := c.next(&restart); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "restarts") {
		t.Errorf("a restarted chain: %+v, %v", g, err)
	}
	// A segment skipped because it did not verify leaves a gap with its
	// reason although the chain itself is whole.
	c = custodyChain{camera: f.rec.Camera}
	c.next(&links[0])
	c.pending = "a segment that did not verify was served in its place"
	if g, err := c.next(&links[1]); err != nil || g == nil || g.Missing != 0 || !strings.Contains(g.Reason, "did not verify") {
		t.Errorf("a refused segment between two good ones: %+v, %v", g, err)
	}
}

// A datacenter checks every seal on arrival: an epoch record or segment
// that a store of the site did not seal is never stored, is alarmed and
// audited, and is skipped (the next pull's cursor is past it) so the
// store's later footage keeps coming; the store's own footage is stored.
func TestReplicaRefusesFootageNotSealedByTheStore(t *testing.T) {
	f := newCustodyFixture(t)
	tr := newTestReplica(t, f.st)
	r, p, st, dj := tr.r, tr.p, tr.st, tr.dj
	item := func(kind string, start, end, epoch time.Time, b []byte) replItem {
		sum := sha256.Sum256(b)
		return replItem{Kind: kind, Camera: f.rec.Camera, Start: start, End: end, EpochStart: epoch, SHA256: hex.EncodeToString(sum[:])}
	}
	cam, e0 := f.rec.Camera, f.rec.Start

	// A record for the next epoch, made from the custodians' public keys
	// and sealed with a key that is not the store's: refused, and so are
	// the segments that name it.
	k := keys.NewNodePrivate()
	forger, _ := keys.NewCustodySigner("store", &k)
	e1 := f.rec.End
	minted, err := keys.NewEpochKey(cam, e1, keys.DefaultEpochLength, []keys.Custodian{mustCustodian(t, "dc-a"), mustCustodian(t, "dc-b")})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := keys.SealEpochRecord(forger, minted)
	if err := r.apply(p, item("epoch", e1, minted.End, e1, mb), mb); err != nil {
		t.Fatalf("a forged record failed the pull: %v", err)
	}
	if _, err := st.Epoch(cam, e1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the forged record was stored: %v", err)
	}
	// The store's own record and segment are stored.
	if err := r.apply(p, item("epoch", e0, f.rec.End, e0, f.sealed), f.sealed); err != nil {
		t.Fatal(err)
	}
	good, gl := f.segment(t, f.signer, 0, e0.Add(time.Second), [32]byte{})
	if err := r.apply(p, item("segment", gl.Start, gl.End, e0, good), good); err != nil {
		t.Fatal(err)
	}
	// A segment sealed by the forger in the store's name, and the store's
	// own segment filed under another time: refused.
	forged, fl := f.segment(t, forger, 1, gl.End, gl.Hash())
	moved := item("segment", gl.Start.Add(time.Minute), gl.End.Add(time.Minute), e0, good)
	for _, c := range []struct {
		it replItem
		b  []byte
	}{{item("segment", fl.Start, fl.End, e0, forged), forged}, {moved, good}} {
		if err := r.apply(p, c.it, c.b); err != nil {
			t.Fatalf("a refused segment failed the pull: %v", err)
		}
	}
	segs, _ := st.Segments(cam, e0, e0.Add(time.Hour))
	if len(segs) != 1 || !segs[0].Start.Equal(gl.Start) {
		t.Fatalf("the replica holds %+v, want only the store's segment", segs)
	}
	q, err := r.pullRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := q.Cameras[cam]; !c.Epoch.Equal(e1) || !c.Segment.Equal(moved.Start) {
		t.Errorf("cursor %+v, want it past the refused record (%s) and segment (%s)", c, stamp(e1), stamp(moved.Start))
	}
	ss := r.status()
	if len(ss) != 1 || ss[0].Refused != 3 || !strings.Contains(ss[0].RefusedLast, "signed link says") {
		t.Errorf("status %+v, want 3 refusals", ss)
	}
	es, _ := dj.Since(time.Time{})
	audited := 0
	for _, e := range es {
		if e.Action == "replica-refused" && e.Decision == audit.Deny {
			audited++
		}
	}
	if audited != 3 || len(*tr.logged) != 3 {
		t.Errorf("%d refusals audited, %d logged; want 3 each", audited, len(*tr.logged))
	}
	// Another store of the site, or a store of another site, cannot stand
	// in for the store either: a segment naming another store is checked
	// against that store's key.
	s2, _ := f.signer.Named("brno")
	other, ol := f.segment(t, s2, 1, gl.End, gl.Hash())
	if err := r.apply(p, item("segment", ol.Start, ol.End, e0, other), other); err != nil {
		t.Fatal(err)
	}
	if segs, _ := st.Segments(cam, e0, e0.Add(time.Hour)); len(segs) != 1 {
		t.Errorf("a segment sealed as another site's store was stored")
	}
}
