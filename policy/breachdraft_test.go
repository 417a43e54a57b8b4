package policy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// draftFed is a founded federation (alice, dc-a, store-praha-1 with camera
// praha-1/entrance) with nodes whose keys sign: datacenters dc-x and dc-y,
// dc-us in the US, and store-brno-1 of a site without cameras.
type draftFed struct {
	s     *State
	alice *testUser
	nodes map[string]*keys.CustodySigner
	log   []Envelope // every envelope applied, for replicas to replay
}

func newDraftFed(t *testing.T) *draftFed {
	t.Helper()
	alice := newTestUser(t, "alice")
	f := &draftFed{s: &State{}, alice: alice, nodes: map[string]*keys.CustodySigner{}}
	g := cmd(KindGenesis, t0)
	g.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
		Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}
	f.apply(t, unsigned(t, g))
	for _, site := range []string{"praha-1", "brno-1"} {
		c := cmd(KindAddSite, t0)
		c.Site = &Site{Name: site, Jurisdiction: "EU"}
		f.admin(t, c)
	}
	c := cmd(KindAddNode, t0)
	c.Node = &Node{Name: "store-praha-1", PublicKey: nodeKey(2), Role: RoleStore, Site: "praha-1", Jurisdiction: "EU"}
	f.admin(t, c)
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "entrance", Purpose: "theft prevention", LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention}
	f.admin(t, c)
	for _, n := range []Node{
		{Name: "dc-x", Role: RoleDatacenter, Jurisdiction: "EU"},
		{Name: "dc-y", Role: RoleDatacenter, Jurisdiction: "EU"},
		{Name: "dc-us", Role: RoleDatacenter, Jurisdiction: "US"},
		{Name: "store-brno-1", Role: RoleStore, Site: "brno-1", Jurisdiction: "EU"},
	} {
		k := keys.NewNodePrivate()
		sg, err := keys.NewCustodySigner(n.Name, &k)
		if err != nil {
			t.Fatal(err)
		}
		f.nodes[n.Name] = sg
		n.PublicKey = k.Public().String()
		c := cmd(KindAddNode, t0)
		c.Node = &n
		f.admin(t, c)
	}
	return f
}

func (f *draftFed) apply(t testing.TB, e Envelope) {
	t.Helper()
	mustApply(t, f.s, e)
	f.log = append(f.log, e)
}

func (f *draftFed) admin(t testing.TB, c *Command) { t.Helper(); f.apply(t, f.alice.sign(t, c)) }

// nodeSigned is c signed by node name's key (with the key of signer, if
// given: a forgery).
func (f *draftFed) nodeSigned(t testing.TB, name string, c *Command, signer *keys.CustodySigner) Envelope {
	t.Helper()
	c.Signer = NodeSignerPrefix + name
	body, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	if signer == nil {
		signer = f.nodes[name]
	}
	sig, err := signer.SignStatement(SignedBytes(testFederation, body))
	if err != nil {
		t.Fatal(err)
	}
	return Envelope{Body: body, Sig: sig}
}

func draftCmd(event, object string, detected, at time.Time) *Command {
	c := cmd(KindDraftBreach, at)
	c.BreachDraft = &BreachDraft{Event: event, Object: object, Text: "entry 41 does not chain onto entry 40 held", Detected: detected}
	return c
}

// TestBreachDraftKeysSignaturePolicyVerifies: what keys' SignStatement
// makes with a node key, policy's VerifyNodeSignature accepts for that
// key, over that message, and nothing else.
func TestBreachDraftKeysSignaturePolicyVerifies(t *testing.T) {
	for range 16 { // either Edwards sign of the key
		k := keys.NewNodePrivate()
		sg, err := keys.NewCustodySigner("n", &k)
		if err != nil {
			t.Fatal(err)
		}
		msg := SignedBytes("fed", []byte(`{"id":"c1"}`))
		sig, err := sg.SignStatement(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyNodeSignature(k.Public().String(), msg, sig); err != nil {
			t.Fatalf("keys' signature does not verify in policy: %v", err)
		}
		if err := VerifyNodeSignature(k.Public().String(), SignedBytes("other", []byte(`{"id":"c1"}`)), sig); err == nil {
			t.Fatal("verified for another federation")
		}
		if err := VerifyNodeSignature(nodeKey(9), msg, sig); err == nil {
			t.Fatal("verified against another key")
		}
		bad := bytes.Clone(sig)
		bad[40] ^= 1
		if err := VerifyNodeSignature(k.Public().String(), msg, bad); err == nil {
			t.Fatal("verified a changed signature")
		}
	}
	// u = p − 1 (≡ −1) has no Edwards form; u ≥ p is not canonical.
	minusOne := "nodekey:ec" + strings.Repeat("ff", 30) + "7f"
	if err := VerifyNodeSignature(minusOne, []byte("m"), make([]byte, 64)); err == nil || !strings.Contains(err.Error(), "no Edwards form") {
		t.Errorf("u = −1: %v", err)
	}
	big := "nodekey:ed" + strings.Repeat("ff", 30) + "7f"
	if err := VerifyNodeSignature(big, []byte("m"), make([]byte, 64)); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Errorf("u = p: %v", err)
	}
}

