package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

var (
	t0      = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	keyTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

type testUser struct {
	name   string
	entity *openpgp.Entity
	pub    []byte
	fp     string
}

func newTestUser(t testing.TB, name string) *testUser {
	t.Helper()
	// v4 EdDSA: what Custos makes for admins, so that GnuPG 2.2 and sq can
	// check what they signed (neither reads v6 keys yet).
	e, err := openpgp.NewEntity(name, "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return keyTime }})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return &testUser{name: name, entity: e, pub: buf.Bytes(), fp: hex.EncodeToString(e.PrimaryKey.Fingerprint)}
}

func (u *testUser) user(role UserRole) User {
	return User{Name: u.name, Role: role, PublicKey: u.pub, Fingerprint: u.fp}
}

// fataler is what sign needs of testing.TB and *rapid.T alike.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// testFederation is the FederationID the test helpers sign for: founded
// sets it (no test in this package runs in parallel).
var testFederation string

func (u *testUser) sign(t fataler, c *Command) Envelope {
	t.Helper()
	c.Signer = u.name
	body, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	at := c.Time
	if at.Before(keyTime) {
		at = keyTime.Add(time.Second) // a key cannot sign before it exists
	}
	cfg := &packet.Config{Time: func() time.Time { return at }}
	if err := openpgp.DetachSign(&sig, []*openpgp.Entity{u.entity}, bytes.NewReader(SignedBytes(testFederation, body)), cfg); err != nil {
		t.Fatal(err)
	}
	return Envelope{Body: body, Sig: sig.Bytes()}
}

func unsigned(t fataler, c *Command) Envelope {
	t.Helper()
	if g := c.Genesis; g != nil {
		testFederation = FederationID(g.Federation, g.Admin.Fingerprint, g.Node.PublicKey)
	}
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return Envelope{Body: b}
}

func nodeKey(b byte) string { return "nodekey:" + hex.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

var cmdSeq int

func cmd(kind string, at time.Time) *Command {
	cmdSeq++
	return &Command{ID: fmt.Sprintf("c%d", cmdSeq), Time: at, Kind: kind}
}

// founded returns a state with genesis applied by admin alice, a site and a store.
func founded(t testing.TB, alice *testUser) *State {
	t.Helper()
	s := &State{}
	g := cmd(KindGenesis, t0)
	g.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
		Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}
	mustApply(t, s, unsigned(t, g))
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "praha-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "store-praha-1", PublicKey: nodeKey(2), Role: RoleStore, Site: "praha-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "entrance", Purpose: "theft prevention", LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention, Tags: []string{"doors"}}
	mustApply(t, s, alice.sign(t, c))
	return s
}

// mustApply applies e to s. It applies e first as a replica does, to
// s.Successor(), and checks that s did not change (Successor shares the
// values of some maps) and that both ways end in the same state.
func mustApply(t testing.TB, s *State, e Envelope) {
	t.Helper()
	before, _ := s.Marshal()
	if _, err := s.Check(e); err != nil {
		t.Fatalf("Check refused what Apply must apply: %v", err)
	}
	if after, _ := s.Marshal(); !bytes.Equal(before, after) {
		t.Fatal("Check changed the state")
	}
	next := s.Successor()
	if _, err := next.Apply(e); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Marshal(); !bytes.Equal(before, after) {
		t.Fatal("Apply on the successor changed the original state")
	}
	if _, err := s.Apply(e); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Marshal()
	b, _ := next.Marshal()
	if !bytes.Equal(a, b) {
		t.Fatal("Apply on the successor and on the state itself differ")
	}
}

func refused(t *testing.T, s *State, e Envelope, want string) {
	t.Helper()
	before, _ := s.Marshal()
	_, cerr := s.Check(e)
	if after, _ := s.Marshal(); !bytes.Equal(before, after) {
		t.Fatal("Check changed the state")
	}
	_, err := s.Apply(e)
	if fmt.Sprint(cerr) != fmt.Sprint(err) {
		t.Fatalf("Check said %v, Apply %v", cerr, err)
	}
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("applied, want refusal mentioning %q (err %v)", want, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q does not mention %q", err, want)
	}
	after, _ := s.Marshal()
	if !bytes.Equal(before, after) {
		t.Fatal("a refused command changed the state")
	}
}

func TestZeroStateDeniesEverything(t *testing.T) {
	var s State
	for _, subj := range []Subject{{"user", "alice"}, {"node", "dc-a"}, {"x", ""}} {
		for _, a := range []Action{ActLive, ActPlayback, ActExport, ActManage, ActApprove, ActAudit} {
			if d := Authorize(&s, subj, a, "praha-1/entrance", t0); d.Allow || d.Reason == "" {
				t.Errorf("zero state: %v %s = %+v", subj, a, d)
			}
		}
	}
	if d := Authorize(nil, Subject{"user", "a"}, ActLive, "", t0); d.Allow {
		t.Error("nil state allowed")
	}
	if p := DesiredPeers(&s, "dc-a", t0); len(p) != 0 {
		t.Error("zero state gives peers")
	}
	var d Decision
	if d.Allow {
		t.Error("zero Decision allows")
	}
}

func TestSignaturesAndRoles(t *testing.T) {
	alice, bob, mallory := newTestUser(t, "alice"), newTestUser(t, "bob"), newTestUser(t, "mallory")
	s := founded(t, alice)
	c := cmd(KindAddUser, t0)
	u := bob.user(UserApprover)
	c.User = &u
	mustApply(t, s, alice.sign(t, c))

	site := func() *Command {
		c := cmd(KindAddSite, t0)
		c.Site = &Site{Name: "brno-" + c.ID, Jurisdiction: "EU"}
		return c
	}

	// A stranger's key, even claiming to be alice.
	forged := site()
	env := mallory.sign(t, forged)
	refused(t, s, env, "not a user")
	forged2 := site()
	env = mallory.sign(t, forged2)
	body, _ := DecodeCommand(env.Body)
	body.Signer = "alice"
	nb, _ := EncodeCommand(body)
	refused(t, s, Envelope{Body: nb, Sig: env.Sig}, "bad signature")
	// A tampered body under a good signature.
	good := alice.sign(t, site())
	tampered := bytes.Replace(good.Body, []byte(`"EU"`), []byte(`"US"`), 1)
	refused(t, s, Envelope{Body: tampered, Sig: good.Sig}, "bad signature")
	// No signature.
	refused(t, s, Envelope{Body: good.Body}, "no signature")
	// Wrong role: an approver cannot change the policy.
	refused(t, s, bob.sign(t, site()), "needs role admin")
	// Replay.
	mustApply(t, s, good)
	refused(t, s, good, "replay")
	// Too old.
	old := site()
	old.Time = t0.Add(-2 * ReplayWindow)
	refused(t, s, alice.sign(t, old), "replay window")
	// Revoked admin: add carol as admin, revoke alice, alice is refused.
	carol := newTestUser(t, "carol")
	c = cmd(KindAddUser, t0)
	u = carol.user(UserAdmin)
	c.User = &u
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindRevokeUser, t0)
	c.Name = "alice"
	mustApply(t, s, carol.sign(t, c))
	refused(t, s, alice.sign(t, site()), "revoked")
	// The last admin cannot be revoked.
	c = cmd(KindRevokeUser, t0)
	c.Name = "carol"
	refused(t, s, carol.sign(t, c), "last admin")
	// Unknown fields and kinds.
	refused(t, s, Envelope{Body: []byte(`{"id":"x1","time":"2026-11-27T08:00:00Z","kind":"site.add","evil":1}`), Sig: []byte{1}}, "unknown field")
	k := cmd("site.delete-everything", t0)
	refused(t, s, carol.sign(t, k), "unknown command kind")
}

