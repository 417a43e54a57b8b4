package join

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// raftTwin is an in-memory Raft configuration that records the changes
// asked of it.
type raftTwin struct {
	self    string
	members map[string]bool // ID: voter
	log     []string
}

func (r *raftTwin) LeaderCh() <-chan bool { return nil }

func (r *raftTwin) Status() consensus.Status {
	st := consensus.Status{ID: r.self}
	for id, v := range r.members {
		st.Members = append(st.Members, consensus.Member{Server: consensus.Server{ID: id}, Voter: v})
	}
	return st
}

func (r *raftTwin) Remove(_ context.Context, id string) error {
	r.log = append(r.log, "remove "+id)
	delete(r.members, id)
	return nil
}

func (r *raftTwin) AddNonvoter(_ context.Context, s consensus.Server) error {
	r.log = append(r.log, "nonvoter "+s.ID)
	r.members[s.ID] = false
	return nil
}

func (r *raftTwin) AddVoter(_ context.Context, s consensus.Server) error {
	r.log = append(r.log, "voter "+s.ID)
	r.members[s.ID] = true
	return nil
}

// meshTwin names every node's mesh address from its key, sees alive whom
// alive holds and reports a handshake with whom shook holds; with fail
// set, its Status fails.
type meshTwin struct {
	prefix netip.Prefix
	alive  map[netip.Addr]bool
	shook  map[netip.Addr]bool
	fail   bool
}

func (m *meshTwin) AddrOf(pub keys.NodePublic) netip.Addr { return keys.MeshAddr(m.prefix, pub) }

func (m *meshTwin) Status() ([]mesh.PeerStatus, error) {
	if m.fail {
		return nil, errors.New("mesh twin: no status")
	}
	var out []mesh.PeerStatus
	for a := range m.shook {
		ps := mesh.PeerStatus{Addr: a, Liveness: "unknown", LastHandshake: time.Now()}
		if m.alive[a] {
			ps.Liveness = "alive"
		}
		out = append(out, ps)
	}
	for a, ok := range m.alive {
		if ok && !m.shook[a] {
			out = append(out, mesh.PeerStatus{Addr: a, Liveness: "alive"})
		}
	}
	return out, nil
}

func (m *meshTwin) shake(prefix netip.Prefix, keyText string) {
	pub, _ := keys.ParseNodePublic(keyText)
	m.shook[keys.MeshAddr(prefix, pub)] = true
}

// A new datacenter replicates as a non-voter first and gets its vote only
// after promoteAfter and once gossip sees it alive; a store never votes; a
// server the policy does not name is removed.
func TestVotersStageNewVoters(t *testing.T) {
	key := func() string {
		p := keys.NewNodePrivate()
		defer p.Zero()
		return p.Public().String()
	}
	self, dcB, store, stranger := key(), key(), key(), key()
	st := &policy.State{Federation: "acme", Nodes: map[string]*policy.Node{
		"dc-a":  {Name: "dc-a", PublicKey: self, Role: policy.RoleDatacenter},
		"dc-b":  {Name: "dc-b", PublicKey: dcB, Role: policy.RoleDatacenter},
		"store": {Name: "store", PublicKey: store, Role: policy.RoleStore},
	}}
	prefix, err := keys.MeshPrefix("acme")
	if err != nil {
		t.Fatal(err)
	}
	r := &raftTwin{self: self, members: map[string]bool{self: true, stranger: true}}
	m := &meshTwin{prefix: prefix, alive: map[netip.Addr]bool{}, shook: map[netip.Addr]bool{}}
	v := &Voters{Policy: &twin{st: st}, Raft: r, Mesh: m, RaftPort: 7000, Recheck: time.Minute, Logf: t.Logf}

	// Neither new member has been reached (joined, not started): Raft does
	// not get them yet, and they are looked for again soon.
	v.reconcile()
	if want := []string{"remove " + stranger}; !slices.Equal(r.log, want) || v.recheck() != reachPoll {
		t.Fatalf("before any handshake: %q (recheck %v), want %q, looked at again within %v", r.log, v.recheck(), want, reachPoll)
	}
	// Their first handshakes: both enter Raft as non-voters.
	r.log = nil
	m.shake(prefix, dcB)
	m.shake(prefix, store)
	v.reconcile()
	slices.Sort(r.log)
	want := []string{"nonvoter " + dcB, "nonvoter " + store}
	slices.Sort(want)
	if !slices.Equal(r.log, want) {
		t.Fatalf("first pass: %q, want %q", r.log, want)
	}
	if _, staged := v.stagedSince[dcB]; !staged || len(v.stagedSince) != 1 || v.recheck() != time.Second {
		t.Fatalf("staged %v (recheck %v), want dc-b alone, looked at again within a second", v.stagedSince, v.recheck())
	}

	// Replicated long enough, but gossip does not see it: no vote yet.
	r.log = nil
	v.stagedSince[dcB] = time.Now().Add(-promoteAfter - time.Second)
	v.reconcile()
	if len(r.log) != 0 {
		t.Fatalf("promoted a future voter gossip does not see: %q", r.log)
	}
	b, _ := keys.ParseNodePublic(dcB)
	m.alive[keys.MeshAddr(prefix, b)] = true
	v.reconcile()
	if !slices.Equal(r.log, []string{"voter " + dcB}) || !r.members[dcB] || r.members[store] {
		t.Fatalf("once alive: %q, members %v", r.log, r.members)
	}
	// Settled: nothing staged, nothing more to do.
	r.log = nil
	v.reconcile()
	if len(r.log) != 0 || len(v.stagedSince) != 0 || v.recheck() != time.Minute {
		t.Fatalf("settled configuration changed: %q, staged %v", r.log, v.stagedSince)
	}
}

// A mesh that cannot report whom it reached does not hold joins up: every
// new member enters Raft, as if reached.
func TestVotersAddAllWhenMeshCannotSay(t *testing.T) {
	self, store := keys.NewNodePrivate().Public().String(), keys.NewNodePrivate().Public().String()
	st := &policy.State{Federation: "acme", Nodes: map[string]*policy.Node{
		"dc-a":  {Name: "dc-a", PublicKey: self, Role: policy.RoleDatacenter},
		"store": {Name: "store", PublicKey: store, Role: policy.RoleStore},
	}}
	prefix, err := keys.MeshPrefix("acme")
	if err != nil {
		t.Fatal(err)
	}
	r := &raftTwin{self: self, members: map[string]bool{self: true}}
	v := &Voters{Policy: &twin{st: st}, Raft: r, Mesh: &meshTwin{prefix: prefix, fail: true}, RaftPort: 7000, Recheck: time.Minute, Logf: t.Logf}
	v.reconcile()
	if want := []string{"nonvoter " + store}; !slices.Equal(r.log, want) || v.recheck() != time.Minute {
		t.Fatalf("with no mesh status: %q (recheck %v), want %q", r.log, v.recheck(), want)
	}
}
