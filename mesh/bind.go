package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// RelayBind is a wireguard-go conn.Bind with two paths to a peer: direct UDP
// through an inner bind (wireguard-go's default one, so the direct path
// keeps its batched, offloaded I/O) and a DERP relay (relay.go) reached over
// TCP with this node's own key. It is the upstream six-method interface; no
// fork of wireguard-go is needed because the endpoints carry the peer.
//
// Endpoints. The mesh configures every peer as "nodekey:<hex>[@ip:port]"
// (relayEndpointString): the peer's key and, when known, a direct candidate
// address. ParseEndpoint registers the peer and returns its endpoint, which
// names the peer, so Send can always fall back to the relay. A packet
// received directly from a registered candidate is handed to WireGuard with
// the peer's "via direct" endpoint, one from the relay with its "via relay"
// endpoint. A packet from any other address keeps the inner bind's plain
// endpoint: if WireGuard authenticates it, it roams the peer there and sends
// direct (a node behind NAT that reaches a datacenter directly is answered
// the same way); when the peer next speaks over the relay, WireGuard roams
// back to a keyed endpoint.
//
// Choosing a path (this first version; disco pings and STUN come later and
// would replace directConfirmed and add candidates). WireGuard roams a peer
// to the endpoint of its latest authenticated packet, so the endpoint Send
// is given says which path that packet came on: only authenticated packets
// can move it, which a forged UDP source cannot. The direct path is
// confirmed when that endpoint is "via direct" and a packet arrived from the
// candidate within directTrust. Then packets go direct only. Otherwise they
// go over the relay, and handshake messages plus at most one packet per
// probeInterval are also copied to the candidate: WireGuard drops the second
// copy as a replay, and when the direct copy wins the peer roams to the
// direct path, answers there, and both ends confirm it. Traffic moves back
// to the relay within directTrust of the direct path going silent.
//
// The relay sees only WireGuard ciphertext: it can drop or delay packets,
// or (lying about a sender) make WireGuard send a peer's packets to the
// wrong place, never read or forge them.
type RelayBind struct {
	inner  conn.Bind
	url    string
	logf   func(string, ...any)
	netMon *netmon.Monitor

	privMu sync.Mutex
	priv   key.NodePrivate // the DERP identity; zeroed by destroy

	mu    sync.Mutex                   // serializes Open, Close and peer registration
	peers atomic.Pointer[peerTable]    // copy-on-write; read per packet
	sess  atomic.Pointer[relaySession] // nil while closed

	stats relayCounters
}

// directTrust is how long after the last packet from a peer's candidate the
// direct path stays confirmed; probeInterval spaces the copies that test an
// unconfirmed direct path.
const (
	directTrust   = 2 * time.Second
	probeInterval = 250 * time.Millisecond
)

var _ conn.Bind = (*RelayBind)(nil)

type peerTable struct {
	byKey  map[key.NodePublic]*relayPeer
	byAddr map[netip.AddrPort]*relayPeer // candidates; an address two peers claim is left out
}

// relayPeer is the bind's state for one peer. Its endpoints are made once,
// so WireGuard can hold them across Close and Open.
type relayPeer struct {
	pub  keys.NodePublic
	dkey key.NodePublic // pub, in DERP's type

	direct       atomic.Pointer[directPath] // nil: no direct candidate
	lastDirectRx atomic.Int64               // monotonic ns of the last packet from the candidate; 0: never
	lastProbe    atomic.Int64

	auto, viaRelay, viaDirect *peerEndpoint
}

type directPath struct {
	addr netip.AddrPort
	ep   conn.Endpoint // the inner bind's endpoint for addr, the latest received (it carries the sticky source)
}

type pathKind uint8

const (
	pathAuto   pathKind = iota // as configured: no authenticated packet seen yet
	pathRelay                  // the latest authenticated packet came over the relay
	pathDirect                 // … directly from the candidate
)

// peerEndpoint is what WireGuard holds for a peer.
type peerEndpoint struct {
	p    *relayPeer
	path pathKind
}

var monoStart = time.Now()

// nanotime is monotonic nanoseconds, never 0.
func nanotime() int64 { return int64(time.Since(monoStart)) + 1 }

func newRelayBind(inner conn.Bind, priv keys.NodePrivate, relayURL string, logf func(string, ...any)) (*RelayBind, error) {
	if err := checkRelayURL(relayURL); err != nil {
		return nil, err
	}
	b := &RelayBind{inner: inner, url: relayURL, logf: logf, netMon: netmon.NewStatic()}
	text, err := priv.MarshalSecretText()
	if err == nil {
		err = b.priv.UnmarshalText(text)
	}
	clear(text)
	if err != nil || b.priv.IsZero() {
		return nil, errors.New("mesh: relay: unusable private key")
	}
	b.peers.Store(&peerTable{})
	return b, nil
}