func TestGenesisRules(t *testing.T) {
	alice := newTestUser(t, "alice")
	g := func() *Command {
		c := cmd(KindGenesis, t0)
		c.Genesis = &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
			Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}
		return c
	}
	s := &State{}
	// Anything before genesis.
	site := cmd(KindAddSite, t0)
	site.Site = &Site{Name: "x", Jurisdiction: "EU"}
	refused(t, s, alice.sign(t, site), "first command must be genesis")
	// A signed genesis is malformed: the founding node writes it.
	refused(t, s, alice.sign(t, g()), "not signed")
	c := g()
	c.Genesis.Admin.Role = UserViewer
	refused(t, s, unsigned(t, c), "role admin")
	c = g()
	c.Genesis.Node.Role = RoleStore
	refused(t, s, unsigned(t, c), "must be a datacenter")
	mustApply(t, s, unsigned(t, g()))
	// Only ever first.
	refused(t, s, unsigned(t, g()), "already exists")
}

func TestAuthorize(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	add := func(c *Command) { mustApply(t, s, alice.sign(t, c)) }
	guard, help := newTestUser(t, "guard"), newTestUser(t, "help")
	for _, x := range []struct {
		u    *testUser
		role UserRole
	}{{guard, UserViewer}, {help, UserHelpdesk}} {
		c := cmd(KindAddUser, t0)
		u := x.u.user(x.role)
		c.User = &u
		add(c)
	}
	c := cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "tills", Purpose: "p", LegalBasis: "b", Retention: time.Hour, Tags: []string{"tills"}}
	add(c)
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "g-guard", Subject: Subject{"user", "guard"}, Actions: []Action{ActLive}, Selector: "praha-1/*",
		Window: Window{From: t0, Until: t0.Add(8 * time.Hour)}, Purpose: "shift"}
	add(c)

	cases := []struct {
		name  string
		subj  Subject
		act   Action
		res   string
		at    time.Time
		allow bool
	}{
		{"guard live in window", Subject{"user", "guard"}, ActLive, "praha-1/entrance", t0.Add(time.Hour), true},
		{"guard live before window", Subject{"user", "guard"}, ActLive, "praha-1/entrance", t0.Add(-time.Minute), false},
		{"guard live at window end", Subject{"user", "guard"}, ActLive, "praha-1/entrance", t0.Add(8 * time.Hour), false},
		{"guard playback", Subject{"user", "guard"}, ActPlayback, "praha-1/entrance", t0.Add(time.Hour), false},
		{"guard unknown camera", Subject{"user", "guard"}, ActLive, "praha-1/nope", t0.Add(time.Hour), false},
		{"guard manage", Subject{"user", "guard"}, ActManage, "", t0, false},
		{"helpdesk nothing", Subject{"user", "help"}, ActLive, "praha-1/entrance", t0, false},
		{"admin manage", Subject{"user", "alice"}, ActManage, "", t0, true},
		{"admin no footage by role", Subject{"user", "alice"}, ActPlayback, "praha-1/entrance", t0, false},
		{"unknown user", Subject{"user", "eve"}, ActLive, "praha-1/entrance", t0, false},
		{"store no grant", Subject{"node", "store-praha-1"}, ActLive, "praha-1/entrance", t0, false},
	}
	for _, tc := range cases {
		d := Authorize(s, tc.subj, tc.act, tc.res, tc.at)
		if d.Allow != tc.allow || d.Reason == "" {
			t.Errorf("%s: %+v, want allow=%v with a reason", tc.name, d, tc.allow)
		}
	}

	// Helpdesk: only with a time-boxed support grant.
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "support", Subject: Subject{"user", "help"}, Actions: []Action{ActLive}, Selector: "tag:tills"}
	refused(t, s, alice.sign(t, c), "time-boxed")
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "support", Subject: Subject{"user", "help"}, Actions: []Action{ActLive}, Selector: "tag:tills", Window: Window{Until: t0.Add(time.Hour)}}
	add(c)
	if d := Authorize(s, Subject{"user", "help"}, ActLive, "praha-1/tills", t0); !d.Allow {
		t.Errorf("helpdesk with support grant: %+v", d)
	}
	if d := Authorize(s, Subject{"user", "help"}, ActLive, "praha-1/entrance", t0); d.Allow {
		t.Errorf("support grant leaked to an untagged camera: %+v", d)
	}
	if d := Authorize(s, Subject{"user", "help"}, ActLive, "praha-1/tills", t0.Add(time.Hour)); d.Allow {
		t.Errorf("support grant outlived its window: %+v", d)
	}
	// Revoking the grant ends it.
	c = cmd(KindRevokeGrant, t0)
	c.Name = "g-guard"
	add(c)
	if d := Authorize(s, Subject{"user", "guard"}, ActLive, "praha-1/entrance", t0.Add(time.Hour)); d.Allow {
		t.Errorf("revoked grant still allows: %+v", d)
	}
	// Grants cannot give role duties.
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "sneaky", Subject: Subject{"user", "guard"}, Actions: []Action{ActManage}, Selector: "*"}
	refused(t, s, alice.sign(t, c), "grants give live, playback or export")
}

