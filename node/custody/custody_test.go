package custody

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// A seal verifies only under the key the policy holds for a store of the
// camera's site — also after that store was revoked — and never under a
// datacenter's, another site's store's, or an unknown name.
func TestCustodySealsVerifyAgainstThePolicy(t *testing.T) {
	f := nodetest.NewCustody(t)
	cam := f.Rec.Camera
	e, err := VerifyEpoch(f.St, cam, f.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	seg, _ := f.Segment(t, f.Signer, 0, f.Rec.Start.Add(time.Second), [32]byte{})
	if _, err := VerifySegment(f.St, cam, seg, e); err != nil {
		t.Fatal(err)
	}
	f.St.Nodes["store"].Revoked = true
	if _, err := VerifyEpoch(f.St, cam, f.Sealed); err != nil {
		t.Errorf("a revoked store's old record no longer verifies: %v", err)
	}
	f.St.Nodes["store"].Revoked = false

	if _, err := VerifyEpoch(f.St, "brno-1/entrance", f.Sealed); !errors.Is(err, ErrBroken) {
		t.Errorf("praha-1's record accepted for another camera: %v", err)
	}
	rb, _ := f.Rec.Marshal()
	if _, err := VerifyEpoch(f.St, cam, rb); !errors.Is(err, ErrBroken) {
		t.Errorf("an unsealed record accepted: %v", err)
	}
	for _, name := range []string{"dc-a", "brno", "nobody"} {
		s, err := f.Signer.Named(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := keys.SealEpochRecord(s, f.Rec)
		if _, err := VerifyEpoch(f.St, cam, b); !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "not a store of site praha-1") {
			t.Errorf("a record sealed as %s: %v", name, err)
		}
	}
	// store2 is a store of the site, but the signature is store's key.
	s2, _ := f.Signer.Named("store2")
	b, _ := keys.SealEpochRecord(s2, f.Rec)
	if _, err := VerifyEpoch(f.St, cam, b); !errors.Is(err, ErrBroken) {
		t.Errorf("a record sealed with another store's key verified: %v", err)
	}

	// A segment made for another epoch record is refused with this one.
	other, err := keys.NewEpochKey(cam, f.Rec.Start, keys.DefaultEpochLength, []keys.Custodian{nodetest.Custodian(t, "dc-a"), nodetest.Custodian(t, "dc-b")})
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := keys.SealEpochRecord(f.Signer, other)
	oe, err := VerifyEpoch(f.St, cam, ob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySegment(f.St, cam, seg, oe); !errors.Is(err, ErrBroken) {
		t.Errorf("a segment opened with another epoch record: %v", err)
	}
	if _, err := VerifySegment(f.St, "praha-1/yard", seg, nil); !errors.Is(err, ErrBroken) {
		t.Errorf("a segment of another camera: %v", err)
	}
}
