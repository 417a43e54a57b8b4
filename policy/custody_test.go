package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/custos-cctv/custos/keys"
)

func custodianKey(t *testing.T) []byte {
	t.Helper()
	k, err := keys.NewCustodianKey("dc-b")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zero()
	return k.Custodian().PublicKey()
}

// Custodian keys belong to datacenters only and must be encryption keys;
// the recovery key rides in genesis.
func TestCustodianKeys(t *testing.T) {
	alice := newTestUser(t, "alice")
	cust, rec := custodianKey(t), custodianKey(t)
	s := &State{}
	g := cmd(KindGenesis, t0)
	g.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin), Recovery: rec,
		Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU", Custodian: cust}}
	mustApply(t, s, unsigned(t, g))
	if string(s.Recovery) != string(rec) || string(s.Nodes["dc-a"].Custodian) != string(cust) {
		t.Fatal("genesis lost the recovery or the custodian key")
	}
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "praha-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))

	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "store", PublicKey: nodeKey(2), Role: RoleStore, Site: "praha-1", Jurisdiction: "EU", Custodian: custodianKey(t)}
	refused(t, s, alice.sign(t, c), "only datacenters hold custodian keys")
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "dc-b", PublicKey: nodeKey(3), Role: RoleDatacenter, Jurisdiction: "EU", Custodian: alice.user(UserAdmin).PublicKey}
	refused(t, s, alice.sign(t, c), "custodian key is OpenPGP v4")

	s2 := &State{}
	g = cmd(KindGenesis, t0)
	g.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin), Recovery: []byte("junk"),
		Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}
	refused(t, s2, unsigned(t, g), "recovery key")
}

// A redeem's proof covers the custodian key: swapping it in transit (a
// forwarding node, say) voids the proof.
func TestRedeemBindsCustodian(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c := cmd(KindCreateInvite, t0)
	c.Invite = &Invite{ID: "inv-1", Role: RoleDatacenter, Name: "dc-b", Expires: t0.Add(time.Hour), Key: hex.EncodeToString(pub)}
	mustApply(t, s, alice.sign(t, c))
	r := &Redeem{Invite: "inv-1", PublicKey: nodeKey(9), Endpoint: "192.0.2.1:51820", Custodian: custodianKey(t)}
	r.Proof = ed25519.Sign(priv, RedeemSignedBytes(r))
	swapped := *r
	swapped.Custodian = custodianKey(t)
	c = cmd(KindRedeemInvite, t0)
	c.Redeem = &swapped
	refused(t, s, unsigned(t, c), "proof does not verify")
	c = cmd(KindRedeemInvite, t0)
	c.Redeem = r
	mustApply(t, s, unsigned(t, c))
	if string(s.Nodes["dc-b"].Custodian) != string(r.Custodian) {
		t.Fatal("the redeemed datacenter lost its custodian key")
	}
}

// Camera credentials never enter the replicated policy.
func TestCameraSource(t *testing.T) {
	alice := newTestUser(t, "alice")
	for _, tc := range []struct {
		src, refusal string
	}{
		{"rtsp://10.0.0.7:554/stream1", ""},
		{"synthetic:", ""},
		{"synthetic:?fps=10", ""},
		{"", ""},
		{"rtsp://admin:hunter2@10.0.0.7/stream1", "credentials"},
		{"rtsp://admin@10.0.0.7/stream1", "credentials"},
		{"http://10.0.0.7/video", "want rtsp, rtsps or synthetic"},
		{"rtsps://10.0.0.7/stream1", ""},
		{"rtsps:///nohost", "without a host"},
		{"rtsp:///nohost", "without a host"},
	} {
		s := founded(t, alice)
		c := cmd(KindAddCamera, t0)
		c.Camera = &Camera{Site: "praha-1", Name: "till", Purpose: "p", LegalBasis: "b", Retention: time.Hour, Source: tc.src}
		if tc.refusal == "" {
			mustApply(t, s, alice.sign(t, c))
			if got := s.Cameras["praha-1/till"].Source; got != tc.src {
				t.Errorf("source %q stored as %q", tc.src, got)
			}
			continue
		}
		refused(t, s, alice.sign(t, c), tc.refusal)
	}
}

// The policy accepts a custodian key exactly when the stores can use it
// (keys.NewCustodian): a key the policy took and the stores refused would
// stop recording on every store.
func TestCustodianKeyRulesMatchTheStores(t *testing.T) {
	serialize := func(e *openpgp.Entity) []byte {
		var b bytes.Buffer
		if err := e.Serialize(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	v6 := func(mode packet.AEADMode) *openpgp.Entity {
		e, err := openpgp.NewEntity("dc-x", "", "", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519,
			AEADConfig: &packet.AEADConfig{DefaultMode: mode}, DefaultCipher: packet.CipherAES256})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	twoSubkeys := v6(packet.AEADModeGCM)
	if err := twoSubkeys.AddEncryptionSubkey(&packet.Config{V6Keys: true}); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"a custodian key":            custodianKey(t),
		"v6, prefers OCB":            serialize(v6(packet.AEADModeOCB)),
		"v6, prefers GCM":            serialize(v6(packet.AEADModeGCM)),
		"v6, two encryption subkeys": serialize(twoSubkeys),
		"an admin's v4 key":          newTestUser(t, "alice").pub,
		"junk":                       []byte("junk"),
	}
	refusedByStores := 0
	for name, pub := range cases {
		perr := checkCustodianKey(pub)
		_, kerr := keys.NewCustodian("dc-x", pub)
		if (perr == nil) != (kerr == nil) {
			t.Errorf("%s: the policy says %v, the stores say %v", name, perr, kerr)
		}
		if kerr != nil {
			refusedByStores++
		}
	}
	if refusedByStores < 4 || checkCustodianKey(cases["a custodian key"]) != nil {
		t.Fatalf("the cases do not probe the rules (%d refused)", refusedByStores)
	}
}
