package keys

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// withUnhashedIssuer rewrites a v4 signature packet (new-format header,
// one- or two-octet length) with an issuer subpacket in its unhashed area.
// go-crypto still verifies it: the unhashed area is not signed.
func withUnhashedIssuer(t testing.TB, sig []byte, keyID uint64) []byte {
	t.Helper()
	hdr := 2
	if sig[1] >= 192 {
		hdr = 3
	}
	body := sig[hdr:]
	n := int(body[4])<<8 | int(body[5])
	unhashed := 6 + n
	if body[unhashed] != 0 || body[unhashed+1] != 0 {
		t.Fatal("the signature already has unhashed subpackets")
	}
	sub := binary.BigEndian.AppendUint64([]byte{9, 16}, keyID) // issuer key ID
	nb := append(bytes.Clone(body[:unhashed]), 0, byte(len(sub)))
	nb = append(nb, sub...)
	nb = append(nb, body[unhashed+2:]...)
	if len(nb) >= 192 {
		t.Fatalf("test helper handles one-octet lengths only (%d)", len(nb))
	}
	return append([]byte{0xc2, byte(len(nb))}, nb...)
}

func TestVerifyAdminSignatureStrict(t *testing.T) {
	now := time.Now()
	k, err := NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	msg := []byte("custos/test/v1\x00a message without line endings")
	sig, err := k.Sign(msg, now)
	if err != nil {
		t.Fatal(err)
	}
	fp, at, err := VerifyAdminSignatureStrict(k.PublicKey(), msg, sig, now, time.Minute)
	if err != nil || fp != k.Fingerprint() || !at.Equal(now.Truncate(time.Second)) {
		t.Fatalf("a good signature: %q %v %v", fp, at, err)
	}

	var text bytes.Buffer
	if err := openpgp.DetachSignWithParams(&text, []*openpgp.Entity{k.entity}, bytes.NewReader(msg),
		&openpgp.SignParams{TextSig: true, Config: &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return now }}}); err != nil {
		t.Fatal(err)
	}
	unhashed := withUnhashedIssuer(t, sig, k.entity.PrimaryKey.KeyId)
	future, _ := k.Sign(msg, now.Add(10*time.Minute))
	// Within the skew, a signature from a clock slightly ahead is taken.
	ahead, _ := k.Sign(msg, now.Add(30*time.Second))
	if _, _, err := VerifyAdminSignatureStrict(k.PublicKey(), msg, ahead, now, time.Minute); err != nil {
		t.Fatalf("a signature 30 s ahead, with a minute of skew: %v", err)
	}
	other, _ := NewAdminKey("mallory", now.Add(-time.Hour))
	defer other.Close()
	forged, _ := other.Sign(msg, now)
	for name, bad := range map[string]struct {
		sig  []byte
		want string
	}{
		"text mode":           {text.Bytes(), "signature not in the form"},
		"two packets":         {append(bytes.Clone(sig), sig...), "signature not in the form"},
		"unhashed subpackets": {unhashed, "signature not in the form"},
		"in the future":       {future, "later than now"},
		"another key":         {forged, "bad signature"},
		"empty":               {nil, "signature not in the form"},
	} {
		// What go-crypto alone says: each reshaped form still verifies.
		if name == "text mode" || name == "unhashed subpackets" {
			if _, err := VerifyAdminSignature(k.PublicKey(), msg, bad.sig); err != nil {
				t.Errorf("%s: go-crypto refuses it already (%v): the case tests nothing", name, err)
			}
		}
		_, _, err := VerifyAdminSignatureStrict(k.PublicKey(), msg, bad.sig, now, time.Minute)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, bad.want)
		}
		if strings.Contains(bad.want, "form") && !errors.Is(err, ErrSignatureForm) {
			t.Errorf("%s: %v does not wrap ErrSignatureForm", name, err)
		}
	}
}
