package mesh

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/net/netmon"
	"tailscale.com/net/stun"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// RelayBind is a wireguard-go conn.Bind with two kinds of path to a peer:
// direct UDP through an inner bind (the mesh's own batched, offloaded UDP
// bind on Linux, udpbind.go; wireguard-go's default elsewhere) and DERP
// relays (relay.go, relays.go) reached over TCP with this node's own key.
// It is the upstream six-method interface; no fork of wireguard-go is
// needed because the endpoints carry the peer.
//
// Relays. The node keeps a session to every relay (a federation has a few
// datacenters, each serving one; no relay mesh is needed when every node
// is on every relay) and receives from all of them. A peer's packets go on
// the relay its latest packet came on while that session is up, else on
// the home relay, the first connected one in the configured order.
//
// Endpoints. The mesh configures every peer as "nodekey:<hex>[@ip:port]"
// (relayEndpointString): the peer's key and, when known, its configured
// address. ParseEndpoint registers the peer and returns its endpoint, which
// names the peer, so Send can always fall back to a relay. Besides that
// address a peer has candidates learned by gossip (its interface addresses
// and the reflexive addresses STUN showed it, stun.go). A packet received
// directly from a candidate is handed to WireGuard with that candidate's
// "via direct" endpoint, one from a relay with the peer's "via relay"
// endpoint. A packet from any other address keeps the inner bind's plain
// endpoint: if WireGuard authenticates it, it roams the peer there and sends
// direct (a node behind NAT that reaches a datacenter directly is answered
// the same way); when the peer next speaks over a relay, WireGuard roams
// back to a keyed endpoint.
//
// Choosing a path. WireGuard roams a peer to the endpoint of its latest
// authenticated packet, so the endpoint Send is given says which path that
// packet came on: only authenticated packets can move it, which a forged
// UDP source cannot. The direct path is confirmed when that endpoint is a
// candidate's and a packet arrived from that candidate within directTrust.
// Then packets go direct only. Otherwise they go over a relay, and
// handshake messages plus at most one packet per probeInterval are also
// copied to every candidate: WireGuard drops a second copy as a replay, and
// when a direct copy wins, the peer roams to that candidate, answers there,
// and both ends confirm it. Both ends probing at once is what opens
// endpoint-independent NATs: each one's outgoing copies make the mapping
// the other's copies come in through. Traffic moves back to a relay within
// directTrust of the direct path going silent.
//
// The relays see only WireGuard ciphertext: they can drop or delay
// packets, or (lying about a sender) make WireGuard send a peer's packets
// to the wrong place, never read or forge them.
type RelayBind struct {
	inner  conn.Bind
	logf   func(string, ...any)
	netMon *netmon.Monitor

	privMu sync.Mutex
	priv   key.NodePrivate // the DERP identity; zeroed by destroy

	mu     sync.Mutex                // serializes Open, Close, SetRelays and peer registration
	relays []Relay                   // the configured set, kept across Close and Open
	peers  atomic.Pointer[peerTable] // copy-on-write; read per packet
	run    atomic.Pointer[relayRun]  // nil while closed

	stun  stunState
	stats relayCounters
}

// directTrust is how long after the last packet from a peer's candidate the
// direct path stays confirmed; probeInterval spaces the copies that test
// unconfirmed candidates; maxPeerCandidates bounds a peer's candidates (its
// configured address and what gossip told).
const (
	directTrust       = 2 * time.Second
	probeInterval     = 250 * time.Millisecond
	maxPeerCandidates = 1 + maxCandidates
)

var _ conn.Bind = (*RelayBind)(nil)

type peerTable struct {
	byKey  map[key.NodePublic]*relayPeer
	byAddr map[netip.AddrPort]*candidate // an address two peers claim is left out
}

