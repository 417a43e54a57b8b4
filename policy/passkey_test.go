package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// authenticator is a virtual WebAuthn authenticator, as a browser's test
// harness has one: a credential (ES256, or EdDSA when ed is set) and its
// signature counter.
type authenticator struct {
	key     *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	id      []byte
	rpID    string
	counter uint32
}

func newAuthenticator(t fataler, rpID string) *authenticator {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &authenticator{key: k, id: id, rpID: rpID}
}

func newEdAuthenticator(t fataler, rpID string) *authenticator {
	t.Helper()
	a := newAuthenticator(t, rpID)
	_, a.ed, _ = ed25519.GenerateKey(rand.Reader)
	return a
}

// cose is the credential's public key as the authenticator writes it: a
// COSE_Key in CTAP2 canonical CBOR.
func (a *authenticator) cose(t fataler) []byte {
	t.Helper()
	var k coseKey
	if a.ed != nil {
		k = coseKey{Kty: 1, Alg: AlgEdDSA, Crv: 6, X: a.ed.Public().(ed25519.PublicKey)}
	} else {
		pub, err := a.key.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		k = coseKey{Kty: 2, Alg: AlgES256, Crv: 1, X: pub[1:33], Y: pub[33:]}
	}
	b, err := coseEncMode.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (a *authenticator) passkey(t fataler, name string) *Passkey {
	alg := AlgES256
	if a.ed != nil {
		alg = AlgEdDSA
	}
	return &Passkey{ID: bytes.Clone(a.id), PublicKey: a.cose(t), Alg: alg, RPID: a.rpID, Name: name}
}

// gesture is how an assertion is made; the zero value makes a good one.
type gesture struct {
	origin string // default http://localhost:8443, or https://RPID
	rpID   string // hashed into the authenticator data; default the authenticator's
	flags  byte   // default UP and UV
	typ    string // default webauthn.get
	// forCmd, if set, changes the command whose challenge is signed.
	forCmd func(*Command)
	// tamper, if set, changes the assertion after it was made.
	tamper func(*Assertion)
}

// assert makes an assertion over challenge, as g says.
func (a *authenticator) assert(t fataler, challenge []byte, g gesture) *Assertion {
	t.Helper()
	if g.origin == "" {
		g.origin = "http://localhost:8443"
		if a.rpID != "localhost" {
			g.origin = "https://" + a.rpID
		}
	}
	if g.rpID == "" {
		g.rpID = a.rpID
	}
	if g.flags == 0 {
		g.flags = flagUP | flagUV
	}
	if g.typ == "" {
		g.typ = "webauthn.get"
	}
	cd := fmt.Appendf(nil, `{"type":%q,"challenge":%q,"origin":%q,"crossOrigin":false}`,
		g.typ, base64.RawURLEncoding.EncodeToString(challenge), g.origin)
	a.counter++
	rp := sha256.Sum256([]byte(g.rpID))
	ad := binary.BigEndian.AppendUint32(append(rp[:], g.flags), a.counter)
	cdh := sha256.Sum256(cd)
	signed := append(bytes.Clone(ad), cdh[:]...)
	var sig []byte
	if a.ed != nil {
		sig = ed25519.Sign(a.ed, signed)
	} else {
		d := sha256.Sum256(signed)
		var err error
		if sig, err = ecdsa.SignASN1(rand.Reader, a.key, d[:]); err != nil {
			t.Fatal(err)
		}
	}
	as := &Assertion{Credential: bytes.Clone(a.id), AuthenticatorData: ad, ClientDataJSON: cd, Signature: sig}
	if g.tamper != nil {
		g.tamper(as)
	}
	return as
}

// passkeyFed is a reqFed whose admins and approvers each enrolled a passkey
// through the quorum (carol's is Ed25519), and, if required, whose roles
// admin and approver approve with it.
type passkeyFed struct {
	*reqFed
	auth map[string]*authenticator
}

func newPasskeyFed(t *testing.T, require bool) *passkeyFed {
	t.Helper()
	f := &passkeyFed{reqFed: newReqFed(t), auth: map[string]*authenticator{}}
	for _, e := range []struct {
		user, proposer string
		approvers      []string
	}{
		{"alice", "frank", []string{"bob", "carol"}},
		{"frank", "alice", []string{"bob", "carol"}},
		{"bob", "alice", []string{"frank", "carol"}},
		{"carol", "alice", []string{"frank", "bob"}},
	} {
		f.auth[e.user] = newAuthenticator(t, "localhost")
		if e.user == "carol" {
			f.auth[e.user] = newEdAuthenticator(t, "localhost")
		}
		c := cmd(KindAddPasskey, tc)
		c.PasskeyChange = &PasskeyChange{User: e.user, Passkey: f.auth[e.user].passkey(t, e.user+"'s key")}
		f.govern(t, e.proposer, e.approvers, c, tc)
	}
	if require {
		c := cmd(KindRequirePasskeys, tc)
		c.PasskeyRequirement = &PasskeyRequirement{Roles: []UserRole{UserApprover, UserAdmin}}
		f.govern(t, "alice", []string{"bob", "carol"}, c, tc)
		if !f.s.PasskeyRequired(UserAdmin) || !f.s.PasskeyRequired(UserApprover) {
			t.Fatalf("passkeys required of %v", f.s.PasskeyRoles)
		}
	}
	return f
}

// approval signs by's approval (kind request.approve or proposal.approve)
// of id with digest, carrying an assertion auth makes as g says (none if
// auth is nil).
func (f *passkeyFed) approval(t *testing.T, kind, by string, auth *authenticator, id, digest string, g gesture) Envelope {
	t.Helper()
	c := cmd(kind, tc)
	c.Signer = by
	c.Approval = &Approval{Request: id, Digest: digest}
	target := *c
	ta := *c.Approval
	target.Approval = &ta
	if g.forCmd != nil {
		g.forCmd(&target)
	}
	if auth != nil {
		c.Approval.Assertion = auth.assert(t, ApprovalChallenge(f.s.FederationID, &target), g)
	}
	return f.users[by].sign(t, c)
}

// An approval counts only with a user-verified assertion of the approver's
// own passkey, made for exactly that approval command; every other is
// refused with its reason, and the state stays as it was.
func TestApproveWithPasskey(t *testing.T) {
	f := newPasskeyFed(t, true)
	// A governance change approved with passkeys goes into the ledger.
	c, u := cmd(KindAddUser, tc), newTestUser(t, "gina").user(UserApprover)
	c.User = &u
	env, id := f.proposal(t, "alice", c, tc)
	mustApply(t, f.s, env)
	for _, by := range []string{"bob", "carol"} {
		mustApply(t, f.s, f.approval(t, KindApproveProposal, by, f.auth[by], id, f.digest(id), gesture{}))
	}
	if f.s.Users["gina"] == nil || f.s.Proposals[id].Approvals[0].Passkey == "" {
		t.Fatal("the quorum's passkey approvals did not add gina")
	}
	if slices.Contains(f.s.Approvers(tc), "gina") {
		t.Fatal("gina, an approver without a passkey, counts as one who can approve")
	}
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	digest := RequestDigest(f.s.FederationID, f.s.Requests["r1"])
	bob := f.auth["bob"]
	approve := func(auth *authenticator, g gesture) Envelope {
		return f.approval(t, KindApproveRequest, "bob", auth, "r1", digest, g)
	}
	for _, c := range []struct {
		name string
		env  Envelope
		want string
	}{
		{"no assertion (a stolen key file)", f.approve(t, "bob", "r1", digest, tc), "role approver approves with a passkey: use the console (custos console)"},
		{"made for another request", approve(bob, gesture{forCmd: func(c *Command) { c.Approval.Request = "r2" }}), "made for another command"},
		{"made for another digest", approve(bob, gesture{forCmd: func(c *Command) { c.Approval.Digest = strings.Repeat("0", 64) }}), "made for another command"},
		{"made for another command ID", approve(bob, gesture{forCmd: func(c *Command) { c.ID = "c-other" }}), "made for another command"},
		{"made for another time", approve(bob, gesture{forCmd: func(c *Command) { c.Time = c.Time.Add(time.Second) }}), "made for another command"},
		{"made for another signer", approve(bob, gesture{forCmd: func(c *Command) { c.Signer = "carol" }}), "made for another command"},
		{"made for a proposal approval", approve(bob, gesture{forCmd: func(c *Command) { c.Kind = KindApproveProposal }}), "made for another command"},
		{"wrong origin", approve(bob, gesture{origin: "https://evil.example"}), "origin"},
		{"look-alike origin", approve(bob, gesture{origin: "http://localhost.evil.example:8443"}), "origin"},
		{"origin without a port", approve(bob, gesture{origin: "http://localhost"}), "origin"},
		{"wrong RP ID hash", approve(bob, gesture{rpID: "evil.example"}), "rpIdHash"},
		{"UP missing", approve(bob, gesture{flags: flagUV}), "flag UP"},
		{"UV missing", approve(bob, gesture{flags: flagUP}), "flag UV"},
		{"a registration's type", approve(bob, gesture{typ: "webauthn.create"}), "not webauthn.get"},
		{"another user's credential", approve(f.auth["carol"], gesture{}), `made with a passkey of "carol", not of "bob"`},
		{"unknown credential", approve(newAuthenticator(t, "localhost"), gesture{}), "not enrolled"},
		{"tampered signature", approve(bob, gesture{tamper: func(a *Assertion) { a.Signature[len(a.Signature)-1] ^= 1 }}), "does not verify"},
		{"tampered clientDataJSON", approve(bob, gesture{tamper: func(a *Assertion) { a.ClientDataJSON = append(a.ClientDataJSON, ' ') }}), "does not verify"},
		{"tampered authenticator data", approve(bob, gesture{tamper: func(a *Assertion) { a.AuthenticatorData[36] ^= 1 }}), "does not verify"},
		{"UV set after signing", approve(bob, gesture{flags: flagUP, tamper: func(a *Assertion) { a.AuthenticatorData[32] |= flagUV }}), "does not verify"},
		{"clientDataJSON that does not parse", approve(bob, gesture{tamper: func(a *Assertion) { a.ClientDataJSON = []byte("{") }}), "does not parse"},
		{"short authenticator data", approve(bob, gesture{tamper: func(a *Assertion) { a.AuthenticatorData = a.AuthenticatorData[:36] }}), "authenticator data of 36 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, c.env, c.want) })
	}

	mustApply(t, f.s, approve(bob, gesture{}))
	r := f.s.Requests["r1"]
	if a := r.Approvals[0]; a.Passkey != PasskeyIDText(bob.id) || a.Assertion != nil {
		t.Fatalf("the approval records passkey %q and assertion %v", a.Passkey, a.Assertion)
	}
	if got := f.s.Users["bob"].Passkeys[0].Counter; got != bob.counter {
		t.Fatalf("bob's passkey counter is %d, want %d", got, bob.counter)
	}
	if f.s.RequestStatus(r, tc) != RequestPending {
		t.Fatal("one approval approved the request")
	}
	carol := f.auth["carol"]
	mustApply(t, f.s, f.approval(t, KindApproveRequest, "carol", carol, "r1", digest, gesture{}))
	if _, err := f.s.ReleasableRequest("r1", tc); err != nil {
		t.Fatalf("approved with two passkeys: %v", err)
	}

	// The counter moves forward: a cloned authenticator one step behind
	// is refused.
	r2 := goodRequest()
	r2.ID = "r2"
	mustApply(t, f.s, f.create(t, "alice", r2, tc))
	d2 := RequestDigest(f.s.FederationID, f.s.Requests["r2"])
	carol.counter--
	refused(t, f.s, f.approval(t, KindApproveRequest, "carol", carol, "r2", d2, gesture{}), "not above the last one seen")
	mustApply(t, f.s, f.approval(t, KindApproveRequest, "carol", carol, "r2", d2, gesture{}))

	// A verifier trusting no node proves the release from the ledger, the
	// passkeys in it and the assertions in the evidence; bob's approval
	// re-signed without its assertion (a stolen key file) does not count.
	v, err := VerifyRelease(f.s.FederationID, f.s.Ledger, r, tc)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Users["bob"].Passkeys) != 1 || !v.PasskeyRequired(UserApprover) {
		t.Fatal("the replayed ledger lacks the passkeys or the requirement")
	}
	forged := cloneRequest(*r)
	b, _ := DecodeCommand(forged.Evidence[0].Body)
	b.Approval.Assertion = nil
	forged.Evidence[0] = f.users["bob"].sign(t, b)
	if _, err := VerifyRelease(f.s.FederationID, f.s.Ledger, &forged, tc); err == nil || !strings.Contains(err.Error(), "1 valid approvals") {
		t.Fatalf("a release with an approval without its passkey: %v", err)
	}
}

// Governance approvals carry passkeys too; one admin cannot drop the
// requirement, nor take the last passkey of an approver, alone; removing a
// passkey withdraws what it approved.
func TestGovernanceWithPasskeys(t *testing.T) {
	f := newPasskeyFed(t, true)
	drop := cmd(KindRequirePasskeys, tc)
	drop.PasskeyRequirement = &PasskeyRequirement{}
	refused(t, f.s, f.users["alice"].sign(t, drop), "needs the quorum's approval")
	env, id := f.proposal(t, "alice", drop, tc)
	mustApply(t, f.s, env)
	refused(t, f.s, f.approveProposal(t, "bob", id, f.digest(id), tc), "role approver approves with a passkey")
	mustApply(t, f.s, f.approval(t, KindApproveProposal, "bob", f.auth["bob"], id, f.digest(id), gesture{}))
	refused(t, f.s, f.approval(t, KindApproveProposal, "frank", f.auth["frank"], id, f.digest(id),
		gesture{forCmd: func(c *Command) { c.Approval.Request = "p-other" }}), "made for another command")
	if !f.s.PasskeyRequired(UserApprover) {
		t.Fatal("one approval dropped the requirement")
	}

	// bob's only passkey: removing it is governance while it is required.
	rm := NewPasskeyRemoval("bob", f.auth["bob"].id)
	rm.ID, rm.Time = cmd("", tc).ID, tc
	if !f.s.IsGovernance(rm) {
		t.Fatal("removing an approver's last passkey is not governance")
	}
	refused(t, f.s, f.users["bob"].sign(t, rm), "needs the quorum's approval")
	refused(t, f.s, f.users["alice"].sign(t, rm), "needs the quorum's approval")

	// A second passkey for bob goes through the quorum, approved with
	// passkeys; then the quorum removes the first (bob alone cannot: that
	// withdraws his approvals, which his stolen key file must not do), and
	// his approval made with it stops counting.
	// byQuorum has proposer propose c, and frank and carol approve it
	// with their passkeys.
	byQuorum := func(proposer string, c *Command) {
		t.Helper()
		refused(t, f.s, f.users[proposer].sign(t, c), "needs the quorum's approval")
		env, id := f.proposal(t, proposer, c, tc)
		mustApply(t, f.s, env)
		for _, by := range []string{"frank", "carol"} {
			mustApply(t, f.s, f.approval(t, KindApproveProposal, by, f.auth[by], id, f.digest(id), gesture{}))
		}
	}
	second := newAuthenticator(t, "localhost")
	add := cmd(KindAddPasskey, tc)
	add.PasskeyChange = &PasskeyChange{User: "bob", Passkey: second.passkey(t, "bob's spare")}
	refused(t, f.s, f.users["bob"].sign(t, add), "needs the quorum's approval")
	byQuorum("alice", add)
	if len(f.s.Users["bob"].Passkeys) != 2 {
		t.Fatal("the quorum did not enrol bob's second passkey")
	}
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	digest := RequestDigest(f.s.FederationID, f.s.Requests["r1"])
	mustApply(t, f.s, f.approval(t, KindApproveRequest, "bob", f.auth["bob"], "r1", digest, gesture{}))
	rm = NewPasskeyRemoval("bob", f.auth["bob"].id)
	rm.ID, rm.Time = cmd("", tc).ID, tc
	byQuorum("bob", rm)
	if len(f.s.Users["bob"].Passkeys) != 1 {
		t.Fatal("the quorum did not remove bob's first passkey")
	}
	mustApply(t, f.s, f.approval(t, KindApproveRequest, "carol", f.auth["carol"], "r1", digest, gesture{}))
	if st := f.s.RequestStatus(f.s.Requests["r1"], tc); st != RequestPending {
		t.Fatalf("an approval made with a removed passkey still counts: %s", st)
	}
	if f.s.CountApprovals(f.s.Requests["r1"].Approvals, tc, "alice") != 1 {
		t.Fatal("carol's approval does not count")
	}
	// His remaining passkey approves; the removed one no longer does.
	r2 := goodRequest()
	r2.ID = "r2"
	mustApply(t, f.s, f.create(t, "alice", r2, tc))
	d2 := RequestDigest(f.s.FederationID, f.s.Requests["r2"])
	refused(t, f.s, f.approval(t, KindApproveRequest, "bob", f.auth["bob"], "r2", d2, gesture{}), "not enrolled")
	mustApply(t, f.s, f.approval(t, KindApproveRequest, "bob", second, "r2", d2, gesture{}))
}

// passkey.require is refused while it would lock the quorum out, and names
// only roles that approve.
func TestPasskeyRequirementLockOut(t *testing.T) {
	f := newReqFed(t)
	req := func(roles ...UserRole) *Command {
		c := cmd(KindRequirePasskeys, tc)
		c.PasskeyRequirement = &PasskeyRequirement{Roles: roles}
		return c
	}
	env, _ := f.proposal(t, "alice", req(UserApprover), tc)
	refused(t, f.s, env, "enrol their passkeys first")
	env, _ = f.proposal(t, "alice", req(UserViewer), tc)
	refused(t, f.s, env, "never approves")
	env, _ = f.proposal(t, "alice", req(UserAdmin, UserAdmin), tc)
	refused(t, f.s, env, "named twice")

	// With passkeys enrolled but no requirement, approvals need none, and
	// an assertion present is still verified.
	p := newPasskeyFed(t, false)
	mustApply(t, p.s, p.create(t, "alice", goodRequest(), tc))
	digest := RequestDigest(p.s.FederationID, p.s.Requests["r1"])
	refused(t, p.s, p.approval(t, KindApproveRequest, "bob", p.auth["bob"], "r1", digest,
		gesture{tamper: func(a *Assertion) { a.Signature[len(a.Signature)-1] ^= 1 }}), "does not verify")
	refused(t, p.s, p.approval(t, KindApproveRequest, "bob", p.auth["carol"], "r1", digest, gesture{}), `passkey of "carol"`)
	mustApply(t, p.s, p.approve(t, "bob", "r1", digest, tc))
	if err := p.s.ApprovalNeedsPasskey("bob"); err != nil {
		t.Fatal(err)
	}
}

// Enrolment: by the user or an admin, never another role; an admin's or
// approver's passkey only through the quorum once sealed; strict COSE keys
// and bounds.
func TestPasskeyEnrolment(t *testing.T) {
	f := newReqFed(t)
	add := func(by, user string, p *Passkey) Envelope {
		c := cmd(KindAddPasskey, tc)
		c.PasskeyChange = &PasskeyChange{User: user, Passkey: p}
		return f.users[by].sign(t, c)
	}
	dave := newAuthenticator(t, "localhost")
	mustApply(t, f.s, add("dave", "dave", dave.passkey(t, "dave's phone")))
	if k := f.s.Users["dave"].Passkeys[0]; !k.Added.Equal(tc) || k.AddedBy != "dave" {
		t.Fatalf("enrolled %+v", k)
	}
	refused(t, f.s, add("dave", "alice", newAuthenticator(t, "localhost").passkey(t, "x")), "enrolled or removed by that user or by role admin")
	refused(t, f.s, add("erin", "dave", newAuthenticator(t, "localhost").passkey(t, "x")), "enrolled or removed by that user or by role admin")
	refused(t, f.s, add("bob", "bob", newAuthenticator(t, "localhost").passkey(t, "thief's")), "needs the quorum's approval")
	refused(t, f.s, add("alice", "bob", newAuthenticator(t, "localhost").passkey(t, "x")), "needs the quorum's approval")
	mustApply(t, f.s, add("alice", "dave", newEdAuthenticator(t, "localhost").passkey(t, "dave's key")))

	good := newAuthenticator(t, "localhost")
	x, y := make([]byte, 32), make([]byte, 32)
	rand.Read(x)
	rand.Read(y)
	cose := func(k any) []byte {
		b, err := coseEncMode.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := good.cose(t)
	pub, _ := good.key.PublicKey.Bytes()
	for _, c := range []struct {
		name string
		edit func(*Passkey)
		want string
	}{
		{"garbage", func(p *Passkey) { p.PublicKey = []byte{0xff} }, "COSE key does not parse"},
		{"empty key", func(p *Passkey) { p.PublicKey = nil }, "COSE key of 0 bytes"},
		{"off the curve", func(p *Passkey) { p.PublicKey = cose(coseKey{Kty: 2, Alg: AlgES256, Crv: 1, X: x, Y: y}) }, "not a P-256 point"},
		{"P-384", func(p *Passkey) {
			p.PublicKey = cose(coseKey{Kty: 2, Alg: AlgES256, Crv: 2, X: pub[1:33], Y: pub[33:]})
		}, "crv 2"},
		{"RSA", func(p *Passkey) { p.Alg = -257 }, "algorithm -257"},
		{"alg mismatch", func(p *Passkey) { p.Alg = AlgEdDSA }, "has alg -7, but the passkey says -8"},
		{"extra key", func(p *Passkey) {
			p.PublicKey = cose(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:], 2: []byte("kid")})
		}, "COSE key"},
		{"x as text", func(p *Passkey) {
			p.PublicKey = cose(map[int]any{1: 2, 3: -7, -1: 1, -2: strings.Repeat("x", 32), -3: pub[33:]})
		}, "COSE key"},
		{"duplicate key", func(p *Passkey) {
			p.PublicKey = append([]byte{valid[0] + 1}, append(bytes.Clone(valid[1:]), 0x01, 0x02)...)
		}, "COSE key does not parse"},
		{"indefinite length", func(p *Passkey) { p.PublicKey = append(append([]byte{0xbf}, valid[1:]...), 0xff) }, "COSE key does not parse"},
		{"trailing byte", func(p *Passkey) { p.PublicKey = append(bytes.Clone(valid), 0) }, "COSE key does not parse"},
		{"short x", func(p *Passkey) {
			p.PublicKey = cose(coseKey{Kty: 2, Alg: AlgES256, Crv: 1, X: pub[1:32], Y: pub[33:]})
		}, "32 bytes"},
		{"no credential ID", func(p *Passkey) { p.ID = nil }, "credential ID of 0 bytes"},
		{"huge credential ID", func(p *Passkey) { p.ID = make([]byte, MaxCredentialID+1) }, "credential ID of 1024 bytes"},
		{"upper-case RP ID", func(p *Passkey) { p.RPID = "LOCALHOST" }, "RP ID"},
		{"IP RP ID", func(p *Passkey) { p.RPID = "127.0.0.1" }, "RP ID"},
		{"empty RP ID", func(p *Passkey) { p.RPID = "" }, "RP ID"},
		{"RP ID with a port", func(p *Passkey) { p.RPID = "custos.example:443" }, "RP ID"},
		{"no name", func(p *Passkey) { p.Name = " " }, "needs a passkey name"},
		{"long name", func(p *Passkey) { p.Name = strings.Repeat("n", MaxPasskeyName+1) }, "longer than 64"},
		{"control character", func(p *Passkey) { p.Name = "a\x1bb" }, "control character"},
		{"added by the command", func(p *Passkey) { p.AddedBy = "mallory" }, "set by the policy"},
		{"already dave's", func(p *Passkey) { p.ID = bytes.Clone(dave.id) }, `already enrolled for "dave"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := good.passkey(t, "erin's key")
			c.edit(p)
			refused(t, f.s, add("erin", "erin", p), c.want)
			// What the state does not decide, NewPasskey refuses too.
			if _, err := NewPasskey("erin", p.ID, p.PublicKey, p.Alg, p.RPID, p.Name, 0); err == nil &&
				c.name != "already dave's" && c.name != "added by the command" {
				t.Error("NewPasskey accepted it")
			}
		})
	}
	// NewPasskey makes the command the console submits; an RP ID other
	// than localhost is a domain name.
	c, err := NewPasskey("erin", good.id, valid, AlgES256, "custos.example", "erin's key", 7)
	if err != nil {
		t.Fatal(err)
	}
	c.ID, c.Time = cmd("", tc).ID, tc
	mustApply(t, f.s, f.users["erin"].sign(t, c))

	// At most 8 per user.
	for i := len(f.s.Users["dave"].Passkeys); i < MaxPasskeys; i++ {
		mustApply(t, f.s, add("dave", "dave", newAuthenticator(t, "localhost").passkey(t, fmt.Sprintf("key %d", i))))
	}
	refused(t, f.s, add("dave", "dave", newAuthenticator(t, "localhost").passkey(t, "ninth")), "at most 8")

	// Removal names an enrolled passkey.
	rm := func(by, user string, id []byte) Envelope {
		c := NewPasskeyRemoval(user, id)
		c.ID, c.Time = cmd("", tc).ID, tc
		return f.users[by].sign(t, c)
	}
	refused(t, f.s, rm("dave", "dave", []byte("nope")), "has no passkey")
	refused(t, f.s, rm("erin", "dave", dave.id), "enrolled or removed by that user or by role admin")
	mustApply(t, f.s, rm("dave", "dave", dave.id))
	if f.s.passkeyOwner(dave.id) != "" {
		t.Fatal("the removed passkey is still enrolled")
	}

	// A user is added without passkeys.
	nu, u := cmd(KindAddUser, tc), newTestUser(t, "hana").user(UserViewer)
	u.Passkeys = []Passkey{*newAuthenticator(t, "localhost").passkey(t, "k")}
	nu.User = &u
	refused(t, f.s, f.users["alice"].sign(t, nu), "added without passkeys")
}

// The challenge is the documented layout, and every field moves it.
func TestApprovalChallengeLayout(t *testing.T) {
	c := &Command{ID: "c-1", Time: time.Date(2026, 11, 27, 9, 0, 0, 5, time.FixedZone("CET", 3600)), Signer: "bob",
		Kind: KindApproveRequest, Approval: &Approval{Request: "r1", Digest: "ab"}}
	var want []byte
	want = append(want, "custos/passkey-approval/v1\x00"...)
	for _, f := range []string{"fid", "c-1", "2026-11-27T08:00:00.000000005Z", "bob", KindApproveRequest, "r1", "ab"} {
		want = binary.BigEndian.AppendUint64(want, uint64(len(f)))
		want = append(want, f...)
	}
	sum := sha256.Sum256(want)
	if got := ApprovalChallenge("fid", c); !bytes.Equal(got, sum[:]) {
		t.Fatalf("challenge %x, want %x", got, sum)
	}
	// The assertion itself is not part of it.
	c.Approval.Assertion = &Assertion{Signature: []byte{1}}
	if got := ApprovalChallenge("fid", c); !bytes.Equal(got, sum[:]) {
		t.Fatal("the assertion changes the challenge")
	}
	if bytes.Equal(ApprovalChallenge("other", c), sum[:]) {
		t.Fatal("the federation does not change the challenge")
	}
}

// The COSE parser never panics, and accepts only keys it writes back
// byte for byte.
func FuzzParseCOSEKey(f *testing.F) {
	f.Add(newAuthenticator(f, "localhost").cose(f), AlgES256)
	f.Add(newEdAuthenticator(f, "localhost").cose(f), AlgEdDSA)
	f.Add([]byte{0xa0}, AlgES256)
	f.Fuzz(func(t *testing.T, b []byte, alg int) {
		if _, err := parseCOSEKey(b, alg); err != nil {
			return
		}
		var k coseKey
		if err := coseDecMode.Unmarshal(b, &k); err != nil {
			t.Fatalf("accepted what does not decode: %v", err)
		}
		if again, _ := coseEncMode.Marshal(k); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical key %x", b)
		}
	})
}

// Assertions from the network never panic a replica, and random bytes
// never verify.
func FuzzVerifyAssertion(f *testing.F) {
	auth := newAuthenticator(f, "localhost")
	s := &State{FederationID: "fid", Users: map[string]*User{"bob": {Name: "bob", Role: UserApprover, Passkeys: []Passkey{*auth.passkey(f, "bob's")}}}}
	challenge := sha256.Sum256([]byte("c"))
	good := auth.assert(f, challenge[:], gesture{})
	f.Add(good.Credential, good.AuthenticatorData, good.ClientDataJSON, good.Signature)
	f.Add(good.Credential, good.AuthenticatorData[:37], []byte(`{"type":"webauthn.get"}`), []byte{0x30, 0})
	f.Fuzz(func(t *testing.T, id, ad, cd, sig []byte) {
		a := &Assertion{Credential: id, AuthenticatorData: ad, ClientDataJSON: cd, Signature: sig}
		if _, _, err := s.verifyAssertion(s.Users["bob"], a, challenge[:], true); err == nil &&
			!(bytes.Equal(ad, good.AuthenticatorData) && bytes.Equal(cd, good.ClientDataJSON)) {
			t.Fatalf("verified an assertion the authenticator never made: %x %q", ad, cd)
		}
	})
}

// The algorithm comes from the key itself.
func TestPasskeyAlgorithm(t *testing.T) {
	for name, c := range map[string]struct {
		key  []byte
		want int
		err  bool
	}{
		"ES256":   {newAuthenticator(t, "localhost").cose(t), AlgES256, false},
		"EdDSA":   {newEdAuthenticator(t, "localhost").cose(t), AlgEdDSA, false},
		"garbage": {[]byte{0xff, 0x00}, 0, true},
		"empty":   {nil, 0, true},
		"huge":    {make([]byte, MaxCOSEKey+1), 0, true},
	} {
		if got, err := PasskeyAlgorithm(c.key); got != c.want || (err != nil) != c.err {
			t.Errorf("%s: %d %v", name, got, err)
		}
	}
}
