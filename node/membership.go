package node

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// policySource is what membership needs from the replicated policy: the
// current state (read-only) and Changed, a channel that is closed when the
// state next changes (take it before reading the state, and no change is
// ever missed).
type policySource interface {
	State() *policy.State
	Changed() <-chan struct{}
}

// peerSetter is the mesh as membership sees it.
type peerSetter interface {
	SetPeers([]mesh.Peer) error
}

// readmitting sets the mesh's peers, then has Raft re-check who may keep
// its open conns: the mesh cuts a removed peer, and Raft also drops a conn
// whose peer is still reachable but no longer a live member.
type readmitting struct {
	m *mesh.Mesh
	r *consensus.Node
}

func (x readmitting) SetPeers(p []mesh.Peer) error {
	err := x.m.SetPeers(p)
	x.r.Readmit()
	return err
}

// maxReconcileWait bounds the time between reconciliations even when no
// window boundary is due: a safety net against a missed signal or a clock
// step, cheap because SetPeers changes nothing when nothing changed.
const maxReconcileWait = 10 * time.Second

// membership keeps the mesh's peers equal to policy.DesiredPeers for this
// node, by this node's own clock: on every applied command, and at every
// window boundary (policy.NextChange), also when cut off from consensus —
// a store that hears nothing still drops an installer whose window ended.
type membership struct {
	self  string // our public key, "nodekey:…"
	src   policySource
	mesh  peerSetter
	now   func() time.Time
	logf  func(string, ...any)
	stop  chan struct{}
	wg    sync.WaitGroup
	errMu sync.Mutex // guards err
	err   error      // of the last reconciliation, for status
	// seed is who a joined node talks to until its replica holds a policy.
	seed []mesh.Peer
	// persist, if set, records the peers the policy gave (see readSeed).
	persist func([]mesh.Peer) error
}

// startMembership starts reconciling for the node with public key selfKey
// (found in the policy by key, never by the name it was started with);
// seed is who to talk to while the local replica holds no policy yet.
// persist, if not nil, records each peer set the policy gives.
func startMembership(selfKey string, src policySource, m peerSetter, now func() time.Time, logf func(string, ...any), persist func([]mesh.Peer) error, seed ...mesh.Peer) *membership {
	ms := &membership{self: selfKey, src: src, mesh: m, now: now, logf: logf, stop: make(chan struct{}), seed: seed, persist: persist}
	ms.reconcile() // peers are in place when start returns
	ms.wg.Add(1)
	go ms.loop()
	return ms
}

func (ms *membership) close() {
	close(ms.stop)
	ms.wg.Wait()
}

func (ms *membership) loop() {
	defer ms.wg.Done()
	for {
		changed := ms.src.Changed()
		ms.reconcile()
		wait := maxReconcileWait
		if st := ms.src.State(); st != nil {
			if next := policy.NextChange(st, ms.now()); !next.IsZero() {
				// A few ms past the boundary, so that Window.Contains has
				// flipped when we look.
				if d := next.Sub(ms.now()) + 5*time.Millisecond; d < wait {
					wait = d
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ms.stop:
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// reconcile applies the desired peers now.
func (ms *membership) reconcile() {
	st := ms.src.State()
	if st == nil || st.Federation == "" {
		if err := ms.mesh.SetPeers(ms.seed); err != nil {
			ms.logf("node: membership: seed peers: %v", err)
		}
		return
	}
	peers, skipped := PeersFromPolicy(st, NameByKey(st, ms.self), ms.now())
	for _, s := range skipped {
		ms.logf("node: membership: skipping %s", s)
	}
	err := ms.mesh.SetPeers(peers)
	if err == nil && ms.persist != nil {
		if perr := ms.persist(peers); perr != nil {
			ms.logf("node: membership: remembering the peers for a restart: %v", perr)
		}
	}
	ms.errMu.Lock()
	ms.err = err
	ms.errMu.Unlock()
	if err != nil {
		ms.logf("node: membership: %v", err)
	}
}

// NameByKey finds a node's name in the policy by its public key ("" if
// absent: such a node gets no peers).
func NameByKey(st *policy.State, key string) string {
	for name, n := range st.Nodes {
		if n.PublicKey == key {
			return name
		}
	}
	return ""
}

// PeersFromPolicy turns policy.DesiredPeers into mesh peers. An entry that
// cannot be a peer (a bad key, a key listed twice) is skipped and reported,
// never allowed to block the rest: one bad entry must not stop a revocation
// from reaching the mesh.
func PeersFromPolicy(st *policy.State, self string, now time.Time) (peers []mesh.Peer, skipped []string) {
	seen := map[keys.NodePublic]string{}
	if me := st.Nodes[self]; me != nil {
		if pub, err := keys.ParseNodePublic(me.PublicKey); err == nil {
			seen[pub] = self
		}
	}
	for _, n := range policy.DesiredPeers(st, self, now) {
		pub, err := keys.ParseNodePublic(n.PublicKey)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("node %q: %v", n.Name, err))
			continue
		}
		if other, dup := seen[pub]; dup {
			skipped = append(skipped, fmt.Sprintf("node %q has the key of %q", n.Name, other))
			continue
		}
		seen[pub] = n.Name
		p := mesh.Peer{Name: n.Name, PublicKey: pub}
		if n.Endpoint != "" {
			if ep, err := netip.ParseAddrPort(n.Endpoint); err == nil && ep.Port() != 0 && !ep.Addr().IsUnspecified() {
				p.Endpoint = ep
			}
		}
		peers = append(peers, p)
	}
	return peers, skipped
}
