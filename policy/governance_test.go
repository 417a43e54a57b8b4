package policy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// proposal signs a proposal of inner by proposer and returns it with its ID.
func (f *reqFed) proposal(t testing.TB, proposer string, inner *Command, at time.Time) (Envelope, string) {
	t.Helper()
	inner.Signer, inner.Time = proposer, at
	body, err := EncodeCommand(inner)
	if err != nil {
		t.Fatal(err)
	}
	p := cmd(KindPropose, at)
	id := "p-" + p.ID
	p.Proposal = &Proposal{ID: id, Body: body, Expires: at.Add(time.Hour)}
	return f.users[proposer].sign(t, p), id
}

func (f *reqFed) approveProposal(t testing.TB, by, id, digest string, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindApproveProposal, at)
	c.Approval = &Approval{Request: id, Digest: digest}
	return f.users[by].sign(t, c)
}

func (f *reqFed) digest(id string) string { return ProposalDigest(f.s.FederationID, f.s.Proposals[id]) }

// governanceChanges are every kind of change invariant 11 puts under the
// quorum, as one admin would send them.
func governanceChanges(t *testing.T, f *reqFed) map[string]func() *Command {
	mallory := newTestUser(t, "mallory")
	return map[string]func() *Command{
		"add an approver": func() *Command {
			c, u := cmd(KindAddUser, tc), mallory.user(UserApprover)
			c.User = &u
			return c
		},
		"add an admin": func() *Command {
			c, u := cmd(KindAddUser, tc), mallory.user(UserAdmin)
			c.User = &u
			return c
		},
		"revoke an approver": func() *Command { c := cmd(KindRevokeUser, tc); c.Name = "bob"; return c },
		"revoke an admin":    func() *Command { c := cmd(KindRevokeUser, tc); c.Name = "frank"; return c },
		"add a datacenter": func() *Command {
			c := cmd(KindAddNode, tc)
			c.Node = &Node{Name: "dc-x", PublicKey: nodeKey(0x51), Role: RoleDatacenter, Jurisdiction: "EU", Custodian: custodianKey(t)}
			return c
		},
		"add a witness": func() *Command {
			c := cmd(KindAddNode, tc)
			c.Node = &Node{Name: "w-x", PublicKey: nodeKey(0x52), Role: RoleWitness, Jurisdiction: "EU"}
			return c
		},
		"revoke a datacenter": func() *Command { c := cmd(KindRevokeNode, tc); c.Name = "dc-a"; return c },
		"revoke the witness":  func() *Command { c := cmd(KindRevokeNode, tc); c.Name = "witness"; return c },
		"invite a datacenter": func() *Command {
			c := cmd(KindCreateInvite, tc)
			c.Invite = &Invite{ID: "inv-dc", Role: RoleDatacenter, Name: "dc-y", Expires: tc.Add(time.Hour), Key: hex.EncodeToString(make([]byte, 32))}
			return c
		},
		"invite a witness": func() *Command {
			c := cmd(KindCreateInvite, tc)
			c.Invite = &Invite{ID: "inv-w", Role: RoleWitness, Name: "w-y", Expires: tc.Add(time.Hour), Key: hex.EncodeToString(make([]byte, 32))}
			return c
		},
		"switch the alerts off": func() *Command {
			c := cmd(KindSetAlertRules, tc)
			c.AlertRules = &AlertRules{UsualHours: AlertOff, TimeZone: "UTC", InstallerWindows: AlertOff}
			return c
		},
		"lower the threshold": func() *Command { c := cmd(KindSetThreshold, tc); c.Threshold = 3; return c },
		"replace the recovery key": func() *Command {
			c := cmd(KindSetRecovery, tc)
			c.Recovery = custodianKey(t)
			return c
		},
		"close a breach never notified": func() *Command {
			c := cmd(KindCloseBreach, tc)
			c.BreachClosure = &BreachClosure{Breach: "b-gov", Closed: tc, Outcome: "closed",
				NotNotifiedReason: "the footage was encrypted throughout: unlikely to result in a risk"}
			return c
		},
		"enrol an approver's passkey": func() *Command {
			c := cmd(KindAddPasskey, tc)
			c.PasskeyChange = &PasskeyChange{User: "bob", Passkey: newAuthenticator(t, "localhost").passkey(t, "a thief's key")}
			return c
		},
		"drop the passkey requirement": func() *Command {
			c := cmd(KindRequirePasskeys, tc)
			c.PasskeyRequirement = &PasskeyRequirement{}
			return c
		},
		"keep the audit trail longer": func() *Command {
			c := cmd(KindSetAuditRetention, tc)
			c.AuditRetention = &AuditRetention{Retention: 365 * 24 * time.Hour, Justification: "the insurer asks for a year of operator logs"}
			return c
		},
	}
}

