package nodetest

import (
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// Custody is a chain-of-custody fixture: a policy with store "store" of
// site praha-1 (and "store2" of the same site, "brno" of brno-1, and
// datacenter dc-a), and an epoch record of praha-1/entrance the store
// sealed.
type Custody struct {
	St     *policy.State
	Signer *keys.CustodySigner // store's
	Rec    *keys.EpochRecord
	Sealed []byte // Rec, sealed by Signer
	CT     []byte // a stand-in segment ciphertext
}

// NewCustody makes the fixture with fresh keys.
func NewCustody(t testing.TB) *Custody {
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
	rec, err := keys.NewEpochKey("praha-1/entrance", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), keys.DefaultEpochLength,
		[]keys.Custodian{Custodian(t, "dc-a"), Custodian(t, "dc-b")})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keys.SealEpochRecord(s, rec)
	if err != nil {
		t.Fatal(err)
	}
	return &Custody{St: st, Signer: s, Rec: rec, Sealed: sealed, CT: []byte("an OpenPGP message")}
}

// Segment seals a segment of the fixture's camera and epoch record with s:
// sequence seq, 4 s from start, after the link whose hash is prev.
func (f *Custody) Segment(t testing.TB, s *keys.CustodySigner, seq uint64, start time.Time, prev [32]byte) ([]byte, keys.SegmentLink) {
	t.Helper()
	e, err := keys.ParseSealedEpoch(f.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	b, l, err := keys.SealSegment(s, keys.SegmentLink{Camera: f.Rec.Camera, EpochStart: f.Rec.Start, EpochHash: e.RecordHash,
		Seq: seq, Start: start, End: start.Add(4 * time.Second), Prev: prev}, f.CT)
	if err != nil {
		t.Fatal(err)
	}
	return b, l
}

// Custodian is the public half of a fresh custodian key named name.
func Custodian(t testing.TB, name string) keys.Custodian {
	t.Helper()
	ck, err := keys.NewCustodianKey(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Zero()
	return ck.Custodian()
}