// TestBreachDraftByNode: a datacenter drafts audit-chain of a store; the
// draft is in the register with its clock from detection; every abuse is
// refused with its reason and changes nothing.
func TestBreachDraftByNode(t *testing.T) {
	f := newDraftFed(t)
	detected := tc.Add(-time.Minute)
	c := draftCmd(EventAuditChain, "store-praha-1", detected, tc)
	f.apply(t, f.nodeSigned(t, "dc-x", c, nil))
	b := f.s.Breaches["b-auto-"+c.ID]
	switch {
	case b == nil:
		t.Fatalf("no draft breach b-auto-%s in %v", c.ID, f.s.Breaches)
	case !b.Draft || b.Event != EventAuditChain || b.Object != "store-praha-1" || b.OpenedBy != "node:dc-x" || !b.Opened.Equal(tc):
		t.Errorf("draft %+v", b)
	case !b.Detected.Equal(detected) || !b.Deadline().Equal(detected.Add(72*time.Hour)):
		t.Errorf("detected %s, deadline %s: the clock runs from detection", b.Detected, b.Deadline())
	case !strings.Contains(b.What, "store-praha-1") || !strings.Contains(b.What, "entry 41 does not chain"):
		t.Errorf("what %q", b.What)
	}
	if open := f.s.OpenBreaches(); len(open) != 1 || open[0].ID != b.ID {
		t.Errorf("open breaches %v", open)
	}

	at := tc.Add(time.Minute)
	other := keys.NewNodePrivate()
	forger, _ := keys.NewCustodySigner("forger", &other)
	userSigned := draftCmd(EventAuditChain, "store-brno-1", at, at)
	ghost := draftCmd(EventAuditChain, "store-brno-1", at, at)
	ghost.Signer = "node:ghost"
	ghostBody, _ := EncodeCommand(ghost)
	ghostSig, _ := f.nodes["dc-x"].SignStatement(SignedBytes(testFederation, ghostBody))
	shortSig := f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", at, at), nil)
	shortSig.Sig = shortSig.Sig[:63]
	long := draftCmd(EventAuditChain, "store-brno-1", at, at)
	long.BreachDraft.Text = strings.Repeat("x", MaxDraftText+1)
	escape := draftCmd(EventAuditChain, "store-brno-1", at, at)
	escape.BreachDraft.Text = "ok\x1b[2J"
	cases := []struct {
		name string
		env  Envelope
		want string
	}{
		{"forged signature", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", at, at), forger),
			`signature of node "dc-x": the signature does not verify with the node's key`},
		{"another node's key", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", at, at), f.nodes["dc-y"]),
			`signature of node "dc-x": the signature does not verify`},
		{"short signature", shortSig, "want a 64-byte XEdDSA signature with the node key, got 63 bytes"},
		{"user key", f.alice.sign(t, userSigned), `breach.draft is signed by a node (signer node:NAME) with its node key, not by user "alice"`},
		{"unknown node", Envelope{Body: ghostBody, Sig: ghostSig}, `signer node "ghost" is not a node of this federation`},
		{"store drafts audit-chain", f.nodeSigned(t, "store-brno-1", draftCmd(EventAuditChain, "store-praha-1", at, at), nil),
			"audit-chain is drafted by a datacenter, which holds the copies of the stores' audit journals; store-brno-1 is a store"},
		{"audit-chain of a datacenter", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "dc-y", at, at), nil), `object "dc-y" is no store of the policy`},
		{"duplicate", f.nodeSigned(t, "dc-y", draftCmd(EventAuditChain, "store-praha-1", at, at), nil),
			"a breach for audit-chain of store-praha-1 is already open: b-auto-" + c.ID + " (opened by node:dc-x)"},
		{"future detection", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", at.Add(DraftSkew+time.Second), at), nil),
			"is more than 5m0s after the command's time 2026-11-27T09:01:00Z: a breach cannot be detected in the future"},
		{"stale detection", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", at.Add(-DraftMaxAge-time.Second), at), nil),
			"is more than 24h0m0s before the command's time"},
		{"no detection", f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-brno-1", time.Time{}, at), nil), "needs the time it was detected"},
		{"unknown event", f.nodeSigned(t, "dc-x", draftCmd(EventNodeRevoked, "store-brno-1", at, at), nil),
			`event "node-revoked": a node drafts only audit-chain, replica-jurisdiction or audit-journal`},
		{"text too long", f.nodeSigned(t, "dc-x", long, nil), "text of 513 bytes is longer than 512"},
		{"text with an escape", f.nodeSigned(t, "dc-x", escape, nil), `text has control character '\x1b'`},
		{"datacenter drafts jurisdiction", f.nodeSigned(t, "dc-x", draftCmd(EventReplicaJurisdiction, "dc-us", at, at), nil),
			"replica-jurisdiction is drafted by a store, which refuses to replicate; dc-x is a datacenter"},
		{"jurisdiction of an EU datacenter", f.nodeSigned(t, "store-brno-1", draftCmd(EventReplicaJurisdiction, "dc-a", at, at), nil),
			"datacenter dc-a is in jurisdiction EU, where the policy keeps data"},
		{"another node's journal", f.nodeSigned(t, "dc-x", draftCmd(EventAuditJournal, "dc-y", at, at), nil),
			`audit-journal: a node drafts it of its own journal only (dc-x, not "dc-y")`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) { refused(t, f.s, tt.env, tt.want) })
	}

	// A node can open drafts only: it cannot update, close or open one
	// as an admin would.
	u := cmd(KindUpdateBreach, at)
	u.BreachUpdate = &BreachUpdate{Breach: b.ID, Measures: "nothing to see"}
	refused(t, f.s, f.nodeSigned(t, "dc-x", u, nil), `signer "node:dc-x" is not a user of this federation`)
	x := cmd(KindCloseBreach, at)
	x.BreachClosure = &BreachClosure{Breach: b.ID, Closed: at, Outcome: "hidden", NotNotifiedReason: "none"}
	refused(t, f.s, f.nodeSigned(t, "dc-x", x, nil), `signer "node:dc-x" is not a user of this federation`)
	o := cmd(KindOpenBreach, at)
	o.Breach = &Breach{ID: "b-9", What: "w", Detected: at, Draft: true}
	refused(t, f.s, f.alice.sign(t, o), "drafts are opened by events")

	// A detection a little after the command's time (another clock) is
	// accepted; the clock starts at the command's time.
	j := draftCmd(EventReplicaJurisdiction, "dc-us", at.Add(time.Minute), at)
	f.apply(t, f.nodeSigned(t, "store-brno-1", j, nil))
	if jb := f.s.Breaches["b-auto-"+j.ID]; jb == nil || !jb.Detected.Equal(at) || !jb.Draft {
		t.Errorf("replica-jurisdiction draft %+v, want detected at the command's time %s", jb, at)
	}
	// A node drafts its own journal.
	f.apply(t, f.nodeSigned(t, "dc-y", draftCmd(EventAuditJournal, "dc-y", at, at), nil))

	// A revoked node is refused.
	r := cmd(KindRevokeNode, at)
	r.Name = "dc-y"
	f.admin(t, r)
	refused(t, f.s, f.nodeSigned(t, "dc-y", draftCmd(EventAuditChain, "store-brno-1", at, at), nil), `signer node "dc-y" is revoked`)
}