func TestInstaller(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "brno-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "brno-1", Name: "door", Purpose: "p", LegalBasis: "b", Retention: time.Hour}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "store-brno-1", PublicKey: nodeKey(5), Role: RoleStore, Site: "brno-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))

	// An installer needs a window end.
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "inst", PublicKey: nodeKey(9), Role: RoleInstaller, Site: "praha-1", Jurisdiction: "EU"}
	refused(t, s, alice.sign(t, c), "needs a window end")

	// By invite: a one-time key whose secret only the token carries.
	secret := make([]byte, 32)
	rand.Read(secret)
	ipub, ipriv, err := InviteKeyFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	from, until := t0.Add(time.Hour), t0.Add(3*time.Hour)
	c = cmd(KindCreateInvite, t0)
	c.Invite = &Invite{ID: "inv1", Role: RoleInstaller, Name: "inst", Site: "praha-1", Window: Window{From: from, Until: until},
		Expires: t0.Add(2 * time.Hour), Key: hex.EncodeToString(ipub)}
	mustApply(t, s, alice.sign(t, c))
	redeem := func(priv ed25519.PrivateKey, key string, at time.Time) Envelope {
		c := cmd(KindRedeemInvite, at)
		c.Redeem = &Redeem{Invite: "inv1", PublicKey: key}
		c.Redeem.Proof = ed25519.Sign(priv, RedeemSignedBytes(c.Redeem))
		b, _ := EncodeCommand(c)
		return Envelope{Body: b}
	}
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	refused(t, s, redeem(wrong, nodeKey(9), t0), "does not verify")
	refused(t, s, redeem(ipriv, nodeKey(9), t0.Add(2*time.Hour)), "expired")
	good := redeem(ipriv, nodeKey(9), t0.Add(30*time.Minute))
	// The proof admits only the key it signed.
	var stolen Command
	json.Unmarshal(good.Body, &stolen)
	stolen.ID = "stolen"
	stolen.Redeem.PublicKey = nodeKey(0xee)
	sb, _ := EncodeCommand(&stolen)
	refused(t, s, Envelope{Body: sb}, "does not verify")
	mustApply(t, s, good)
	refused(t, s, redeem(ipriv, nodeKey(10), t0.Add(31*time.Minute)), "already used")

	inst := Subject{"node", "inst"}
	if d := Authorize(s, inst, ActLive, "praha-1/entrance", from.Add(-time.Second)); d.Allow {
		t.Errorf("installer before window: %+v", d)
	}
	if d := Authorize(s, inst, ActLive, "praha-1/entrance", from); !d.Allow {
		t.Errorf("installer live own site in window: %+v", d)
	}
	if d := Authorize(s, inst, ActPlayback, "praha-1/entrance", from); d.Allow {
		t.Errorf("installer playback: %+v", d)
	}
	if d := Authorize(s, inst, ActLive, "brno-1/door", from); d.Allow {
		t.Errorf("installer other site: %+v", d)
	}
	if d := Authorize(s, inst, ActLive, "praha-1/entrance", until); d.Allow {
		t.Errorf("installer after window: %+v", d)
	}
	// Grants cannot widen an installer.
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "inst-more", Subject: inst, Actions: []Action{ActPlayback}, Selector: "*"}
	refused(t, s, alice.sign(t, c), "installer's access is fixed")

	// Peers: the installer is a peer of its own site's store only inside
	// its window, never of the other store.
	names := func(ns []*Node) string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(DesiredPeers(s, "store-praha-1", from)); got != "dc-a,inst" {
		t.Errorf("store-praha-1 peers in window = %s", got)
	}
	if got := names(DesiredPeers(s, "store-praha-1", until)); got != "dc-a" {
		t.Errorf("store-praha-1 peers after window = %s", got)
	}
	if got := names(DesiredPeers(s, "store-brno-1", from)); got != "dc-a" {
		t.Errorf("store-brno-1 peers = %s (stores do not peer with each other or other sites' installers)", got)
	}
	if got := names(DesiredPeers(s, "dc-a", from)); got != "inst,store-brno-1,store-praha-1" {
		t.Errorf("dc-a peers = %s", got)
	}
	if got := DesiredPeers(s, "inst", until); len(got) != 0 {
		t.Errorf("expired installer has peers %s", names(got))
	}
	if got := NextChange(s, t0); !got.Equal(from) {
		t.Errorf("NextChange = %v, want the installer's window start %v", got, from)
	}
	if got := NextChange(s, from); !got.Equal(until) {
		t.Errorf("NextChange = %v, want %v", got, until)
	}
	// Revoking a node removes it from everyone's peers.
	c = cmd(KindRevokeNode, t0)
	c.Name = "store-praha-1"
	mustApply(t, s, alice.sign(t, c))
	if got := names(DesiredPeers(s, "dc-a", from)); got != "inst,store-brno-1" {
		t.Errorf("after revoke dc-a peers = %s", got)
	}
	// The revoked node's entry says when and by whom, for its own status.
	if n := s.Nodes["store-praha-1"]; !n.RevokedAt.Equal(t0) || n.RevokedBy != "alice" {
		t.Errorf("revoked at %v by %q, want %v by alice", n.RevokedAt, n.RevokedBy, t0)
	}
}