// One admin alone can make none of the governance changes once the
// federation is sealed; with the quorum, each executes.
func TestGovernanceNeedsTheQuorum(t *testing.T) {
	for name, change := range governanceChanges(t, newReqFed(t)) {
		t.Run(name, func(t *testing.T) {
			f := newReqFed(t)
			mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-gov"), tc.Add(-time.Minute)))
			if !f.s.IsGovernance(change()) {
				t.Fatalf("%s is not a governance change", name)
			}
			refused(t, f.s, f.users["alice"].sign(t, change()), "needs the quorum's approval")

			// Two colluding admins, below the quorum of 2 others: the
			// proposal waits and nothing changes.
			env, id := f.proposal(t, "alice", change(), tc)
			mustApply(t, f.s, env)
			before, _ := f.s.Marshal()
			var others []string // approvers besides alice and the subject
			for _, u := range []string{"frank", "bob", "carol"} {
				if !(strings.HasPrefix(name, "revoke an admin") && u == "frank") && !(strings.HasPrefix(name, "revoke an approver") && u == "bob") {
					others = append(others, u)
				}
			}
			mustApply(t, f.s, f.approveProposal(t, others[0], id, f.digest(id), tc))
			if !f.s.Proposals[id].Executed.IsZero() {
				t.Fatal("one approval besides the proposer executed the change")
			}
			after := f.s.Clone()
			after.Proposals, after.Ledger = nil, nil
			after.Applied, after.Seen = 0, nil
			var was State
			was.Unmarshal(before)
			was.Proposals, was.Ledger, was.Applied, was.Seen = nil, nil, 0, nil
			a, _ := after.Marshal()
			w, _ := was.Marshal()
			if !bytes.Equal(a, w) {
				t.Fatal("a pending proposal changed the policy")
			}
			// The proposer cannot approve their own proposal.
			refused(t, f.s, f.approveProposal(t, "alice", id, f.digest(id), tc), "never the proposer")
			if name == "revoke an approver" { // revoking bob never needs bob
				refused(t, f.s, f.approveProposal(t, "bob", id, f.digest(id), tc), "subject of proposal")
			}
			mustApply(t, f.s, f.approveProposal(t, others[1], id, f.digest(id), tc))
			if f.s.Proposals[id].Executed.IsZero() {
				t.Fatal("the quorum's approval did not execute the change")
			}
		})
	}
}