// relayPeer is the bind's state for one peer. Its endpoints are made once,
// so WireGuard can hold them across Close and Open.
type relayPeer struct {
	pub  keys.NodePublic
	dkey key.NodePublic // pub, in DERP's type

	confAddr netip.AddrPort   // guarded by RelayBind.mu
	learned  []netip.AddrPort // guarded by RelayBind.mu

	configured atomic.Pointer[candidate]    // the candidate at confAddr; nil: none
	cands      atomic.Pointer[[]*candidate] // configured first, then learned
	lastProbe  atomic.Int64

	lastRelay   atomic.Pointer[relayClient]  // the session its latest relayed packet came on
	lastRelayRx atomic.Int64                 // monotonic ns of that packet
	sentVia     atomic.Pointer[peerEndpoint] // what WireGuard last sent with (path.go)
	bytes       peerBytes                    // by path, for status and metrics

	auto, viaRelay *peerEndpoint
}

// peerBytes counts a peer's WireGuard datagram bytes by path. Packets
// from an address that is none of the peer's candidates (a roamed plain
// endpoint) are counted in the bind's totals only: which peer sent them is
// WireGuard's to know.
type peerBytes struct {
	directRx, directTx, relayRx, relayTx atomic.Uint64
}

// candidate is one address a peer may be reached at directly.
type candidate struct {
	addr   netip.AddrPort
	ep     atomic.Pointer[epBox] // the inner endpoint, the latest received (it carries the sticky source)
	lastRx atomic.Int64          // monotonic ns of the last packet from addr; 0: never
	gone   atomic.Bool           // no longer one of the peer's candidates
	via    *peerEndpoint
}

type epBox struct{ ep conn.Endpoint }

var monoStart = time.Now()

// nanotime is monotonic nanoseconds, never 0.
func nanotime() int64 { return int64(time.Since(monoStart)) + 1 }

func newRelayBind(inner conn.Bind, priv keys.NodePrivate, relays []Relay, logf func(string, ...any)) (*RelayBind, error) {
	if err := checkRelays(relays); err != nil {
		return nil, err
	}
	b := &RelayBind{inner: inner, relays: slices.Clone(relays), logf: logf, netMon: netmon.NewStatic()}
	text, err := priv.MarshalSecretText()
	if err == nil {
		err = b.priv.UnmarshalText(text)
	}
	clear(text)
	if err != nil || b.priv.IsZero() {
		return nil, errors.New("mesh: relay: unusable private key")
	}
	b.peers.Store(&peerTable{})
	b.stun.init()
	return b, nil
}

// Open opens the inner bind and connects to every relay. A relay that
// cannot be reached does not fail Open: its session keeps retrying.
func (b *RelayBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.run.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if b.privateKey().IsZero() {
		return nil, 0, errors.New("mesh: relay: the mesh was closed")
	}
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	r := newRelayRun(b)
	r.setRelays(b.relays)
	b.run.Store(r)
	r.loops.Add(1)
	go b.stunLoop(r)
	out := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		out = append(out, b.wrapDirect(fn))
	}
	return append(out, r.receive), actual, nil
}

// Close closes both paths; every receive func returned by Open returns
// net.ErrClosed, the relays' included.
func (b *RelayBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.inner.Close()
	if r := b.run.Swap(nil); r != nil {
		r.close()
	}
	return err
}

// privateKey is a copy of the DERP identity; zero once destroyed.
func (b *RelayBind) privateKey() key.NodePrivate {
	b.privMu.Lock()
	defer b.privMu.Unlock()
	return b.priv
}

// destroy forgets the private key; the bind cannot be opened again.
func (b *RelayBind) destroy() {
	b.privMu.Lock()
	b.priv = key.NodePrivate{}
	b.privMu.Unlock()
}

func (b *RelayBind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }
func (b *RelayBind) BatchSize() int            { return b.inner.BatchSize() }