func TestCameraRetention(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	c := cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "yard", Purpose: "p", LegalBasis: "b", Retention: 7 * 24 * time.Hour}
	refused(t, s, alice.sign(t, c), "justification")
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "yard", Purpose: "p", LegalBasis: "b", Retention: 7 * 24 * time.Hour,
		Justification: "insurance requires a week of footage for the loading yard"}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "nowhere", Name: "x", Purpose: "p", LegalBasis: "b", Retention: time.Hour}
	refused(t, s, alice.sign(t, c), "no site")
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"body":"e30=","sig":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"body":null}`))
	alice := newTestUser(f, "alice")
	s := founded(f, alice)
	snap, _ := s.Marshal()
	// Signed request commands that the snapshot refuses (no such request;
	// a request by a stranger), so that mutations start from real ones.
	for _, c := range []*Command{
		{ID: "fz1", Time: t0, Kind: KindApproveRequest, Approval: &Approval{Request: "r1", Digest: strings.Repeat("ab", 32)}},
		{ID: "fz2", Time: t0, Kind: KindDenyRequest, Denial: &Denial{Request: "r1", Reason: "no"}},
	} {
		f.Add(alice.sign(f, c).Marshal())
	}
	req := &Command{ID: "fz3", Time: t0, Kind: KindCreateRequest, Request: &Request{ID: "r1", Node: "dc-a", Selector: "praha-1/*",
		From: t0.Add(-time.Hour), To: t0, Purpose: "p", Basis: "b", Key: oneTimeKey, Expires: t0.Add(time.Hour)}}
	f.Add(newTestUser(f, "mallory").sign(f, req).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		var st State
		if err := st.Unmarshal(snap); err != nil {
			t.Fatal(err)
		}
		before, _ := st.Marshal()
		if _, err := st.Apply(env); err == nil {
			t.Fatalf("an unsigned fuzzed envelope was applied: %q", b)
		}
		after, _ := st.Marshal()
		if !bytes.Equal(before, after) {
			t.Fatal("a refused envelope changed the state")
		}
	})
}

func TestNodeKeysHaveOneSpelling(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	c := cmd(KindAddNode, t0)
	c.Node = &Node{Name: "dc-b", PublicKey: nodeKey(0xab), Role: RoleDatacenter, Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	// The same key in capitals must not pass as another node's.
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "dc-c", PublicKey: "nodekey:" + strings.ToUpper(nodeKey(0xab)[len("nodekey:"):]), Role: RoleDatacenter, Jurisdiction: "EU"}
	refused(t, s, alice.sign(t, c), "lower-case")
	if d := Authorize(s, Subject{"user", "alice"}, ActLive, "", t0); d.Allow {
		t.Fatalf("a media action on no camera was allowed: %+v", d)
	}
}

// Text that other admins read back (purposes, legal bases) carries no
// control characters, so no terminal escape reaches another admin's
// screen; a grant that ended before it was made, and a synthetic camera
// the store could not open or that would flood it, are refused.
func TestWeakInputRefused(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	viewer := newTestUser(t, "vic").user(UserViewer)
	c := cmd(KindAddUser, t0)
	c.User = &viewer
	mustApply(t, s, alice.sign(t, c))
	grant := func(w Window, purpose string) Envelope {
		c := cmd(KindAddGrant, t0)
		c.Grant = &Grant{ID: "g-" + c.ID, Subject: Subject{"user", "vic"}, Actions: []Action{ActLive}, Selector: "praha-1/*", Window: w, Purpose: purpose}
		return alice.sign(t, c)
	}
	refused(t, s, grant(Window{Until: t0.Add(-time.Minute)}, ""), "it would never give anything")
	refused(t, s, grant(Window{Until: t0}, ""), "it would never give anything")
	refused(t, s, grant(Window{}, "night shift \x1b[2J\x1b[31mURGENT"), "control character")
	mustApply(t, s, grant(Window{Until: t0.Add(time.Hour)}, "night shift"))

	camera := func(name, src, purpose string) Envelope {
		c := cmd(KindAddCamera, t0)
		c.Camera = &Camera{Site: "praha-1", Name: name, Source: src, Purpose: purpose, LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention}
		return alice.sign(t, c)
	}
	for src, want := range map[string]string{
		"synthetic:?pace=none":   "benchmarks only",
		"synthetic:?fps=0":       "fps",
		"synthetic:?fps=1000":    "fps",
		"synthetic:?scale=64":    "scale",
		"synthetic:?colour=red":  "unknown synthetic parameter",
		"synthetic:?fps=5&fps=6": "given 2 times",
		"synthetic:path":         "only query parameters",
	} {
		refused(t, s, camera("c1", src, "theft"), want)
	}
	refused(t, s, camera("c1", "synthetic:", "theft\x07"), "control character")
	mustApply(t, s, camera("c1", "synthetic:?fps=10&scale=2&pace=real", "theft"))
}

// A camera records when it was added (Applied after its command), so a
// document stamped earlier is known not to cover it; a payload cannot set
// it.
func TestCameraAdded(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	if got := s.Cameras["praha-1/entrance"].Added; got != s.Applied {
		t.Fatalf("the last command added the camera: Added %d, Applied %d", got, s.Applied)
	}
	before := s.Applied
	c := cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "yard", Purpose: "p", LegalBasis: "b", Retention: time.Hour}
	mustApply(t, s, alice.sign(t, c))
	if got := s.Cameras["praha-1/yard"].Added; got != before+1 || got != s.Applied {
		t.Fatalf("yard: Added %d, want %d", got, before+1)
	}
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "praha-1", Name: "gate", Purpose: "p", LegalBasis: "b", Retention: time.Hour, Added: 1}
	refused(t, s, alice.sign(t, c), "the policy sets it")
}
