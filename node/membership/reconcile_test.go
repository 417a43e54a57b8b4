package membership

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// fakeMesh is a PeerSetter that remembers what it was given.
type fakeMesh struct {
	mu    sync.Mutex
	calls [][]mesh.Peer
	fail  error // returned by SetPeers, if set
}

func (f *fakeMesh) SetPeers(p []mesh.Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(p))
	return f.fail
}

// names returns the sorted names of the peers last set, and whether any
// were set at all.
func (f *fakeMesh) names() ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil, false
	}
	var out []string
	for _, p := range f.calls[len(f.calls)-1] {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out, true
}

// logs collects what the reconciler logs.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logs) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// Against twins of the policy and the mesh: the seed until the replica
// holds a policy, then the policy's peers (remembered for a restart); a
// revocation and a window's end remove a peer; a bad entry is skipped
// without blocking the rest; a refused SetPeers is logged and not
// remembered.
func TestReconcilerFollowsPolicyTwin(t *testing.T) {
	nodetest.CheckLeaks(t)
	key := func() string { return keys.NewNodePrivate().Public().String() }
	self, storeKey, instKey := key(), key(), key()
	seed := mesh.Peer{Name: "seed-dc", PublicKey: keys.NewNodePrivate().Public()}
	end := time.Now().Add(700 * time.Millisecond)
	state := func(storeRevoked bool) *policy.State {
		return &policy.State{Federation: "t", Nodes: map[string]*policy.Node{
			"dc": {Name: "dc", PublicKey: self, Role: policy.RoleDatacenter, Site: "s1", Jurisdiction: "EU"},
			"store": {Name: "store", PublicKey: storeKey, Role: policy.RoleStore, Site: "s1", Jurisdiction: "EU",
				Endpoint: "127.0.0.1:51820", Revoked: storeRevoked},
			"inst": {Name: "inst", PublicKey: instKey, Role: policy.RoleInstaller, Site: "s1", Jurisdiction: "EU",
				Window: policy.Window{Until: end}},
			"broken": {Name: "broken", PublicKey: "nodekey:1234", Role: policy.RoleStore, Site: "s1", Jurisdiction: "EU"},
		}}
	}
	src := nodetest.NewPolicy(&policy.State{})
	m := &fakeMesh{}
	var log logs
	var remembered [][]mesh.Peer
	var remMu sync.Mutex
	ms := Start(Config{Self: self, Policy: src, Mesh: m, Now: time.Now, Logf: log.logf, Seed: []mesh.Peer{seed},
		Persist: func(p []mesh.Peer) error {
			remMu.Lock()
			defer remMu.Unlock()
			remembered = append(remembered, p)
			return nil
		}})
	defer ms.Close()

	// No policy yet: the seed, set before Start returned, and not remembered.
	if got, _ := m.names(); !slices.Equal(got, []string{"seed-dc"}) {
		t.Fatalf("without a policy the peers are %v, want the seed", got)
	}
	remMu.Lock()
	if len(remembered) != 0 {
		t.Fatalf("the seed was remembered as the policy's peers: %v", remembered)
	}
	remMu.Unlock()

	want := func(what string, names ...string) {
		t.Helper()
		nodetest.WaitTrue(t, 5*time.Second, what, func() bool {
			got, _ := m.names()
			return slices.Equal(got, names)
		})
	}
	src.Set(state(false))
	want("the policy's peers", "inst", "store")
	if !log.has(`skipping node "broken"`) {
		t.Errorf("the entry with a bad key was not reported; log:\n%s", log.String())
	}
	m.mu.Lock()
	last := m.calls[len(m.calls)-1]
	m.mu.Unlock()
	for _, p := range last {
		if p.Name == "store" && p.Endpoint != netip.MustParseAddrPort("127.0.0.1:51820") {
			t.Errorf("store's endpoint is %v", p.Endpoint)
		}
		if p.Name == "inst" && p.Endpoint.IsValid() {
			t.Errorf("inst has endpoint %v, the policy gives none", p.Endpoint)
		}
	}
	remMu.Lock()
	if n := len(remembered); n == 0 || len(remembered[n-1]) != 2 {
		t.Errorf("the policy's peers were not remembered: %v", remembered)
	}
	remMu.Unlock()

	// The installer's window ends by the clock, with no change signalled.
	want("the installer dropped at its window's end", "store")
	if late := time.Since(end); late > 2*time.Second {
		t.Errorf("installer dropped %v after its window", late)
	}

	// Revocation arrives as a policy change.
	src.Set(state(true))
	want("the revoked store dropped")

	// A mesh that refuses is logged, and what it refused is not remembered.
	remMu.Lock()
	before := len(remembered)
	remMu.Unlock()
	m.mu.Lock()
	m.fail = errors.New("mesh says no")
	m.mu.Unlock()
	src.Set(state(false))
	nodetest.WaitTrue(t, 5*time.Second, "the refusal logged", func() bool { return log.has("node: membership: mesh says no") })
	remMu.Lock()
	defer remMu.Unlock()
	if len(remembered) != before {
		t.Errorf("peers the mesh refused were remembered: %v", remembered[before:])
	}
}

