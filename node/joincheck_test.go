package node

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// TestJoinTokenSignerCheckedAgainstPolicy: a token whose signature verifies
// against the key it carries, but whose key is no admin of the federation,
// is refused once the joining node holds the policy: the node undoes its
// join and stops, and its directory then refuses to start.
func TestJoinTokenSignerCheckedAgainstPolicy(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	mallory, err := keys.NewAdminKey("mallory", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()

	// A real invite by alice, its token re-signed by mallory (who holds a
	// copy of it and wants the node to trust what she puts in it).
	now := time.Now()
	inv, err := MakeInvite(ctx, f.dc.cfg.Dir, f.admin, "alice", InviteSpec{Role: policy.RoleStore, Name: "store-praha-1", Site: "praha-1", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	good, err := DecodeToken(inv.Token, now)
	if err != nil {
		t.Fatal(err)
	}
	if good.Signer() != f.admin.Fingerprint() {
		t.Fatalf("the token's signer is %s, want alice's key %s", good.Signer(), f.admin.Fingerprint())
	}
	forged := *good
	forged.AdminKey = mallory.PublicKey()
	s, err := EncodeToken(&forged, func(msg []byte) ([]byte, error) { return mallory.Sign(msg, now) })
	if err != nil {
		t.Fatal(err)
	}
	// Its signature checks out against the key it carries: that alone
	// proves nothing about who signed.
	tok, err := DecodeToken(s, now)
	if err != nil || tok.Signer() != mallory.Fingerprint() {
		t.Fatalf("a token re-signed by mallory: %v", err)
	}

	cfg := Config{Dir: filepath.Join(f.tmp, "store-praha-1"), Name: "store-praha-1", Listen: f.listen(), Logf: testLogf(t, "store")}
	res, err := PrepareJoin(ctx, cfg, tok)
	if err != nil || !res.Applied {
		t.Fatalf("join: %+v %v", res, err)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The node stops itself once its replica holds its membership.
	err = n.Run(ctx)
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "signed by key "+mallory.Fingerprint()) || !strings.Contains(err.Error(), `admin "alice"`) {
		t.Fatalf("the node ran on a token signed by a non-admin: %v (ctx: %v)", err, ctx.Err())
	}
	for _, gone := range []string{federationFile, joinFile, lastPeersFile} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the join was undone: %v", gone, err)
		}
	}
	if _, err := New(cfg); !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "empty directory") {
		t.Fatalf("restarting the refused node: %v", err)
	}
	if _, err := PrepareJoin(ctx, cfg, good); !errors.Is(err, ErrJoinRefused) {
		t.Fatalf("joining again in the refused directory: %v", err)
	}
}

// A good join records that its token's signer checked out, and does not
// check again at the next start.
func TestJoinTokenSignerCheckedOnce(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	n := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store-praha-1", Site: "praha-1"})
	waitTrue(t, 30*time.Second, "the store to check its token against the policy", func() bool {
		ji, err := readJoinInfo(n.cfg.Dir)
		return err == nil && ji != nil && ji.Checked
	})
	if err := n.Failure(); err != nil {
		t.Fatal(err)
	}
	ji, _ := readJoinInfo(n.cfg.Dir)
	if ji.Invite == "" || ji.Signer != f.admin.Fingerprint() {
		t.Fatalf("join info: %+v", ji)
	}
}

// verifyJoin decides only once the replica holds the node, and then checks
// the invite, its maker and the token's signer.
func TestVerifyJoin(t *testing.T) {
	st := &policy.State{Federation: "acme",
		Nodes:   map[string]*policy.Node{"store-1": {Name: "store-1", PublicKey: "nodekey:self", Role: policy.RoleStore}},
		Invites: map[string]*policy.Invite{"inv-1": {ID: "inv-1", Role: policy.RoleStore, Name: "store-1", CreatedBy: "alice", Spent: true}},
		Users: map[string]*policy.User{
			"alice": {Name: "alice", Role: policy.UserAdmin, Fingerprint: "aa11"},
			"bob":   {Name: "bob", Role: policy.UserApprover, Fingerprint: "bb22"},
		},
	}
	ji := func(invite, signer string) *joinInfo {
		return &joinInfo{Invite: invite, Signer: signer, Role: string(policy.RoleStore)}
	}
	if done, err := verifyJoin(&policy.State{}, "nodekey:self", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("no policy yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:other", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("the node not in the replica yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:self", ji("inv-1", "AA11")); !done || err != nil {
		t.Fatalf("the inviting admin's key: %v %v", done, err)
	}
	for want, j := range map[string]*joinInfo{
		"holds no invite":          ji("inv-2", "aa11"),
		"not by admin \"alice\"":   ji("inv-1", "bb22"),
		"this node is \"store-1\"": {Invite: "inv-1", Signer: "aa11", Role: string(policy.RoleDatacenter)},
	} {
		if done, err := verifyJoin(st, "nodekey:self", j); !done || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v %v, want an error with %q", j, done, err, want)
		}
	}
	st.Users["alice"].Revoked = true
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "aa11")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by a revoked admin: %v", err)
	}
	st.Users["alice"].Revoked = false
	st.Invites["inv-1"].CreatedBy = "bob"
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "bb22")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by an approver: %v", err)
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
	tok := &Token{Version: 1, Anchor: Anchor{Federation: "acme", AdminFP: admin.Fingerprint(), NodeKey: key}, Invite: "inv-1",
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
		body, _, _ := strings.Cut(strings.TrimPrefix(s, tokenPrefix), ".")
		return tokenPrefix + body + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	sigOf := func(s string) []byte {
		_, b64, _ := strings.Cut(strings.TrimPrefix(s, tokenPrefix), ".")
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
	b64, _, _ := strings.Cut(strings.TrimPrefix(s, tokenPrefix), ".")
	b, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