// ParseEndpoint registers a keyed peer ("nodekey:<hex>[@ip:port]") and
// returns its endpoint; anything else is a plain endpoint of the inner bind.
func (b *RelayBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	pub, addr, keyed, err := parseRelayEndpoint(s)
	if err != nil {
		return nil, err
	}
	if !keyed {
		return b.inner.ParseEndpoint(s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers.Load().byKey[derpKey(pub)]
	if p == nil {
		p = &relayPeer{pub: pub, dkey: derpKey(pub)}
		p.auto = &peerEndpoint{p: p, path: pathAuto}
		p.viaRelay = &peerEndpoint{p: p, path: pathRelay}
		p.cands.Store(&[]*candidate{})
	}
	p.confAddr = addr
	b.setCandidatesLocked(p)
	return p.auto, nil
}

// setLearned sets the candidates gossip told for a registered peer.
func (b *RelayBind) setLearned(pub keys.NodePublic, addrs []netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers.Load().byKey[derpKey(pub)]
	if p == nil || slices.Equal(p.learned, addrs) {
		return
	}
	p.learned = slices.Clone(addrs)
	b.setCandidatesLocked(p)
}

// setCandidatesLocked rebuilds p's candidates from its configured and
// learned addresses, keeping the state of those that stay, and publishes a
// new peer table with p in it.
func (b *RelayBind) setCandidatesLocked(p *relayPeer) {
	old := map[netip.AddrPort]*candidate{}
	for _, c := range *p.cands.Load() {
		old[c.addr] = c
	}
	want := make([]netip.AddrPort, 0, maxPeerCandidates)
	if p.confAddr.IsValid() {
		want = append(want, p.confAddr)
	}
	for _, a := range p.learned {
		if len(want) < maxPeerCandidates && !slices.Contains(want, a) {
			want = append(want, a)
		}
	}
	next := make([]*candidate, 0, len(want))
	var conf *candidate
	for _, a := range want {
		c := old[a]
		if c == nil {
			ep, err := b.inner.ParseEndpoint(a.String())
			if err != nil {
				continue
			}
			c = &candidate{addr: a}
			c.ep.Store(&epBox{ep})
			c.via = &peerEndpoint{p: p, path: pathDirect, cand: c}
		}
		delete(old, a)
		next = append(next, c)
		if a == p.confAddr {
			conf = c
		}
	}
	for _, c := range old {
		c.gone.Store(true)
	}
	p.cands.Store(&next)
	p.configured.Store(conf)
	t := b.peers.Load()
	byKey := make(map[key.NodePublic]*relayPeer, len(t.byKey)+1)
	for k, q := range t.byKey {
		byKey[k] = q
	}
	byKey[p.dkey] = p
	b.peers.Store(newPeerTable(byKey))
}

// forget drops a peer the mesh removed.
func (b *RelayBind) forget(pub keys.NodePublic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.peers.Load()
	dk := derpKey(pub)
	p, ok := old.byKey[dk]
	if !ok {
		return
	}
	for _, c := range *p.cands.Load() {
		c.gone.Store(true)
	}
	byKey := make(map[key.NodePublic]*relayPeer, len(old.byKey))
	for k, q := range old.byKey {
		if k != dk {
			byKey[k] = q
		}
	}
	b.peers.Store(newPeerTable(byKey))
}

func newPeerTable(byKey map[key.NodePublic]*relayPeer) *peerTable {
	t := &peerTable{byKey: byKey, byAddr: map[netip.AddrPort]*candidate{}}
	claimed := map[netip.AddrPort]int{}
	for _, p := range byKey {
		for _, c := range *p.cands.Load() {
			claimed[c.addr]++
			t.byAddr[c.addr] = c
		}
	}
	for a, n := range claimed {
		if n > 1 {
			delete(t.byAddr, a) // ambiguous: its packets stay keyless
		}
	}
	return t
}

// wrapDirect answers STUN on the WireGuard socket (stun.go) and gives
// packets from a registered candidate that candidate's endpoint.
func (b *RelayBind) wrapDirect(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		if n == 0 {
			return n, err
		}
		t := b.peers.Load()
		now := nanotime()
		var pkts, bytes uint64
		for i := range n {
			if sizes[i] == 0 {
				continue
			}
			if pkt := bufs[i][:sizes[i]]; stun.Is(pkt) && b.handleSTUN(pkt, eps[i]) {
				sizes[i] = 0 // WireGuard skips it
				continue
			}
			pkts++
			bytes += uint64(sizes[i])
			if len(t.byAddr) == 0 {
				continue
			}
			if c := t.byAddr[endpointAddr(eps[i])]; c != nil {
				c.noteRx(eps[i], now)
				c.via.p.bytes.directRx.Add(uint64(sizes[i]))
				eps[i] = c.via
			}
		}
		b.stats.directRx.add(pkts, bytes)
		return n, err
	}
}

func (c *candidate) noteRx(ep conn.Endpoint, now int64) {
	c.lastRx.Store(now)
	if cur := c.ep.Load(); cur.ep.SrcIP() != ep.SrcIP() {
		c.ep.CompareAndSwap(cur, &epBox{ep})
	}
}

func (c *candidate) endpoint() conn.Endpoint { return c.ep.Load().ep }

// confirmed: a packet came from the candidate within directTrust. Only
// meaningful for the candidate WireGuard roamed to (Send's rule).
func (c *candidate) confirmed(now int64) bool {
	last := c.lastRx.Load()
	return !c.gone.Load() && last != 0 && now-last < int64(directTrust)
}

func (p *relayPeer) noteRelay(c *relayClient, now int64) {
	if p.lastRelay.Load() != c {
		p.lastRelay.Store(c)
	}
	p.lastRelayRx.Store(now)
}

func (p *relayPeer) probeDue(now int64) bool {
	last := p.lastProbe.Load()
	return now-last >= int64(probeInterval) && p.lastProbe.CompareAndSwap(last, now)
}

// Send sends direct when the direct path is confirmed, else over a relay
// (and probes the candidates). A plain endpoint goes to the inner bind.
func (b *RelayBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*peerEndpoint)
	if !ok {
		return b.sendDirect(bufs, ep)
	}
	r := b.run.Load()
	if r == nil {
		return net.ErrClosed
	}
	p := e.p
	if p.sentVia.Load() != e {
		p.sentVia.Store(e)
	}
	now := nanotime()
	if c := e.cand; c != nil && c.confirmed(now) {
		err := b.sendDirect(bufs, c.endpoint())
		if err == nil {
			p.bytes.directTx.Add(sizeOf(bufs))
		}
		return err
	}
	if len(bufs) > 0 && (isHandshake(bufs[0]) || p.probeDue(now)) {
		// Best effort: these copies only test the paths; the relay carries it.
		for _, c := range *p.cands.Load() {
			_ = b.sendDirect(bufs[:1], c.endpoint())
		}
	}
	if c := r.pick(p); c != nil {
		c.send(p.dkey, bufs)
		p.bytes.relayTx.Add(sizeOf(bufs))
	} else {
		b.stats.relayDropped.Add(uint64(len(bufs)))
	}
	return nil
}