// TestBreachDraftBounds: at most MaxOpenDraftsPerNode open drafts per
// node; an admin's update confirms one (freeing a place), a close
// dismisses one, and then the same event of the same object may be
// drafted again.
func TestBreachDraftBounds(t *testing.T) {
	f := newDraftFed(t)
	at := tc
	var first string
	for i := range MaxOpenDraftsPerNode {
		c := cmd(KindAddNode, t0)
		c.Node = &Node{Name: "store-" + string(rune('a'+i)), PublicKey: nodeKey(byte(0x40 + i)), Role: RoleStore, Site: "brno-1", Jurisdiction: "EU"}
		f.admin(t, c)
		d := draftCmd(EventAuditChain, c.Node.Name, at, at)
		f.apply(t, f.nodeSigned(t, "dc-x", d, nil))
		if i == 0 {
			first = "b-auto-" + d.ID
		}
	}
	ninth := f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-praha-1", at, at), nil)
	refused(t, f.s, ninth, "node:dc-x has 8 open drafts, the most one node may have")
	// Another node is not bound by dc-x's drafts.
	f.apply(t, f.nodeSigned(t, "dc-y", draftCmd(EventAuditChain, "store-brno-1", at, at), nil))

	// Confirming: an update that changes nothing else clears Draft.
	u := cmd(KindUpdateBreach, at)
	u.BreachUpdate = &BreachUpdate{Breach: first}
	f.admin(t, u)
	if b := f.s.Breaches[first]; b.Draft || b.UpdatedBy != "alice" || b.Event != EventAuditChain {
		t.Errorf("confirmed draft %+v", b)
	}
	u = cmd(KindUpdateBreach, at)
	u.BreachUpdate = &BreachUpdate{Breach: first}
	refused(t, f.s, f.alice.sign(t, u), "the update changes nothing")
	// The confirmed breach no longer counts against dc-x, but still
	// covers its event: a duplicate is refused while it is open.
	f.apply(t, f.nodeSigned(t, "dc-x", draftCmd(EventAuditChain, "store-praha-1", at, at), nil))
	refused(t, f.s, f.nodeSigned(t, "dc-y", draftCmd(EventAuditChain, "store-a", at, at), nil), "already open: "+first)

	// Dismissing: closed with the reason it need not be notified.
	x := cmd(KindCloseBreach, at)
	x.BreachClosure = &BreachClosure{Breach: first, Closed: at, Outcome: "a test restore, not a rewrite",
		NotNotifiedReason: "no personal data left the controller's hands"}
	f.admin(t, x)
	f.apply(t, f.nodeSigned(t, "dc-y", draftCmd(EventAuditChain, "store-a", at, at), nil))
}

