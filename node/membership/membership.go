// Package membership owns the policy's peers into the mesh: it keeps a
// node's WireGuard peers equal to policy.DesiredPeers by the node's own
// clock, so a revocation or a window's end cuts a peer off even when the
// node hears nothing from consensus; and, for nodes not founded with init,
// the static peers file that stands in for the policy. It also prints the
// peer table of custos status.
//
// It only reads the policy and sets peers: it never changes the policy,
// never talks to consensus (the node's PeerSetter may have Raft re-check
// its conns after the mesh changes) and never decides what a peer may do
// once connected.
package membership

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// Policy is what membership needs from the replicated policy: the
// current state (read-only) and Changed, a channel that is closed when the
// state next changes (take it before reading the state, and no change is
// ever missed).
type Policy interface {
	State() *policy.State
	Changed() <-chan struct{}
}

// PeerSetter is the mesh as membership sees it.
type PeerSetter interface {
	SetPeers([]mesh.Peer) error
}

// MaxReconcileWait bounds the time between reconciliations even when no
// window boundary is due: a safety net against a missed signal or a clock
// step, cheap because SetPeers changes nothing when nothing changed.
const MaxReconcileWait = 10 * time.Second

// Config is what Start needs.
type Config struct {
	// Self is our public key, "nodekey:…": the node is found in the policy
	// by key, never by the name it was started with.
	Self   string
	Policy Policy
	Mesh   PeerSetter
	Now    func() time.Time
	Logf   func(string, ...any)
	// Persist, if not nil, records each peer set the policy gives.
	Persist func([]mesh.Peer) error
	// Seed is who to talk to while the local replica is catching up (see
	// CatchingUp).
	Seed []mesh.Peer
}

// Reconciler keeps the mesh's peers equal to policy.DesiredPeers for this
// node, by this node's own clock: on every applied command, and at every
// window boundary (policy.NextChange), also when cut off from consensus —
// a store that hears nothing still drops an installer whose window ended.
type Reconciler struct {
	self  string // our public key, "nodekey:…"
	src   Policy
	mesh  PeerSetter
	now   func() time.Time
	logf  func(string, ...any)
	stop  chan struct{}
	wg    sync.WaitGroup
	errMu sync.Mutex // guards err
	err   error      // of the last reconciliation, for status
	// seed is who the node talks to while its replica catches up.
	seed []mesh.Peer
	// persist, if set, records the peers the policy gave (see the node's
	// readSeed).
	persist func([]mesh.Peer) error
}

// Start starts reconciling for the node cfg.Self; the peers are in place
// when it returns. Close stops it.
func Start(cfg Config) *Reconciler {
	ms := &Reconciler{self: cfg.Self, src: cfg.Policy, mesh: cfg.Mesh, now: cfg.Now, logf: cfg.Logf, stop: make(chan struct{}), seed: cfg.Seed, persist: cfg.Persist}
	ms.reconcile() // peers are in place when start returns
	ms.wg.Add(1)
	go ms.loop()
	return ms
}

// Close stops reconciling; the mesh keeps the peers last set.
func (ms *Reconciler) Close() {
	close(ms.stop)
	ms.wg.Wait()
}

func (ms *Reconciler) loop() {
	defer ms.wg.Done()
	for {
		changed := ms.src.Changed()
		ms.reconcile()
		wait := MaxReconcileWait
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
func (ms *Reconciler) reconcile() {
	st := ms.src.State()
	if CatchingUp(st, ms.self) {
		if err := ms.mesh.SetPeers(SeedPeers(st, ms.seed, ms.now())); err != nil {
			ms.logf("node: membership: seed peers: %v", err)
		}
		return
	}
	peers, skipped := PeersFromPolicy(st, st.NameOfKey(ms.self), ms.now())
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

// CatchingUp reports whether the replica st does not yet name the node
// self (by key): it is empty (a new or restarted node before a leader
// brought it the log), or it is replaying the log and has not reached the
// node's own membership. A partial replica names too few peers (none at
// all before self is in it: policy.DesiredPeers gives a non-member none),
// and following it would cut the node off from the very leader that
// brings it the rest of the log.
func CatchingUp(st *policy.State, self string) bool {
	return st == nil || st.NameOfKey(self) == ""
}

// SeedPeers is the seed less any peer the replica st already names as no
// live member (revoked, or outside its window): while catching up, the
// node talks to the nodes it joined through or last had, and the policy,
// as far as it goes, still has the last word.
func SeedPeers(st *policy.State, seed []mesh.Peer, now time.Time) []mesh.Peer {
	out := make([]mesh.Peer, 0, len(seed))
	for _, p := range seed {
		if SeedAdmitted(st, p.PublicKey, now) {
			out = append(out, p)
		}
	}
	return out
}

// SeedAdmitted reports whether a seed peer may be talked to while the
// replica st catches up: unless st names it, and not as a live member.
func SeedAdmitted(st *policy.State, pub keys.NodePublic, now time.Time) bool {
	if st == nil {
		return true
	}
	name := st.NameOfKey(pub.String())
	return name == "" || policy.Member(st, name, now)
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
