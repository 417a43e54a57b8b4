package join

import (
	"context"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// Raft is the node's consensus as the leader's voter staging sees it (a
// *consensus.Node).
type Raft interface {
	LeaderCh() <-chan bool
	Status() consensus.Status
	Remove(ctx context.Context, id string) error
	AddNonvoter(ctx context.Context, s consensus.Server) error
	AddVoter(ctx context.Context, s consensus.Server) error
}

// Mesh is what voter staging reads of the mesh (a *mesh.Mesh): a node's
// mesh address, and whom gossip sees alive.
type Mesh interface {
	AddrOf(pub keys.NodePublic) netip.Addr
	Status() ([]mesh.PeerStatus, error)
}

// Voters keeps, on the leader, the Raft configuration equal to the
// policy: live datacenters and witnesses vote; live stores, admin nodes and
// installers (inside their window: they need the policy to know their
// peers) replicate as non-voters; anyone else is removed. A new member
// enters Raft once the mesh has reached it (see reconcile).
type Voters struct {
	Policy   Policy
	Raft     Raft
	Mesh     Mesh
	RaftPort uint16        // the mesh TCP port of consensus
	Recheck  time.Duration // how often to look again with nothing staged
	Logf     func(format string, args ...any)

	// stagedSince: future voters replicating as non-voters, since when
	// (touched only by the Run goroutine).
	stagedSince map[string]time.Time
	// unreached counts the members the last pass left out of Raft because
	// the mesh has not reached them yet (touched only by Run).
	unreached int
}

// Run reconciles on every policy change and when this node becomes
// leader, until stop is closed.
func (v *Voters) Run(stop <-chan struct{}) {
	leader := false
	for {
		changed := v.Policy.Changed()
		if leader {
			v.reconcile()
		}
		select {
		case <-stop:
			return
		case l := <-v.Raft.LeaderCh():
			leader = l
		case <-changed:
		case <-time.After(v.recheck()):
		}
	}
}

// recheck is how soon Run looks again: soon while a new member waits for
// its first handshake, or a future voter for promotion.
func (v *Voters) recheck() time.Duration {
	switch {
	case v.unreached > 0:
		return reachPoll
	case len(v.stagedSince) > 0:
		return time.Second
	}
	return v.Recheck
}

// reachPoll is how often Run looks for a new member the mesh has not
// reached yet: it is added to Raft within this of its first handshake.
const reachPoll = 250 * time.Millisecond

// promoteAfter is how long a future voter replicates as a non-voter, and
// is seen alive by gossip, before it gets a vote.
const promoteAfter = 3 * time.Second

func (v *Voters) reconcile() {
	if v.stagedSince == nil {
		v.stagedSince = map[string]time.Time{}
	}
	st := v.Policy.State()
	now := time.Now()
	want := map[string]consensus.Server{}
	voter := map[string]bool{}
	for name, pn := range st.Nodes {
		if !policy.Member(st, name, now) {
			continue
		}
		pub, err := keys.ParseNodePublic(pn.PublicKey)
		if err != nil {
			continue
		}
		want[pn.PublicKey] = consensus.Server{ID: pn.PublicKey, Addr: netip.AddrPortFrom(v.Mesh.AddrOf(pub), v.RaftPort)}
		voter[pn.PublicKey] = pn.Role == policy.RoleDatacenter || pn.Role == policy.RoleWitness
	}
	cur := v.Raft.Status()
	have := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range cur.Members {
		have[m.ID] = m.Voter
		if _, ok := want[m.ID]; !ok && m.ID != cur.ID {
			if err := v.Raft.Remove(ctx, m.ID); err != nil {
				v.Logf("node: raft: remove %s: %v", m.ID, err)
			}
		}
	}
	live, reached := v.reachable()
	v.unreached = 0
	for id, s := range want {
		isVoter, present := have[id]
		if present && isVoter == voter[id] {
			delete(v.stagedSince, id)
			continue
		}
		var err error
		switch {
		case !present && !reached(s.Addr.Addr()):
			// Not up yet (a node joined but not started): Raft would
			// only fail to reach it, again and again, and back off
			// further each time (to 10 s between tries), so that the
			// node, once up, would wait that long for the log. Added at
			// its first handshake, replication starts at once.
			v.unreached++
			continue
		case !present:
			// Every server starts as a non-voter: a voter that cannot be
			// reached yet would cost the cluster its quorum (with one voter,
			// the leader would step down at once).
			err = v.Raft.AddNonvoter(ctx, s)
			if voter[id] {
				v.stagedSince[id] = time.Now()
			}
		case voter[id]:
			// Promote once it has replicated for a while and gossip sees it.
			since, ok := v.stagedSince[id]
			if !ok {
				v.stagedSince[id] = time.Now()
				continue
			}
			if time.Since(since) < promoteAfter || !live[s.Addr.Addr()] {
				continue
			}
			err = v.Raft.AddVoter(ctx, s)
		default:
			err = v.Raft.AddNonvoter(ctx, s) // demotion
		}
		if err != nil {
			v.Logf("node: raft: add %s: %v", id, err)
		}
	}
}

// reachable reads the mesh: whom gossip sees alive, and a test for whether
// a node has been reached at all (a completed WireGuard handshake, or
// alive in gossip). If the mesh cannot say, every node counts as reached:
// joining must not hang on the mesh's status.
func (v *Voters) reachable() (live map[netip.Addr]bool, reached func(netip.Addr) bool) {
	live = map[netip.Addr]bool{}
	ps, err := v.Mesh.Status()
	if err != nil {
		return live, func(netip.Addr) bool { return true }
	}
	shook := map[netip.Addr]bool{}
	for _, p := range ps {
		live[p.Addr] = p.Liveness == "alive"
		shook[p.Addr] = !p.LastHandshake.IsZero() || live[p.Addr]
	}
	return live, func(a netip.Addr) bool { return shook[a] }
}
