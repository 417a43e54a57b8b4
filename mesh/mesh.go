package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/custos-cctv/custos/keys"
)

// DefaultMTU leaves room for WireGuard's 80 bytes of IPv6+UDP+WireGuard
// overhead inside a 1500-byte underlay; QUIC inside the mesh must keep its
// packets at or below 1350 bytes (see QUICPacketSize).
const DefaultMTU = 1420

// QUICPacketSize is the largest QUIC packet that fits the tunnel MTU over
// IPv6. Netstack conns are not *net.UDPConn, so quic-go cannot discover it.
const QUICPacketSize = 1350

// GossipPort is the mesh port memberlist uses (UDP and TCP) on every node.
const GossipPort = 7946

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNoPeer: the address belongs to no current peer, so no packet could
	// reach it. Returned at once instead of a dial that would time out.
	ErrNoPeer = errors.New("no mesh peer has this address")
	// ErrClosed: the mesh was closed.
	ErrClosed = errors.New("mesh closed")
)

// Config configures a Mesh. The zero value of every optional field works.
type Config struct {
	// PrivateKey is the node's WireGuard key (required). Only the device
	// keeps it; New zeroes the copy in Config, and the caller should zero
	// its own once New returns.
	PrivateKey keys.NodePrivate
	// Prefix is the federation's mesh prefix (required; see keys.MeshPrefix).
	Prefix netip.Prefix
	// ListenPort is the UDP port of the WireGuard socket; 0 picks a free one.
	// The socket binds all local addresses, as wireguard-go's default bind
	// does (it is what gives batched, offloaded I/O).
	ListenPort uint16
	// Endpoint is the underlay address other nodes should send to, gossiped
	// to peers that know our key but not where we are. Optional.
	Endpoint netip.AddrPort
	// MTU of the tunnel; 0 means DefaultMTU.
	MTU int
	// UAPI, if set, is a listener (normally a unix socket the caller made
	// private) on which the mesh serves the WireGuard UAPI read-only, for
	// `wg show`. The mesh closes it on Close.
	UAPI net.Listener
	// NoGossip disables memberlist (benchmarks, tests of the bare tunnel).
	NoGossip bool
	// Name is this node's human name, for logs and gossip metadata.
	Name string
	// Logf receives log lines; nil discards them. Never given a secret.
	Logf func(format string, args ...any)
	// Bind replaces wireguard-go's default UDP bind (tests only).
	Bind conn.Bind
	// Relay turns on the two-path bind (bind.go): direct UDP when it works,
	// else a DERP relay. Set it when relays may come later (SetRelays).
	Relay bool
	// Relays are the relays to use from the start, in order of preference
	// (the first connected one is home); giving any implies Relay.
	Relays []Relay
}

// Peer is one desired WireGuard peer.
type Peer struct {
	Name      string
	PublicKey keys.NodePublic
	// Endpoint is where to send packets; the zero value means "not known
	// yet": WireGuard learns it when the peer talks first, or gossip tells.
	Endpoint netip.AddrPort
}

// Mesh is one node's place in the WireGuard mesh.
type Mesh struct {
	logf   func(string, ...any)
	pub    keys.NodePublic
	prefix netip.Prefix
	addr   netip.Addr
	name   string
	mtu    int

	dev  *device.Device
	tnet *netTUN
	port uint16

	uapi            *uapiServer
	underlayChanged chan struct{} // a STUN answer changed the reflexive addresses
	gossip          *gossip
	relay           *RelayBind                       // nil without Config.Relay
	cands           atomic.Pointer[[]netip.AddrPort] // advertised candidates (underlay.go)

	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	resets atomic.Int64 // sessions restarted by the watchdog

	setMu sync.Mutex // serializes SetPeers, callbacks included

	mu       sync.Mutex // guards the fields below
	closed   bool
	peers    map[keys.NodePublic]Peer
	byAddr   map[netip.Addr]keys.NodePublic
	conns    map[netip.Addr]map[*trackedConn]struct{}
	watchers map[int]func(Peer)
	watchID  int
}