// Ordinary changes stay single-admin: none changes who can open footage.
func TestOrdinaryChangesStaySingleAdmin(t *testing.T) {
	f := newReqFed(t)
	viewer := newTestUser(t, "vic").user(UserViewer)
	for _, c := range []*Command{
		{Kind: KindAddUser, User: &viewer},
		{Kind: KindAddNode, Node: &Node{Name: "store-b", PublicKey: nodeKey(0x61), Role: RoleStore, Site: "brno-1", Jurisdiction: "EU"}},
		{Kind: KindAddCamera, Camera: &Camera{Site: "brno-1", Name: "yard", Purpose: "p", LegalBasis: "b", Retention: time.Hour}},
		{Kind: KindAddGrant, Grant: &Grant{ID: "g1", Subject: Subject{"user", "vic"}, Actions: []Action{ActLive}, Selector: "brno-1/*"}},
		{Kind: KindSetController, Controller: goodController()},
		{Kind: KindOpenBreach, Breach: goodBreach("b-1")},
		{Kind: KindUpdateBreach, BreachUpdate: &BreachUpdate{Breach: "b-1", Notified: tc}},
		{Kind: KindCloseBreach, BreachClosure: &BreachClosure{Breach: "b-1", Closed: tc, Outcome: "disk replaced"}},
	} {
		c.ID, c.Time = cmd("", tc).ID, tc
		if f.s.IsGovernance(c) {
			t.Errorf("%s is governance", c.Kind)
		}
		mustApply(t, f.s, f.users["alice"].sign(t, c))
	}
	// A proposal of an ordinary change is refused: it would only add steps.
	c := cmd(KindAddSite, tc)
	c.Site = &Site{Name: "ostrava", Jurisdiction: "EU"}
	env, _ := f.proposal(t, "alice", c, tc)
	refused(t, f.s, env, "not a governance change")
}

// The attack that opened footage: one admin mints two approvers with keys
// she made and has them approve her request.
func TestOneAdminCannotMintApprovers(t *testing.T) {
	f := newReqFed(t)
	for _, n := range []string{"m1", "m2"} {
		c, u := cmd(KindAddUser, tc), newTestUser(t, n).user(UserApprover)
		c.User = &u
		refused(t, f.s, f.users["alice"].sign(t, c), "needs the quorum's approval")
	}
	// Nor by proposing both and approving as the other admin's accomplice:
	// with a quorum of 3 two colluding admins stay below it.
	f.s.Threshold = 3
	c, u := cmd(KindAddUser, tc), newTestUser(t, "m3").user(UserApprover)
	c.User = &u
	env, id := f.proposal(t, "alice", c, tc)
	mustApply(t, f.s, env)
	mustApply(t, f.s, f.approveProposal(t, "frank", id, f.digest(id), tc))
	if f.s.Users["m3"] != nil {
		t.Fatal("two admins below a quorum of 3 added an approver")
	}
}

