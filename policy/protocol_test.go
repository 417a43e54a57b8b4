package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// EncodeCommand stamps what a command needs: nothing for the first
// protocol's kinds, the kind's protocol for newer ones, and a proposal what
// its body needs.
func TestEncodeStampsProtocol(t *testing.T) {
	plain := cmd(KindAddSite, t0)
	plain.Site = &Site{Name: "brno-1", Jurisdiction: "EU"}
	b, _ := EncodeCommand(plain)
	if bytes.Contains(b, []byte(`"protocol"`)) {
		t.Errorf("a protocol-1 command carries a stamp: %s", b)
	}
	pk := cmd(KindRequirePasskeys, t0)
	pk.PasskeyRequirement = &PasskeyRequirement{Roles: []UserRole{UserAdmin}}
	b, _ = EncodeCommand(pk)
	if kind, need := Needs(b); kind != KindRequirePasskeys || need != 2 || pk.Protocol != 2 {
		t.Errorf("passkey.require: Needs = %s %d, stamped %d; want 2", kind, need, pk.Protocol)
	}
	prop := cmd(KindPropose, t0)
	prop.Proposal = &Proposal{ID: "p1", Body: b, Expires: t0.Add(24 * time.Hour)}
	pb, _ := EncodeCommand(prop)
	if _, need := Needs(pb); need != 2 || prop.Protocol != 2 {
		t.Errorf("a proposal of passkey.require needs %d, stamped %d; want 2", need, prop.Protocol)
	}
	// A camera whose source is rtsps needs protocol 2; an rtsp one, 1.
	for src, want := range map[string]int{"rtsps://10.0.0.7/s": 2, "RTSPS://10.0.0.7/s": 2, "rtsp://10.0.0.7/s": 1} {
		c := cmd(KindAddCamera, t0)
		c.Camera = &Camera{Site: "praha-1", Name: "door", Source: src}
		b, _ := EncodeCommand(c)
		if kind, need := Needs(b); kind != KindAddCamera || need != want || (want > 1) != (c.Protocol == want) {
			t.Errorf("camera.add of %s: Needs = %s %d, stamped %d; want %d", src, kind, need, c.Protocol, want)
		}
		prop := cmd(KindPropose, t0)
		prop.Proposal = &Proposal{ID: "p2", Body: b, Expires: t0.Add(24 * time.Hour)}
		pb, _ := EncodeCommand(prop)
		if _, need := Needs(pb); need != want {
			t.Errorf("a proposal of camera.add of %s needs %d, want %d", src, need, want)
		}
	}
	// Needs reads a body with fields this release does not know.
	if kind, need := Needs([]byte(`{"kind":"camera.tilt","protocol":3,"tilt":{"deg":40}}`)); kind != "camera.tilt" || need != 3 {
		t.Errorf("Needs of a future command = %s %d", kind, need)
	}
	if _, need := Needs([]byte(`not json`)); need != 1 {
		t.Errorf("Needs of garbage = %d, want 1 (then refused as malformed)", need)
	}
}

// A replica never applies, and never refuses, a command newer than its
// release: both would make its state differ from upgraded replicas'. A
// command that understates what it needs is refused everywhere alike.
func TestNewerProtocolNeitherAppliedNorRefused(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	before, _ := s.Marshal()

	future := cmd("camera.tilt", t0)
	future.Signer = "alice"
	body, _ := json.Marshal(future)
	body = bytes.Replace(body, []byte(`"kind":"camera.tilt"`), []byte(`"kind":"camera.tilt","protocol":99`), 1)
	env := alice.signBody(t, body, t0)
	for _, op := range []func(Envelope) (*Command, error){s.Check, s.Apply} {
		_, err := op(env)
		var ne *NewerError
		if !errors.Is(err, ErrNewerProtocol) || errors.Is(err, ErrRefused) || !errors.As(err, &ne) || ne.Need != 99 {
			t.Fatalf("a protocol-99 command: %v; want ErrNewerProtocol, not a refusal", err)
		}
		if !strings.Contains(err.Error(), "upgrade custos") {
			t.Errorf("the error does not say what to do: %v", err)
		}
	}
	if after, _ := s.Marshal(); !bytes.Equal(before, after) {
		t.Fatal("a newer command changed the state")
	}

	// passkey.require without its stamp: refused by every replica alike
	// (in a protocol-1 build it is newer, and Needs says so by its kind).
	req := cmd(KindRequirePasskeys, t0)
	req.PasskeyRequirement = &PasskeyRequirement{Roles: []UserRole{UserAdmin}}
	req.Signer = "alice"
	body, _ = json.Marshal(req)
	env = alice.signBody(t, body, t0)
	if Protocol < 2 {
		if _, err := s.Apply(env); !errors.Is(err, ErrNewerProtocol) {
			t.Fatalf("protocol-1 build, passkey.require: %v; want ErrNewerProtocol", err)
		}
		return
	}
	refused(t, s, env, "declares protocol 1; a passkey.require command needs 2")
	// Overstated: refused too (the stamp is exact).
	site := cmd(KindAddSite, t0)
	site.Site, site.Protocol, site.Signer = &Site{Name: "brno-1", Jurisdiction: "EU"}, 2, "alice"
	body, _ = json.Marshal(site)
	refused(t, s, alice.signBody(t, body, t0), "declares protocol 2; a site.add command needs 1")
}

// signBody signs body as it is (sign would re-encode, and stamp, it).
func (u *testUser) signBody(t fataler, body []byte, at time.Time) Envelope {
	t.Helper()
	var sig bytes.Buffer
	cfg := &packet.Config{Time: func() time.Time { return at }}
	if err := openpgp.DetachSign(&sig, []*openpgp.Entity{u.entity}, bytes.NewReader(SignedBytes(testFederation, body)), cfg); err != nil {
		t.Fatal(err)
	}
	return Envelope{Body: body, Sig: sig.Bytes()}
}

// A command claiming a newer protocol stops a replica only once its
// signature verifies with a key the policy holds; unsigned or forged, it
// is refused like any bad command (a protocol-1 build reads an unstamped
// passkey.require as newer, and refuses it too when nobody signed it).
func TestNewerProtocolMustBeSigned(t *testing.T) {
	alice, mallory := newTestUser(t, "alice"), newTestUser(t, "mallory")
	s := founded(t, alice)
	future := cmd("camera.tilt", t0)
	future.Signer = "alice"
	body, _ := json.Marshal(future)
	body = bytes.Replace(body, []byte(`"kind":"camera.tilt"`), []byte(`"kind":"camera.tilt","protocol":99`), 1)
	refused(t, s, Envelope{Body: body}, "no signature")
	refused(t, s, mallory.signBody(t, body, t0), "signature")

	req := cmd(KindRequirePasskeys, t0)
	req.PasskeyRequirement = &PasskeyRequirement{Roles: []UserRole{UserAdmin}}
	req.Signer = "alice"
	body, _ = json.Marshal(req)
	if Protocol < 2 {
		refused(t, s, Envelope{Body: body}, "no signature")
	}
}
