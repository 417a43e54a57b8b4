package join

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

func FuzzDecodeToken(f *testing.F) {
	f.Add("custos1.eyJ2IjoxfQ.AAAA")
	f.Add("custos1..")
	f.Add("")
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s, now)
		if err == nil && (tok == nil || len(tok.Secret) != 32 || len(tok.Datacenters) == 0) {
			t.Fatalf("accepted an incomplete token %q", s)
		}
	})
}

// Every peer a token names, datacenter or other voter, must have a node key
// and a usable endpoint: a joining node admits them before it has a policy.
func TestDecodeTokenChecksPeers(t *testing.T) {
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	priv := keys.NewNodePrivate()
	key := priv.Public().String()
	priv.Zero()
	now := time.Now()
	mk := func(voters ...TokenPeer) string {
		tok := &Token{Version: 1, Anchor: policy.Anchor{Federation: "acme", AdminFP: admin.Fingerprint(), NodeKey: key}, Invite: "inv-1",
			Secret: make([]byte, 32), Role: "store", Name: "store-1", Expires: now.Add(time.Hour),
			Datacenters: []TokenPeer{{Name: "dc-a", PublicKey: key, Endpoint: "192.0.2.1:51820"}}, Voters: voters, AdminKey: admin.PublicKey()}
		s, err := EncodeToken(tok, func(msg []byte) ([]byte, error) { return admin.Sign(msg, now) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok, err := DecodeToken(mk(TokenPeer{Name: "witness", PublicKey: key, Endpoint: "192.0.2.2:51820"}), now)
	if err != nil || len(tok.Voters) != 1 || tok.Voters[0].Name != "witness" {
		t.Fatalf("a token naming a witness: %+v %v", tok, err)
	}
	for _, bad := range []struct {
		peer TokenPeer
		want string
	}{
		{TokenPeer{Name: "witness", PublicKey: "nodekey:zz", Endpoint: "192.0.2.2:51820"}, `voter "witness"`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "0.0.0.0:51820"}, `voter "witness": endpoint`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "192.0.2.2:0"}, `voter "witness": endpoint`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "witness.example"}, `voter "witness": endpoint`},
	} {
		if _, err := DecodeToken(mk(bad.peer), now); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("voter %+v: %v, want an error naming %s", bad.peer, err, bad.want)
		}
	}
}

// withUnhashedSubpacket rewrites a v4 signature packet (new-format header,
// one-octet length) with an issuer subpacket in its unhashed area, which
// go-crypto reads but does not verify.
func withUnhashedSubpacket(t testing.TB, sig []byte) []byte {
	t.Helper()
	p, err := packet.Read(bytes.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	keyID := *p.(*packet.Signature).IssuerKeyId
	if sig[0] != 0xc2 || sig[1] >= 192 {
		t.Fatal("test helper handles one-octet lengths only")
	}
	body := sig[2:]
	u := 6 + (int(body[4])<<8 | int(body[5]))
	sub := binary.BigEndian.AppendUint64([]byte{9, 16}, keyID)
	nb := append(bytes.Clone(body[:u]), 0, byte(len(sub)))
	nb = append(append(nb, sub...), body[u+2:]...)
	return append([]byte{0xc2, byte(len(nb))}, nb...)
}

// Token signatures are checked strictly: one binary-mode packet, hashed
// subpackets only, not dated in the future.
func TestDecodeTokenStrictSignature(t *testing.T) {
	now := time.Now()
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	priv := keys.NewNodePrivate()
	key := priv.Public().String()
	priv.Zero()
	tok := &Token{Version: 1, Anchor: policy.Anchor{Federation: "acme", AdminFP: admin.Fingerprint(), NodeKey: key}, Invite: "inv-1",
		Secret: make([]byte, 32), Role: "store", Name: "store-1", Expires: now.Add(time.Hour),
		Datacenters: []TokenPeer{{Name: "dc-a", PublicKey: key, Endpoint: "192.0.2.1:51820"}}, AdminKey: admin.PublicKey()}
	enc := func(tok *Token, sign func([]byte) ([]byte, error)) string {
		s, err := EncodeToken(tok, sign)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	withSig := func(s string, sig []byte) string {
		body, _, _ := strings.Cut(strings.TrimPrefix(s, TokenPrefix), ".")
		return TokenPrefix + body + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	sigOf := func(s string) []byte {
		_, b64, _ := strings.Cut(strings.TrimPrefix(s, TokenPrefix), ".")
		b, _ := base64.RawURLEncoding.DecodeString(b64)
		return b
	}
	good := enc(tok, func(m []byte) ([]byte, error) { return admin.Sign(m, now) })
	if _, err := DecodeToken(good, now); err != nil {
		t.Fatal(err)
	}
	// A clock a little ahead of the joiner's is no reason to refuse.
	if _, err := DecodeToken(enc(tok, func(m []byte) ([]byte, error) { return admin.Sign(m, now.Add(time.Minute)) }), now); err != nil {
		t.Fatalf("a token signed a minute ahead: %v", err)
	}

	// A text-mode signature, by a key made with go-crypto directly
	// (custos never makes one).
	e, err := openpgp.NewEntity("eve", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return now.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	e.Serialize(&pub)
	textTok := *tok
	textTok.AdminKey = pub.Bytes()
	text := enc(&textTok, func(m []byte) ([]byte, error) {
		var sig bytes.Buffer
		err := openpgp.DetachSignWithParams(&sig, []*openpgp.Entity{e}, bytes.NewReader(m),
			&openpgp.SignParams{TextSig: true, Config: &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return now }}})
		return sig.Bytes(), err
	})
	if _, err := keys.VerifyAdminSignature(textTok.AdminKey, append([]byte("custos/token/v1\x00"), mustBody(t, text)...), sigOf(text)); err != nil {
		t.Fatalf("go-crypto refuses the text-mode signature already (%v): the case tests nothing", err)
	}

	sig := sigOf(good)
	for name, bad := range map[string]struct {
		token, want string
	}{
		"text mode":           {text, "one binary signature"},
		"two packets":         {withSig(good, append(bytes.Clone(sig), sig...)), "one binary signature"},
		"unhashed subpackets": {withSig(good, withUnhashedSubpacket(t, sig)), "one binary signature"},
		"in the future":       {enc(tok, func(m []byte) ([]byte, error) { return admin.Sign(m, now.Add(time.Hour)) }), "dated in the future"},
	} {
		if _, err := DecodeToken(bad.token, now); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, bad.want)
		}
	}
}

func mustBody(t testing.TB, s string) []byte {
	t.Helper()
	b64, _, _ := strings.Cut(strings.TrimPrefix(s, TokenPrefix), ".")
	b, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