// Before the seal nothing recorded opens: a request is refused. The seal
// needs a proposer plus a quorum of others and happens once.
func TestBootstrapAndSeal(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	c := cmd(KindAddNode, t0)
	c.Node = &Node{Name: "admin-1", PublicKey: nodeKey(0x70), Role: RoleAdminNode, Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	req := cmd(KindCreateRequest, tc)
	req.Request = goodRequest()
	req.Request.Selector = "praha-1/entrance"
	refused(t, s, alice.sign(t, req), "not sealed yet")

	seal := func(m int) Envelope {
		c := cmd(KindSeal, tc)
		c.Seal = &Seal{Threshold: m}
		return alice.sign(t, c)
	}
	refused(t, s, seal(2), "needs at least 3 users who can approve")
	users := map[string]*testUser{}
	for _, n := range []string{"bob", "carol"} {
		users[n] = newTestUser(t, n)
		c, u := cmd(KindAddUser, t0), users[n].user(UserApprover)
		c.User = &u
		mustApply(t, s, alice.sign(t, c))
	}
	refused(t, s, seal(1), "want 2 to 16")
	refused(t, s, seal(3), "needs at least 4 users who can approve")
	// A proposal before the seal is refused: it would be one admin anyway.
	p := cmd(KindPropose, tc)
	p.Proposal = &Proposal{ID: "p1", Body: []byte("{}"), Expires: tc.Add(time.Hour)}
	refused(t, s, alice.sign(t, p), "not sealed yet")
	mustApply(t, s, seal(0))
	if !s.Sealed() || s.ApprovalThreshold() != 2 {
		t.Fatalf("sealed %v with threshold %d, want sealed with 2", s.Sealed(), s.ApprovalThreshold())
	}
	refused(t, s, seal(2), "was sealed")
	req = cmd(KindCreateRequest, tc)
	req.Request = goodRequest()
	req.Request.Selector = "praha-1/entrance"
	mustApply(t, s, alice.sign(t, req))
}

// An approval names the proposal's digest, which covers the exact command:
// an approval of one proposal cannot execute another.
func TestProposalApprovalBindsTheCommand(t *testing.T) {
	f := newReqFed(t)
	add := func(name string) *Command {
		c, u := cmd(KindAddUser, tc), newTestUser(t, name).user(UserApprover)
		c.User = &u
		return c
	}
	envA, a := f.proposal(t, "alice", add("good"), tc)
	envB, b := f.proposal(t, "alice", add("evil"), tc)
	mustApply(t, f.s, envA)
	mustApply(t, f.s, envB)
	refused(t, f.s, f.approveProposal(t, "bob", b, f.digest(a), tc), "not the one in the policy")
	refused(t, f.s, f.approveProposal(t, "bob", a, strings.Repeat("0", 64), tc), "not the one in the policy")
	// A digest of the same proposal in another federation is refused too.
	other := ProposalDigest("another-federation", f.s.Proposals[a])
	refused(t, f.s, f.approveProposal(t, "bob", a, other, tc), "not the one in the policy")
	// A proposal whose command names another signer or time is refused.
	c := add("x")
	c.Signer, c.Time = "frank", tc
	body, _ := EncodeCommand(c)
	p := cmd(KindPropose, tc)
	p.Proposal = &Proposal{ID: "p-forged", Body: body, Expires: tc.Add(time.Hour)}
	refused(t, f.s, f.users["alice"].sign(t, p), "not the proposer")
}

// A revoked approver's approval stops counting, for proposals and requests.
func TestRevokedApproverNoLongerCounts(t *testing.T) {
	f := newReqFed(t)
	c, u := cmd(KindAddUser, tc), newTestUser(t, "newbie").user(UserApprover)
	c.User = &u
	env, id := f.proposal(t, "alice", c, tc)
	mustApply(t, f.s, env)
	mustApply(t, f.s, f.approveProposal(t, "carol", id, f.digest(id), tc))

	// A footage request with carol's approval too.
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	mustApply(t, f.s, f.approve(t, "carol", "r1", RequestDigest(f.s.FederationID, f.s.Requests["r1"]), tc))

	f.revoke(t, KindRevokeUser, "carol", tc) // frank proposes, alice and bob approve
	mustApply(t, f.s, f.approveProposal(t, "frank", id, f.digest(id), tc))
	if f.s.Users["newbie"] != nil {
		t.Fatal("a revoked approver's approval counted towards a proposal")
	}
	mustApply(t, f.s, f.approve(t, "bob", "r1", RequestDigest(f.s.FederationID, f.s.Requests["r1"]), tc))
	if _, err := f.s.ReleasableRequest("r1", tc); err == nil {
		t.Fatal("a request approved by a since-revoked approver is releasable")
	}
	mustApply(t, f.s, f.approve(t, "frank", "r1", RequestDigest(f.s.FederationID, f.s.Requests["r1"]), tc))
	if _, err := f.s.ReleasableRequest("r1", tc); err != nil {
		t.Fatalf("two current approvers: %v", err)
	}
}

// A one-time key serves one request.
func TestOneTimeKeyIsUnique(t *testing.T) {
	f := newReqFed(t)
	r := goodRequest()
	mustApply(t, f.s, f.create(t, "alice", r, tc))
	r2 := goodRequest()
	r2.ID, r2.Key = "r2", r.Key
	refused(t, f.s, f.create(t, "frank", r2, tc), "already the key of request")
}

// Lock-out: with fewer approvers than the quorum left, a rescue code plus
// every remaining approver executes a proposal, once; never a code alone.
func TestRescueDuringLockOut(t *testing.T) {
	alice := newTestUser(t, "alice")
	f := &reqFed{s: founded(t, alice), users: map[string]*testUser{"alice": alice}}
	for _, n := range []string{"bob", "carol"} {
		f.users[n] = newTestUser(t, n)
		c, u := cmd(KindAddUser, t0), f.users[n].user(UserApprover)
		c.User = &u
		f.admin(t, c)
	}
	codes := make([][]byte, 2)
	var digests []string
	for i := range codes {
		codes[i] = make([]byte, 32)
		rand.Read(codes[i])
		digests = append(digests, RescueDigest(codes[i]))
	}
	c := cmd(KindSeal, t0)
	c.Seal = &Seal{Threshold: 2, Rescue: digests}
	f.admin(t, c)
	rescue := func(by, id, code string) Envelope {
		c := cmd(KindRescueProposal, tc)
		c.Rescue = &Rescue{Proposal: id, Digest: f.digest(id), Code: code}
		return f.users[by].sign(t, c)
	}
	// No lock-out yet: bob and carol can approve alice's proposals.
	newApprover := func(name string) *Command {
		c, u := cmd(KindAddUser, tc), newTestUser(t, name).user(UserApprover)
		c.User = &u
		return c
	}
	env, id := f.proposal(t, "alice", newApprover("dora"), tc)
	mustApply(t, f.s, env)
	mustApply(t, f.s, f.approveProposal(t, "bob", id, f.digest(id), tc))
	refused(t, f.s, rescue("bob", id, hex.EncodeToString(codes[0])), "no lock-out")

	// carol loses her key: alice and bob revoke her with... nobody else.
	// Revoking carol leaves bob as the only approver besides alice.
	rv := cmd(KindRevokeUser, tc)
	rv.Name = "carol"
	env, rid := f.proposal(t, "alice", rv, tc)
	mustApply(t, f.s, env)
	refused(t, f.s, rescue("alice", rid, hex.EncodeToString(codes[0])), "every remaining approver")
	mustApply(t, f.s, f.approveProposal(t, "bob", rid, f.digest(rid), tc))
	if f.s.Users["carol"].Revoked {
		t.Fatal("one approval revoked carol")
	}
	refused(t, f.s, rescue("bob", rid, strings.Repeat("ab", 32)), "not a rescue code")
	mustApply(t, f.s, rescue("bob", rid, hex.EncodeToString(codes[0])))
	if !f.s.Users["carol"].Revoked || !f.s.Proposals[rid].Rescued {
		t.Fatal("the rescue did not execute the revocation")
	}
	// The code is spent.
	env, id2 := f.proposal(t, "alice", newApprover("erik"), tc)
	mustApply(t, f.s, env)
	mustApply(t, f.s, f.approveProposal(t, "bob", id2, f.digest(id2), tc))
	refused(t, f.s, rescue("bob", id2, hex.EncodeToString(codes[0])), "already spent")
	mustApply(t, f.s, rescue("bob", id2, hex.EncodeToString(codes[1])))
	if f.s.Users["erik"] == nil {
		t.Fatal("the second code did not execute")
	}
}

// A command signed for one federation is refused by another with the same
// admin (an installer company serving several customers).
func TestCrossFederationReplay(t *testing.T) {
	alice := newTestUser(t, "alice")
	a := founded(t, alice)
	b := &State{}
	g := cmd(KindGenesis, t0)
	g.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
		Node: Node{Name: "dc-a", PublicKey: nodeKey(9), Role: RoleDatacenter, Jurisdiction: "EU"}}
	mustApply(t, b, unsigned(t, g)) // the test signer now signs for b
	if a.FederationID == b.FederationID {
		t.Fatal("two federations share an ID")
	}
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "brno-1", Jurisdiction: "EU"}
	env := alice.sign(t, c)
	mustApply(t, b, env)
	refused(t, a, env, "bad signature")
}