func (b *RelayBind) sendDirect(bufs [][]byte, ep conn.Endpoint) error {
	if err := b.inner.Send(bufs, ep); err != nil {
		return err
	}
	b.stats.directTx.add(uint64(len(bufs)), sizeOf(bufs))
	return nil
}

func sizeOf(bufs [][]byte) uint64 {
	var n uint64
	for _, buf := range bufs {
		n += uint64(len(buf))
	}
	return n
}

// PathBytes is what a peer's WireGuard datagrams took, by path.
type PathBytes struct {
	DirectRx uint64 `json:"direct_rx_bytes"`
	DirectTx uint64 `json:"direct_tx_bytes"`
	RelayRx  uint64 `json:"relay_rx_bytes"`
	RelayTx  uint64 `json:"relay_tx_bytes"`
}

// peerPathBytes reads a peer's counters (zero for an unknown peer).
func (b *RelayBind) peerPathBytes(pub keys.NodePublic) PathBytes {
	p := b.peers.Load().byKey[derpKey(pub)]
	if p == nil {
		return PathBytes{}
	}
	return PathBytes{DirectRx: p.bytes.directRx.Load(), DirectTx: p.bytes.directTx.Load(),
		RelayRx: p.bytes.relayRx.Load(), RelayTx: p.bytes.relayTx.Load()}
}

// candidatesOf is a peer's candidate addresses, configured first (tests,
// status).
func (b *RelayBind) candidatesOf(pub keys.NodePublic) []netip.AddrPort {
	p := b.peers.Load().byKey[derpKey(pub)]
	if p == nil {
		return nil
	}
	var out []netip.AddrPort
	for _, c := range *p.cands.Load() {
		out = append(out, c.addr)
	}
	return out
}