// A replica that replays the log and has not reached this node's own
// membership names too few peers (none for this node): the node keeps its
// seed, less the seeds the replica already names as no live member, so
// that the leader bringing the rest of the log is not cut off. Once the
// replica names the node, the policy alone decides, and a revoked node
// gets no peers at all.
func TestReconcilerKeepsSeedWhileCatchingUp(t *testing.T) {
	nodetest.CheckLeaks(t)
	priv := func() keys.NodePublic { return keys.NewNodePrivate().Public() }
	self, leader, revoked, early := priv(), priv(), priv(), priv()
	seed := []mesh.Peer{{Name: "dc-a", PublicKey: leader}, {Name: "dc-x", PublicKey: revoked}}
	node := func(name string, k keys.NodePublic, role policy.NodeRole, gone bool) *policy.Node {
		return &policy.Node{Name: name, PublicKey: k.String(), Role: role, Jurisdiction: "EU", Site: "s1", Revoked: gone}
	}
	// Early in the log: the genesis datacenter, dc-x already revoked; the
	// leader (dc-a) and this store come later.
	partial := &policy.State{Federation: "t", Nodes: map[string]*policy.Node{
		"dc-0": node("dc-0", early, policy.RoleDatacenter, false),
		"dc-x": node("dc-x", revoked, policy.RoleDatacenter, true),
	}}
	src := nodetest.NewPolicy(partial)
	m := &fakeMesh{}
	ms := Start(Config{Self: self.String(), Policy: src, Mesh: m, Now: time.Now, Logf: t.Logf, Seed: seed})
	defer ms.Close()
	if got, _ := m.names(); !slices.Equal(got, []string{"dc-a"}) {
		t.Fatalf("catching up, the peers are %v, want the seed less the revoked dc-x: [dc-a]", got)
	}
	if !CatchingUp(partial, self.String()) || !CatchingUp(nil, self.String()) || !CatchingUp(&policy.State{}, self.String()) {
		t.Fatal("a replica that does not name the node is not catching up")
	}

	full := &policy.State{Federation: "t", Nodes: map[string]*policy.Node{
		"dc-0":  partial.Nodes["dc-0"],
		"dc-x":  partial.Nodes["dc-x"],
		"dc-a":  node("dc-a", leader, policy.RoleDatacenter, false),
		"store": node("store", self, policy.RoleStore, false),
	}}
	src.Set(full)
	nodetest.WaitTrue(t, 5*time.Second, "the policy's peers once the replica names the node", func() bool {
		got, _ := m.names()
		return slices.Equal(got, []string{"dc-0", "dc-a"})
	})
	if CatchingUp(full, self.String()) {
		t.Fatal("a replica that names the node is still catching up")
	}

	gone := full.Clone()
	gone.Nodes["store"].Revoked = true
	src.Set(gone)
	nodetest.WaitTrue(t, 5*time.Second, "no peers for a revoked node, seed or not", func() bool {
		got, set := m.names()
		return set && len(got) == 0
	})
}

// A node the policy does not name (by key) gets no peers but its seed
// (none here), whatever its name: the key decides.
func TestReconcilerUnknownSelfGetsNoPeers(t *testing.T) {
	nodetest.CheckLeaks(t)
	other := keys.NewNodePrivate().Public().String()
	st := &policy.State{Federation: "t", Nodes: map[string]*policy.Node{
		"dc": {Name: "dc", PublicKey: other, Role: policy.RoleDatacenter, Site: "s1", Jurisdiction: "EU"},
	}}
	m := &fakeMesh{}
	ms := Start(Config{Self: keys.NewNodePrivate().Public().String(), Policy: nodetest.NewPolicy(st),
		Mesh: m, Now: time.Now, Logf: t.Logf})
	ms.Close()
	got, set := m.names()
	if !set || len(got) != 0 {
		t.Fatalf("a node absent from the policy got peers %v (set: %v)", got, set)
	}
	if st.NameOfKey(other) != "dc" || st.NameOfKey("nodekey:none") != "" {
		t.Fatal("NameByKey does not find nodes by key")
	}
}
