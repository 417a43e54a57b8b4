package keys

import (
	"crypto/ed25519"
	"testing"
)

// A statement signed with the node key verifies as Ed25519 against the
// key's Edwards form, and a statement shaped like a custody seal is refused.
func TestSignStatement(t *testing.T) {
	s, _ := mustSigner(t, "dc-a")
	msg := []byte("custos/policy/v2\x00fed\x00{}")
	sig, err := s.SignStatement(msg)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := edwardsOf(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(ed, msg, sig) {
		t.Fatal("statement signature does not verify")
	}
	for _, c := range []string{epochSealContext, segmentSealContext, erasureContext} {
		if _, err := s.SignStatement(append([]byte(c), 1, 2, 3)); err == nil {
			t.Errorf("signed a statement in context %q", c)
		}
	}
	s.Zero()
	if _, err := s.SignStatement(msg); err == nil {
		t.Error("a zeroed signer signed")
	}
}