// TestBreachDraftOnRevoke: revoking a store whose site has cameras opens a
// draft in the same command, identical on every replica; revoking a store
// without footage, or a datacenter, opens none.
func TestBreachDraftOnRevoke(t *testing.T) {
	f := newDraftFed(t)
	c := cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "tills", Purpose: "theft prevention", LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention}
	f.admin(t, c)
	for _, name := range []string{"store-brno-1", "dc-x"} {
		r := cmd(KindRevokeNode, tc)
		r.Name = name
		f.admin(t, r)
	}
	if len(f.s.Breaches) != 0 {
		t.Fatalf("revoking nodes without footage drafted %v", f.s.Breaches)
	}
	r := cmd(KindRevokeNode, tc)
	r.Name = "store-praha-1"
	f.admin(t, r)
	id := "b-auto-" + r.ID
	b := f.s.Breaches[id]
	switch {
	case b == nil:
		t.Fatalf("no draft %s after revoking store-praha-1: %v", id, f.s.Breaches)
	case !b.Draft || b.Event != EventNodeRevoked || b.Object != "store-praha-1" || !b.Detected.Equal(tc) || !b.Opened.Equal(tc):
		t.Errorf("draft %+v", b)
	case b.OpenedBy != "custos (automatic: node.revoke "+r.ID+")":
		t.Errorf("opened by %q", b.OpenedBy)
	case !strings.Contains(b.What, "store-praha-1") || !strings.Contains(b.What, "entrance, tills"):
		t.Errorf("what %q names not the store and its cameras", b.What)
	}
	want, _ := f.s.Marshal()
	for i := range 3 {
		rep := &State{}
		for _, e := range f.log {
			mustApply(t, rep, e)
		}
		if got, _ := rep.Marshal(); !bytes.Equal(got, want) {
			t.Fatalf("replica %d differs from the first", i)
		}
		if rep.Breaches[id] == nil || !rep.Breaches[id].Draft {
			t.Fatalf("replica %d has no draft %s", i, id)
		}
	}
	// A snapshot round trip keeps it.
	var snap State
	if err := snap.Unmarshal(want); err != nil || snap.Breaches[id] == nil || !snap.Breaches[id].Draft {
		t.Fatalf("snapshot lost the draft: %v", err)
	}
}
