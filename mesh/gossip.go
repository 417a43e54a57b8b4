package mesh

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/custos-cctv/custos/keys"
)

// gossip runs memberlist over the mesh. Members are named by their public
// key; a member is believed only if its mesh address is the one its key
// implies, and it only ever informs us about peers we already have: it can
// fill in a peer's endpoint, never add a peer.
type gossip struct {
	m        *Mesh
	list     *memberlist.Memberlist
	endpoint netip.AddrPort // the configured endpoint, gossiped as "ep"

	metaMu sync.Mutex
	meta   []byte

	mu     sync.Mutex            // guards state, metas and closed
	state  map[netip.Addr]string // last event per verified member
	metas  map[netip.Addr][]byte // metadata of each verified live member, copied in its event
	closed bool

	joinSem chan struct{} // bounds concurrent joins
	// joining holds the addresses with a join started and not yet done
	// (guarded by mu): rejoinLoop asks every second for each peer it does
	// not see, and a join to a peer that is down takes longer than that,
	// so without it the waiting joins pile up for as long as it is down.
	joining map[string]bool
	started int // joins started and not done (guarded by mu; tests)

	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func startGossip(m *Mesh, endpoint netip.AddrPort) (*gossip, error) {
	g := &gossip{m: m, endpoint: endpoint, state: map[netip.Addr]string{}, metas: map[netip.Addr][]byte{}, joinSem: make(chan struct{}, maxConcurrentJoins)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.meta = encodeGossipMeta(endpoint, nil)
	t, err := newGossipTransport(meshNet{m}, netip.AddrPortFrom(m.addr, GossipPort), m.logf)
	if err != nil {
		return nil, err
	}
	cfg := gossipConfig(m.pub.String(), t, m.logf)
	cfg.Delegate = g
	cfg.Events = g
	cfg.Alive = g
	list, err := memberlist.Create(cfg)
	if err != nil {
		t.Shutdown()
		return nil, err
	}
	g.list = list
	g.wg.Add(1)
	go g.rejoinLoop()
	return g, nil
}

// Two WireGuard peers that start a handshake at the same moment each answer
// the other's initiation, drop the answer to their own, and wait 5 s
// (REKEY_TIMEOUT) before trying again. Gossip is what makes peers talk first,
// so it decides who speaks first: the peer with the lower key joins at once,
// the other only after the lower one had joinGrace to do so.
const (
	maxConcurrentJoins = 8
	rejoinInterval     = time.Second
	joinGrace          = 2500 * time.Millisecond
)

// speaksFirst reports whether we contact p without waiting.
func (g *gossip) speaksFirst(p Peer) bool { return g.m.pub.Compare(p.PublicKey) < 0 }

// rejoinLoop contacts peers that gossip does not see alive: peers that
// started after us, or came back after a partition longer than memberlist
// keeps gossiping to the dead.
func (g *gossip) rejoinLoop() {
	defer g.wg.Done()
	missingSince := map[netip.Addr]time.Time{}
	for {
		// Jitter keeps two nodes' loops from staying in lockstep.
		jitter := time.Duration(rand.Int64N(int64(rejoinInterval / 4)))
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(rejoinInterval + jitter):
		}
		live := g.liveness()
		now := time.Now()
		var due []Peer
		seen := map[netip.Addr]bool{}
		for _, p := range g.m.PeerList() {
			a := g.m.AddrOf(p.PublicKey)
			seen[a] = true
			if s := live[a]; s == "alive" || s == "suspect" {
				delete(missingSince, a)
				continue
			}
			since, ok := missingSince[a]
			if !ok {
				since = now
				missingSince[a] = now
			}
			if g.speaksFirst(p) || now.Sub(since) >= joinGrace {
				due = append(due, p)
			}
		}
		for a := range missingSince {
			if !seen[a] {
				delete(missingSince, a)
			}
		}
		g.goJoin(due)
	}
}

// join contacts new peers we speak first to, in the background; the others,
// and peers not up yet, are left to rejoinLoop.
func (g *gossip) join(added []Peer) {
	g.relearn(added)
	var peers []Peer
	for _, p := range added {
		if g.speaksFirst(p) {
			peers = append(peers, p)
		}
	}
	g.goJoin(peers)
}

// relearn hands the mesh what gossip already holds about peers just
// added: a member's metadata arrives once, when it joins or changes, and
// a peer the mesh removed and added again (or added only after gossip
// heard of it) would otherwise have no candidates until it next changes,
// and stay on a relay behind NATs that need both ends to probe.
func (g *gossip) relearn(added []Peer) {
	// From the copies the events made: the *Node values Members() returns
	// change under memberlist's feet (liveness says more).
	metas := map[netip.Addr][]byte{}
	g.mu.Lock()
	for _, p := range added {
		a := g.m.AddrOf(p.PublicKey)
		if meta, ok := g.metas[a]; ok {
			metas[a] = meta
		}
	}
	g.mu.Unlock()
	for a, meta := range metas {
		g.learnMeta(a, meta)
	}
}

// goJoin contacts peers concurrently (memberlist's Join tries addresses one
// after another, each down peer costing a TCP timeout).
func (g *gossip) goJoin(peers []Peer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if g.joining == nil {
		g.joining = map[string]bool{}
	}
	for _, p := range peers {
		addr := netip.AddrPortFrom(g.m.AddrOf(p.PublicKey), GossipPort).String()
		if g.joining[addr] {
			continue // the join already waiting will do
		}
		g.joining[addr] = true
		g.started++
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				g.mu.Lock()
				delete(g.joining, addr)
				g.started--
				g.mu.Unlock()
			}()
			g.joinSem <- struct{}{}
			defer func() { <-g.joinSem }()
			if g.ctx.Err() == nil {
				g.list.Join([]string{addr})
			}
		}()
	}
}