// New starts a mesh node: the netstack, the WireGuard device listening on
// UDP, the UAPI socket and gossip. A partial start is undone.
func New(cfg Config) (_ *Mesh, err error) {
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("mesh: no private key")
	}
	if !cfg.Prefix.IsValid() || !cfg.Prefix.Addr().Is6() {
		return nil, fmt.Errorf("mesh: federation prefix %v is not an IPv6 prefix", cfg.Prefix)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 1280 || mtu > 9000 {
		return nil, fmt.Errorf("mesh: MTU %d out of range 1280..9000 (IPv6 needs at least 1280)", mtu)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pub := cfg.PrivateKey.Public()
	m := &Mesh{
		logf:     logf,
		pub:      pub,
		prefix:   cfg.Prefix.Masked(),
		name:     cfg.Name,
		mtu:      mtu,
		peers:    map[keys.NodePublic]Peer{},
		byAddr:   map[netip.Addr]keys.NodePublic{},
		conns:    map[netip.Addr]map[*trackedConn]struct{}{},
		watchers: map[int]func(Peer){},
		done:     make(chan struct{}),
	}
	m.addr = keys.MeshAddr(m.prefix, pub)

	tdev, err := newNetTUN(m.addr, mtu)
	if err != nil {
		return nil, err
	}
	m.tnet = tdev
	bind, err := m.newBind(&cfg)
	if err != nil {
		tdev.Close()
		return nil, err
	}
	m.dev = device.NewDevice(tdev, bind, &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(f string, a ...any) { logf("wireguard: "+f, a...) },
	})
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	// The key goes to the device as bytes, never through the text UAPI, so
	// no immutable string copy of it is made; our copies are wiped.
	raw := cfg.PrivateKey.Raw32()
	err = m.dev.SetPrivateKey(device.NoisePrivateKey(raw))
	clear(raw[:])
	cfg.PrivateKey.Zero()
	if err != nil {
		return nil, errors.New("mesh: wireguard refused the private key")
	}
	// Setting the port or bringing the device up binds the UDP socket:
	// either is where a user meets a port in use.
	if err := m.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", cfg.ListenPort)); err != nil {
		return nil, fmt.Errorf("mesh: cannot listen on UDP port %d (in use, or not permitted): %w", cfg.ListenPort, err)
	}
	if err := m.dev.Up(); err != nil {
		return nil, fmt.Errorf("mesh: cannot listen on UDP port %d (in use, or not permitted): %w", cfg.ListenPort, err)
	}
	st, err := m.stats()
	if err != nil {
		return nil, err
	}
	m.port = st.listenPort
	if cfg.UAPI != nil {
		m.uapi = newUAPIServer(cfg.UAPI, m.dev, logf)
	}
	if !cfg.NoGossip {
		ep := cfg.Endpoint
		if !ep.IsValid() {
			ep = netip.AddrPortFrom(netip.IPv6Unspecified(), m.port)
		}
		if m.gossip, err = startGossip(m, ep); err != nil {
			return nil, err
		}
	}
	m.wg.Add(1)
	go m.watchdog()
	if m.relay != nil {
		m.wg.Add(1)
		go m.underlayLoop(m.underlayChanged)
	}
	logf("mesh: up as %s at %s, wireguard on UDP port %d", pub.ShortString(), m.addr, m.port)
	return m, nil
}

// Addr is this node's mesh address.
func (m *Mesh) Addr() netip.Addr { return m.addr }

// PublicKey is this node's WireGuard public key.
func (m *Mesh) PublicKey() keys.NodePublic { return m.pub }

// Prefix is the federation prefix.
func (m *Mesh) Prefix() netip.Prefix { return m.prefix }

// ListenPort is the UDP port WireGuard listens on.
func (m *Mesh) ListenPort() uint16 { return m.port }

// MTU is the tunnel MTU.
func (m *Mesh) MTU() int { return m.mtu }

// BadChecksums counts the packets from authenticated peers dropped since
// the mesh started because their TCP/UDP checksum was wrong: WireGuard
// proves who sent a packet, not that its payload survived the sender's
// offloads, so a rising count points at a faulty NIC or driver there.
func (m *Mesh) BadChecksums() uint64 {
	if m.tnet == nil {
		return 0
	}
	return m.tnet.ep.badChecksum.Load()
}

// AddrOf returns the mesh address a key must use in this federation.
func (m *Mesh) AddrOf(pub keys.NodePublic) netip.Addr { return keys.MeshAddr(m.prefix, pub) }

// Close stops gossip, the UAPI socket and the device (which forgets the
// private key) and closes every tracked connection. It is safe to call more than once.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	var open []*trackedConn
	for _, set := range m.conns {
		for c := range set {
			open = append(open, c)
		}
	}
	m.mu.Unlock()

	m.wg.Wait()
	if m.gossip != nil {
		m.gossip.close()
	}
	if m.uapi != nil {
		m.uapi.close()
	}
	for _, c := range open {
		c.Close()
	}
	if m.dev != nil {
		m.dev.Close()
	}
	m.closeRelay()
	return nil
}