// Open opens the inner bind and connects to the relay. A relay that cannot
// be reached does not fail Open: the session keeps retrying.
func (b *RelayBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	s, err := b.startSession()
	if err != nil {
		b.inner.Close()
		return nil, 0, err
	}
	b.sess.Store(s)
	out := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		out = append(out, b.wrapDirect(fn))
	}
	return append(out, s.receive), actual, nil
}

// Close closes both paths; every receive func returned by Open returns
// net.ErrClosed, the relay's included.
func (b *RelayBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.inner.Close()
	if s := b.sess.Swap(nil); s != nil {
		s.close()
	}
	return err
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
	pub, cand, keyed, err := parseRelayEndpoint(s)
	if err != nil {
		return nil, err
	}
	if !keyed {
		return b.inner.ParseEndpoint(s)
	}
	var d *directPath
	if cand.IsValid() {
		ep, err := b.inner.ParseEndpoint(cand.String())
		if err != nil {
			return nil, fmt.Errorf("mesh: relay endpoint %s: %w", cand, err)
		}
		d = &directPath{addr: cand, ep: ep}
	}
	return b.register(pub, d).auto, nil
}

// register adds or updates a peer and its candidate.
func (b *RelayBind) register(pub keys.NodePublic, d *directPath) *relayPeer {
	b.mu.Lock()
	defer b.mu.Unlock()
	dk := derpKey(pub)
	old := b.peers.Load()
	p := old.byKey[dk]
	if p == nil {
		p = &relayPeer{pub: pub, dkey: dk}
		p.auto = &peerEndpoint{p: p, path: pathAuto}
		p.viaRelay = &peerEndpoint{p: p, path: pathRelay}
		p.viaDirect = &peerEndpoint{p: p, path: pathDirect}
	} else if cur := p.direct.Load(); cur != nil && d != nil && cur.addr == d.addr {
		return p // same candidate: keep the endpoint learned from packets
	}
	p.direct.Store(d)
	p.lastDirectRx.Store(0)
	byKey := make(map[key.NodePublic]*relayPeer, len(old.byKey)+1)
	for k, q := range old.byKey {
		byKey[k] = q
	}
	byKey[dk] = p
	b.peers.Store(newPeerTable(byKey))
	return p
}

// forget drops a peer the mesh removed.
func (b *RelayBind) forget(pub keys.NodePublic) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.peers.Load()
	dk := derpKey(pub)
	if _, ok := old.byKey[dk]; !ok {
		return
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
	t := &peerTable{byKey: byKey, byAddr: map[netip.AddrPort]*relayPeer{}}
	claimed := map[netip.AddrPort]int{}
	for _, p := range byKey {
		if d := p.direct.Load(); d != nil {
			claimed[d.addr]++
			t.byAddr[d.addr] = p
		}
	}
	for a, n := range claimed {
		if n > 1 {
			delete(t.byAddr, a) // ambiguous: its packets stay keyless
		}
	}
	return t
}

// wrapDirect gives packets from a registered candidate their peer's
// "via direct" endpoint.
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
			pkts++
			bytes += uint64(sizes[i])
			if len(t.byAddr) == 0 {
				continue
			}
			if p := t.byAddr[endpointAddr(eps[i])]; p != nil {
				p.noteDirect(eps[i], now)
				eps[i] = p.viaDirect
			}
		}
		b.stats.directRx.add(pkts, bytes)
		return n, err
	}
}

func (p *relayPeer) noteDirect(ep conn.Endpoint, now int64) {
	p.lastDirectRx.Store(now)
	if d := p.direct.Load(); d != nil && d.ep.SrcIP() != ep.SrcIP() {
		p.direct.CompareAndSwap(d, &directPath{addr: d.addr, ep: ep})
	}
}

// directConfirmed is the path rule: e is the endpoint WireGuard roamed the
// peer to on its latest authenticated packet.
func (p *relayPeer) directConfirmed(e *peerEndpoint, now int64) bool {
	last := p.lastDirectRx.Load()
	return e.path == pathDirect && last != 0 && now-last < int64(directTrust)
}

func (p *relayPeer) probeDue(now int64) bool {
	last := p.lastProbe.Load()
	return now-last >= int64(probeInterval) && p.lastProbe.CompareAndSwap(last, now)
}