// pendingJoins is how many joins are started and not done (tests).
func (g *gossip) pendingJoins() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

func (g *gossip) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.list.Shutdown()
	g.wg.Wait()
}

// liveness maps mesh address to the last state memberlist reported for it.
// It is built only from event callbacks, which memberlist calls with its own
// lock held: the *Node values Members() returns keep changing under
// memberlist's feet and must not be read later.
func (g *gossip) liveness() map[netip.Addr]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.state)
}

// verified checks that a member's address is the one its name (key) implies.
func (g *gossip) verified(n *memberlist.Node) (netip.Addr, bool) {
	pub, err := keys.ParseNodePublic(n.Name)
	if err != nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok || !keys.CheckMeshAddr(g.m.prefix, pub, a.Unmap()) {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// learnEndpoint tells the mesh what a known peer gossips about where it
// is: its candidates with the relay path on, else the endpoint of a peer
// WireGuard has none for.
func (g *gossip) learnMeta(a netip.Addr, meta []byte) {
	ep, cands, ok := parseGossipMeta(meta)
	switch {
	case !ok:
	case g.m.relay != nil:
		g.m.learnCandidates(a, ep, cands)
	case ep.IsValid():
		g.m.learnEndpoint(a, ep)
	}
}

// setCandidates publishes new candidates; memberlist spreads the change.
func (g *gossip) setCandidates(cands []netip.AddrPort) {
	g.metaMu.Lock()
	g.meta = encodeGossipMeta(g.endpoint, cands)
	g.metaMu.Unlock()
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if !closed {
		// It waits for the broadcast to go out, or the timeout.
		if err := g.list.UpdateNode(time.Second); err != nil {
			g.m.logf("mesh: gossip: update candidates: %v", err)
		}
	}
}

// memberlist.Delegate: we only publish metadata.
func (g *gossip) NodeMeta(limit int) []byte {
	g.metaMu.Lock()
	defer g.metaMu.Unlock()
	if len(g.meta) > limit {
		return nil
	}
	return g.meta
}
func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

// NotifyAlive is memberlist's AliveDelegate: a member is accepted only if it
// is us or a current peer, at the address its key implies. Anything else
// gossip tells us about is dropped before memberlist stores it, so a member
// cannot make others track names of its invention.
func (g *gossip) NotifyAlive(n *memberlist.Node) error {
	a, ok := g.verified(n)
	if !ok {
		return fmt.Errorf("mesh: gossip member %.20q: address does not match its key", n.Name)
	}
	if a == g.m.addr {
		return nil
	}
	if _, ok := g.m.PeerByAddr(a); !ok {
		return fmt.Errorf("mesh: gossip member %s is not a peer", a)
	}
	return nil
}

// memberlist.EventDelegate.
func (g *gossip) NotifyJoin(n *memberlist.Node)   { g.alive(n) }
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.alive(n) }

// alive records a live member and learns where it is, from a copy of its
// metadata taken while memberlist holds its lock for the event.
func (g *gossip) alive(n *memberlist.Node) {
	a, ok := g.verified(n)
	if !ok {
		return
	}
	meta := bytes.Clone(n.Meta)
	g.mu.Lock()
	g.state[a] = "alive"
	g.metas[a] = meta
	g.mu.Unlock()
	g.learnMeta(a, meta)
}
func (g *gossip) NotifyLeave(n *memberlist.Node) {
	if n.State == memberlist.StateLeft {
		g.record(n, "left")
	} else {
		g.record(n, "dead")
	}
}

func (g *gossip) record(n *memberlist.Node, state string) {
	if a, ok := g.verified(n); ok {
		g.mu.Lock()
		g.state[a] = state
		delete(g.metas, a)
		g.mu.Unlock()
	}
}

// meshNet gives the gossip transport mesh sockets.
type meshNet struct{ m *Mesh }

func (n meshNet) ListenUDP(a netip.AddrPort) (net.PacketConn, error) {
	return n.m.tnet.listenUDP(a)
}
func (n meshNet) ListenTCP(a netip.AddrPort) (net.Listener, error) {
	return n.m.ListenTCP(a.Port()) // tracked: a removed peer's streams are cut
}
func (n meshNet) DialTCP(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	return n.m.DialTCP(ctx, a)
}
