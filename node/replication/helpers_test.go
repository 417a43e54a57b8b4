package replication

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
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

func mustCustodian(t *testing.T, name string) keys.Custodian {
	t.Helper()
	ck, err := keys.NewCustodianKey(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Zero()
	return ck.Custodian()
}

// testReplica is a datacenter's replica side without a mesh: its journal,
// media store and policy, and a puller of store "store" of praha-1.
type testReplica struct {
	r      *Replicas
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
	st, err := store.Open(filepath.Join(dir, "media"), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logged := new([]string)
	r := &Replicas{d: ReplicaDeps{Deps: testDeps(t, "dc-a", pst, dj, logged)}, st: st, pullers: map[string]*puller{}}
	ar, err := openAuditReplica(filepath.Join(dir, "replicas", "audit"), "store")
	if err != nil {
		t.Fatal(err)
	}
	p := &puller{store: "store", site: "praha-1", audit: ar}
	r.pullers["store"] = p
	return &testReplica{r: r, p: p, ar: ar, dj: dj, st: st, logged: logged}
}

// staticPolicy is the node's policy, frozen.
type staticPolicy struct{ st *policy.State }

func (p staticPolicy) State() *policy.State { return p.st }

// testDeps is a node named name under policy st: it audits into j and
// logs into logged; it finds itself in the policy by name.
func testDeps(t *testing.T, name string, st *policy.State, j *audit.Journal, logged *[]string) Deps {
	return Deps{
		Name:   name,
		Policy: staticPolicy{st},
		Self:   func(*policy.State) string { return name },
		Audit: func(e audit.Event) {
			if _, err := j.Append(e); err != nil {
				t.Errorf("audit %s %s: %v", e.Action, e.Object, err)
			}
		},
		Logf: func(format string, a ...any) { *logged = append(*logged, fmt.Sprintf(format, a...)) },
	}
}
