package join

import (
	"context"
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

// meshTwin names every node's mesh address from its key and sees alive
// whom alive holds.
type meshTwin struct {
	prefix netip.Prefix
	alive  map[netip.Addr]bool
}

func (m *meshTwin) AddrOf(pub keys.NodePublic) netip.Addr { return keys.MeshAddr(m.prefix, pub) }

func (m *meshTwin) Status() ([]mesh.PeerStatus, error) {
	var out []mesh.PeerStatus
	for a, ok := range m.alive {
		if ok {
			out = append(out, mesh.PeerStatus{Addr: a, Liveness: "alive"})
		}
	}
	return out, nil
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
	m := &meshTwin{prefix: prefix, alive: map[netip.Addr]bool{}}
	v := &Voters{Policy: &twin{st: st}, Raft: r, Mesh: m, RaftPort: 7000, Recheck: time.Minute, Logf: t.Logf}

	v.reconcile()
	slices.Sort(r.log)
	want := []string{"nonvoter " + dcB, "nonvoter " + store, "remove " + stranger}
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