// Send sends direct when the direct path is confirmed, else over the relay
// (and probes the candidate). A plain endpoint goes to the inner bind.
func (b *RelayBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*peerEndpoint)
	if !ok {
		return b.sendDirect(bufs, ep)
	}
	s := b.sess.Load()
	if s == nil {
		return net.ErrClosed
	}
	p := e.p
	d := p.direct.Load()
	now := nanotime()
	if d != nil && p.directConfirmed(e, now) {
		return b.sendDirect(bufs, d.ep)
	}
	if d != nil && len(bufs) > 0 && (isHandshake(bufs[0]) || p.probeDue(now)) {
		// Best effort: this copy only tests the path; the relay carries it.
		_ = b.sendDirect(bufs[:1], d.ep)
	}
	s.send(p.dkey, bufs)
	return nil
}

func (b *RelayBind) sendDirect(bufs [][]byte, ep conn.Endpoint) error {
	if err := b.inner.Send(bufs, ep); err != nil {
		return err
	}
	var n uint64
	for _, buf := range bufs {
		n += uint64(len(buf))
	}
	b.stats.directTx.add(uint64(len(bufs)), n)
	return nil
}

// isHandshake reports whether a WireGuard message is a handshake
// initiation, response or cookie reply (types 1-3, little-endian uint32).
func isHandshake(b []byte) bool {
	return len(b) >= 4 && b[0] >= 1 && b[0] <= 3 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

func endpointAddr(ep conn.Endpoint) netip.AddrPort {
	var ap netip.AddrPort
	if s, ok := ep.(*conn.StdNetEndpoint); ok {
		ap = s.AddrPort
	} else if a, err := netip.ParseAddrPort(ep.DstToString()); err == nil {
		ap = a
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

const relayKeyPrefix = "nodekey:"

// relayEndpointString is the endpoint the mesh configures for a peer when
// the relay is on.
func relayEndpointString(pub keys.NodePublic, direct netip.AddrPort) string {
	if direct.IsValid() {
		return pub.String() + "@" + direct.String()
	}
	return pub.String()
}

// parseRelayEndpoint parses "nodekey:<64 hex>[@ip:port]"; keyed is false
// for anything without the prefix.
func parseRelayEndpoint(s string) (pub keys.NodePublic, direct netip.AddrPort, keyed bool, err error) {
	rest, ok := strings.CutPrefix(s, relayKeyPrefix)
	if !ok {
		return keys.NodePublic{}, netip.AddrPort{}, false, nil
	}
	hexKey, addr, hasAddr := strings.Cut(rest, "@")
	if pub, err = keys.ParseNodePublicHex(hexKey); err != nil {
		return keys.NodePublic{}, netip.AddrPort{}, true, fmt.Errorf("mesh: relay endpoint: key: %w", err)
	}
	if hasAddr {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			return keys.NodePublic{}, netip.AddrPort{}, true, fmt.Errorf("mesh: relay endpoint: %q is not a usable ip:port", addr)
		}
		direct = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return pub, direct, true, nil
}

// derpKey converts a key to DERP's type through its text form, which the two
// packages share ("nodekey:<hex>"; a test checks it). Were it ever to fail,
// the zero key matches no peer and no client.
func derpKey(p keys.NodePublic) key.NodePublic {
	var k key.NodePublic
	text, _ := p.MarshalText()
	if k.UnmarshalText(text) != nil {
		return key.NodePublic{}
	}
	return k
}

func fromDerpKey(k key.NodePublic) keys.NodePublic {
	var raw [32]byte
	k.AppendTo(raw[:0])
	return keys.NodePublicFromRaw32(raw)
}

// DstToString round-trips through ParseEndpoint, so a session the watchdog
// restarts keeps its key; the UAPI server shows only the address.
func (e *peerEndpoint) DstToString() string {
	var a netip.AddrPort
	if d := e.p.direct.Load(); d != nil {
		a = d.addr
	}
	return relayEndpointString(e.p.pub, a)
}

// DstToBytes feeds WireGuard's cookie MACs: the address for the direct
// path, the key for the relay.
func (e *peerEndpoint) DstToBytes() []byte {
	if d := e.p.direct.Load(); d != nil && e.path == pathDirect {
		return d.ep.DstToBytes()
	}
	raw := e.p.pub.Raw32()
	return raw[:]
}

func (e *peerEndpoint) DstIP() netip.Addr {
	if d := e.p.direct.Load(); d != nil {
		return d.addr.Addr()
	}
	return netip.Addr{}
}

func (e *peerEndpoint) ClearSrc() {
	if d := e.p.direct.Load(); d != nil {
		d.ep.ClearSrc()
	}
}

func (e *peerEndpoint) SrcToString() string {
	if d := e.p.direct.Load(); d != nil {
		return d.ep.SrcToString()
	}
	return ""
}

func (e *peerEndpoint) SrcIP() netip.Addr {
	if d := e.p.direct.Load(); d != nil {
		return d.ep.SrcIP()
	}
	return netip.Addr{}
}
