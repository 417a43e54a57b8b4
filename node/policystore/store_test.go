package policystore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

func TestPolicyStoreApplyAndSnapshot(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ps := New(nil)
	var seen []string
	ps.OnApply = func(c *policy.Command, err error) {
		if c != nil {
			seen = append(seen, c.ID)
		}
	}
	changed := ps.Changed()
	genesis := &policy.Command{ID: "genesis", Time: now, Kind: policy.KindGenesis, Genesis: &policy.Genesis{
		Federation: "acme",
		Admin:      policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
		Node:       policy.Node{Name: "dc-a", PublicKey: keys.NewNodePrivate().Public().String(), Role: policy.RoleDatacenter, Jurisdiction: "EU"},
	}}
	body, _ := policy.EncodeCommand(genesis)
	res := applyResult(t, ps, policy.Envelope{Body: body})
	if !res.Applied {
		t.Fatalf("genesis refused: %s", res.Reason)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed was not closed by an applied command")
	}
	before := ps.State()
	// A signed command from the admin applies; a replay is refused, changes
	// nothing and does not signal.
	site := &policy.Command{ID: "s1", Time: now, Signer: "alice", Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}}
	body, _ = policy.EncodeCommand(site)
	sig, err := admin.Sign(policy.SignedBytes(ps.State().FederationID, body), now)
	if err != nil {
		t.Fatal(err)
	}
	env := policy.Envelope{Body: body, Sig: sig}
	if res := applyResult(t, ps, env); !res.Applied {
		t.Fatalf("site refused: %s", res.Reason)
	}
	if before.Sites["praha-1"] != nil {
		t.Fatal("Apply changed a state a reader held (must copy)")
	}
	changed = ps.Changed()
	if res := applyResult(t, ps, env); res.Applied || res.Reason == "" {
		t.Fatalf("replay applied: %+v", res)
	}
	select {
	case <-changed:
		t.Fatal("a refused command signalled a change")
	default:
	}
	if res := applyResult(t, ps, policy.Envelope{Body: []byte("garbage")}); res.Applied {
		t.Fatal("garbage applied")
	}
	snap, err := ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	other := New(nil)
	if err := other.Restore(snap); err != nil {
		t.Fatal(err)
	}
	a, _ := ps.State().Marshal()
	b, _ := other.State().Marshal()
	if string(a) != string(b) {
		t.Fatal("restored snapshot differs")
	}
	if len(seen) != 3 {
		t.Fatalf("onApply saw %v", seen)
	}

	// A snapshot with a forged entry is refused whole.
	forged := &policy.Command{ID: "s2", Time: now, Signer: "alice", Kind: policy.KindAddSite, Site: &policy.Site{Name: "evil", Jurisdiction: "EU"}}
	fbody, _ := policy.EncodeCommand(forged)
	var bad snapshotV1
	json.Unmarshal(snap, &bad)
	bad.Log = append(bad.Log, policy.Envelope{Body: fbody, Sig: sig}.Marshal())
	badSnap, _ := json.Marshal(bad)
	victim := New(nil)
	if err := victim.Restore(badSnap); err == nil {
		t.Fatal("a snapshot with a forged entry was restored")
	}
	if victim.State().Federation != "" {
		t.Fatal("a refused snapshot changed the state")
	}

	// An anchored node refuses a genesis that is not its own.
	anchored := New(&policy.Anchor{Federation: "acme", AdminFP: "00", NodeKey: genesis.Genesis.Node.PublicKey})
	gbody, _ := policy.EncodeCommand(genesis)
	if res := applyResult(t, anchored, policy.Envelope{Body: gbody}); res.Applied {
		t.Fatal("a genesis with another admin was accepted by an anchored node")
	}
	if err := anchored.Restore(snap); err == nil {
		t.Fatal("an anchored node restored a foreign federation")
	}
}

func applyResult(t *testing.T, ps *Store, env policy.Envelope) policy.ApplyResult {
	t.Helper()
	out, err := ps.Apply(env.Marshal(), 1)
	if err != nil {
		t.Fatalf("Apply error (a broken replica): %v", err)
	}
	var r policy.ApplyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// An anchored store takes its own genesis, then refuses what the anchored
// admin did not sign and any second genesis: nothing changes, nothing is
// signalled, and OnApply sees each refusal with its reason.
func TestAnchoredStoreRefusesForeignSignatures(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	alice, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	mallory, err := keys.NewAdminKey("alice", now.Add(-time.Hour)) // same name, other key
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	nodeKey := keys.NewNodePrivate().Public().String()
	genesis := func(admin *keys.AdminKey) policy.Envelope {
		body, _ := policy.EncodeCommand(&policy.Command{ID: "genesis", Time: now, Kind: policy.KindGenesis, Genesis: &policy.Genesis{
			Federation: "acme",
			Admin:      policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
			Node:       policy.Node{Name: "dc-a", PublicKey: nodeKey, Role: policy.RoleDatacenter, Jurisdiction: "EU"},
		}})
		return policy.Envelope{Body: body}
	}
	anchor := &policy.Anchor{Federation: "acme", AdminFP: alice.Fingerprint(), NodeKey: nodeKey}
	ps := New(anchor)
	var refused []error
	ps.OnApply = func(c *policy.Command, err error) {
		if err != nil {
			refused = append(refused, err)
		}
	}
	if r := applyResult(t, ps, genesis(mallory)); r.Applied {
		t.Fatal("the anchored store took a genesis by another admin")
	}
	if r := applyResult(t, ps, genesis(alice)); !r.Applied {
		t.Fatalf("the anchored store refused its own genesis: %s", r.Reason)
	}
	if got := ps.State().FederationID; got == "" || got != anchor.FederationID() {
		t.Fatalf("state's federation ID %q, the anchor names %q", got, anchor.FederationID())
	}

	site := func(id string, by *keys.AdminKey) policy.Envelope {
		body, _ := policy.EncodeCommand(&policy.Command{ID: id, Time: now, Signer: "alice", Kind: policy.KindAddSite,
			Site: &policy.Site{Name: id, Jurisdiction: "EU"}})
		sig, err := by.Sign(policy.SignedBytes(anchor.FederationID(), body), now)
		if err != nil {
			t.Fatal(err)
		}
		return policy.Envelope{Body: body, Sig: sig}
	}
	before := ps.State()
	changed := ps.Changed()
	refused = nil
	for _, env := range []policy.Envelope{site("forged", mallory), genesis(alice)} {
		if r := applyResult(t, ps, env); r.Applied || r.Reason == "" {
			t.Fatalf("applied %+v", r)
		}
	}
	if ps.State() != before {
		t.Fatal("a refused command replaced the state")
	}
	select {
	case <-changed:
		t.Fatal("a refused command signalled a change")
	default:
	}
	if len(refused) != 2 {
		t.Fatalf("OnApply saw %d refusals, want 2: %v", len(refused), refused)
	}
	if r := applyResult(t, ps, site("real", alice)); !r.Applied {
		t.Fatalf("the anchored admin's command refused: %s", r.Reason)
	}
	if ps.State().Sites["real"] == nil || ps.State().Sites["forged"] != nil {
		t.Fatalf("sites after the commands: %v", ps.State().Sites)
	}
}