// signAt signs c's body for the test federation with the signature dated at
// and in mode typ, as an attacker could.
func signAt(t *testing.T, u *testUser, c *Command, at time.Time, typ packet.SignatureType) Envelope {
	t.Helper()
	c.Signer = u.name
	body, _ := EncodeCommand(c)
	var sig bytes.Buffer
	cfg := &packet.Config{Time: func() time.Time { return at }}
	var err error
	if typ == packet.SigTypeText {
		err = openpgp.DetachSignWithParams(&sig, []*openpgp.Entity{u.entity}, bytes.NewReader(SignedBytes(testFederation, body)),
			&openpgp.SignParams{TextSig: true, Config: cfg})
	} else {
		err = openpgp.DetachSign(&sig, []*openpgp.Entity{u.entity}, bytes.NewReader(SignedBytes(testFederation, body)), cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return Envelope{Body: body, Sig: sig.Bytes()}
}

// A signature means one thing, once: its time is the command's, it is one
// binary signature packet, and everything it says is hashed.
func TestSignatureShape(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	site := func() *Command {
		c := cmd(KindAddSite, tc)
		c.Site = &Site{Name: "s-" + c.ID, Jurisdiction: "EU"}
		return c
	}
	refused(t, s, signAt(t, alice, site(), tc.Add(-time.Hour), packet.SigTypeBinary), "not at the signed time")
	refused(t, s, signAt(t, alice, site(), tc.Add(time.Hour), packet.SigTypeBinary), "not at the signed time")
	mustApply(t, s, signAt(t, alice, site(), tc.Add(SignatureSkew/2), packet.SigTypeBinary))
	refused(t, s, signAt(t, alice, site(), tc, packet.SigTypeText), "binary document")

	// Two signature packets: a valid one and a copy.
	env := signAt(t, alice, site(), tc, packet.SigTypeBinary)
	env.Sig = append(bytes.Clone(env.Sig), env.Sig...)
	refused(t, s, env, "exactly one OpenPGP signature packet")

	// An unhashed subpacket spliced in (an issuer key ID, 10 bytes): the
	// signature still verifies in go-crypto, and is refused here.
	env = signAt(t, alice, site(), tc, packet.SigTypeBinary)
	sig := env.Sig
	if sig[0] != 0xc2 || sig[1] >= 192 {
		t.Fatalf("unexpected signature header % x", sig[:2])
	}
	body := sig[2:]
	hashed := int(body[4])<<8 | int(body[5])
	at := 6 + hashed
	sub := append([]byte{9, 16}, alice.entity.PrimaryKey.Fingerprint[12:20]...)
	var spliced []byte
	spliced = append(spliced, body[:at]...)
	spliced = append(spliced, 0, byte(len(sub)))
	spliced = append(spliced, sub...)
	spliced = append(spliced, body[at+2:]...)
	env.Sig = append([]byte{0xc2, byte(len(spliced))}, spliced...)
	refused(t, s, env, "unhashed subpackets")
}

// A back-dated signature by an expired key is refused: the signature's
// time must be the command's (and go-crypto checks the key valid then; it
// cannot even make a signature at a time its key has expired).
func TestExpiredKeyCannotBackdate(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	// A key valid for one day from keyTime.
	e, err := openpgp.NewEntity("old", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return keyTime }, KeyLifetimeSecs: 86400})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e.Serialize(&buf)
	old := &testUser{name: "old", entity: e, pub: buf.Bytes(), fp: hex.EncodeToString(e.PrimaryKey.Fingerprint)}
	c, u := cmd(KindAddUser, t0), old.user(UserViewer)
	c.User = &u
	mustApply(t, s, alice.sign(t, c))
	// A request needs no role, so only the signature stands in the way.
	r := cmd(KindCreateRequest, tc)
	r.Request = goodRequest()
	refused(t, s, signAt(t, old, r, keyTime.Add(time.Hour), packet.SigTypeBinary), "not at the signed time")
}
