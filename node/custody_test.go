package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/policy"
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

func mustCustodian(t *testing.T, name string) keys.Custodian {
	t.Helper()
	ck, err := keys.NewCustodianKey(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Zero()
	return ck.Custodian()
}
