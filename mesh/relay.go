package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// The client side of the relay, as tailscale's magicsock does it (learned,
// not copied): the node connects to one relay URL with its WireGuard key as
// its DERP identity (DERP's handshake proves the client holds the private
// key; Tailscale uses its node key the same way). A reader goroutine hands
// received packets to the bind's relay receive func, and a writer goroutine
// drains a bounded queue, so WireGuard's Send never waits on TCP: a full
// queue drops, as UDP would. All nodes that should reach each other through
// a relay use the same relay (a later step meshes the datacenters' relays).

// relaySession is one Open's connection to the relay.
type relaySession struct {
	b       *RelayBind
	dc      *derphttp.Client
	tx      chan relayPacket
	rx      chan relayPacket
	done    chan struct{}
	waiting atomic.Bool // the reader is backing off: sends drop instead of redialling
	wg      sync.WaitGroup
}

type relayPacket struct {
	peer *relayPeer     // received: the sender
	dst  key.NodePublic // to send: the destination
	buf  *[]byte
}

const (
	relayQueue      = 256
	relayBackoffMin = 100 * time.Millisecond
	relayBackoffMax = 5 * time.Second
	relayBufSize    = 2048 // a WireGuard packet at the default MTU, pooled
)

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

func getRelayBuf(n int) *[]byte {
	if n > relayBufSize {
		b := make([]byte, n)
		return &b
	}
	b := relayBufs.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

func putRelayBuf(b *[]byte) {
	if cap(*b) == relayBufSize {
		relayBufs.Put(b)
	}
}

func (b *RelayBind) startSession() (*relaySession, error) {
	b.privMu.Lock()
	priv := b.priv
	b.privMu.Unlock()
	if priv.IsZero() {
		return nil, errors.New("mesh: relay: the mesh was closed")
	}
	// derphttp logs every dial; the session logs state changes instead.
	dc, err := derphttp.NewClient(priv, b.url, func(string, ...any) {}, b.netMon)
	if err != nil {
		return nil, fmt.Errorf("mesh: relay %s: %w", b.url, err)
	}
	// A plain dialer: no tailscale socket marks or proxies.
	var d net.Dialer
	dc.SetURLDialer(d.DialContext)
	s := &relaySession{
		b:    b,
		dc:   dc,
		tx:   make(chan relayPacket, relayQueue),
		rx:   make(chan relayPacket, relayQueue),
		done: make(chan struct{}),
	}
	s.wg.Add(2)
	go s.readLoop()
	go s.writeLoop()
	return s, nil
}

// close stops both goroutines; Close on the client cancels a dial in
// progress and unblocks Recv.
func (s *relaySession) close() {
	close(s.done)
	s.dc.Close()
	s.wg.Wait()
	s.b.stats.connected.Store(false)
}

func (s *relaySession) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *relaySession) readLoop() {
	defer s.wg.Done()
	delay := relayBackoffMin
	failing := false
	for {
		m, err := s.dc.Recv()
		if err != nil {
			if s.closed() {
				return
			}
			s.b.stats.connected.Store(false)
			if !failing {
				s.b.logf("mesh: relay %s: %v (not admitted, or unreachable); retrying", s.b.url, err)
				failing = true
			}
			s.waiting.Store(true)
			t := time.NewTimer(delay)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			s.waiting.Store(false)
			delay = min(2*delay, relayBackoffMax)
			continue
		}
		switch m := m.(type) {
		case derp.ServerInfoMessage:
			// The server sends it once it has admitted us.
			delay, failing = relayBackoffMin, false
			s.b.stats.connected.Store(true)
			s.b.logf("mesh: relay %s connected", s.b.url)
		case derp.ReceivedPacket:
			s.deliver(m)
		}
		// Pings and health notes: a DERP server pings no client, and we
		// have nothing to show health in yet.
	}
}

// deliver queues a packet from a registered peer for the receive func;
// anything else is dropped before WireGuard sees it.
func (s *relaySession) deliver(m derp.ReceivedPacket) {
	p := s.b.peers.Load().byKey[m.Source]
	if p == nil || len(m.Data) == 0 {
		s.b.stats.relayDropped.Add(1)
		return
	}
	buf := getRelayBuf(len(m.Data))
	copy(*buf, m.Data) // m.Data is only valid until the next Recv
	select {
	case s.rx <- relayPacket{peer: p, buf: buf}:
	case <-s.done:
	}
}

// receive is the relay's conn.ReceiveFunc: it blocks for one packet, then
// takes what else is queued, up to len(bufs).
func (s *relaySession) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	for {
		var pk relayPacket
		select {
		case pk = <-s.rx:
		case <-s.done:
			return 0, net.ErrClosed
		}
		n := s.take(pk, bufs, sizes, eps, 0)
	drain:
		for n < len(bufs) {
			select {
			case pk = <-s.rx:
				n = s.take(pk, bufs, sizes, eps, n)
			default:
				break drain
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (s *relaySession) take(pk relayPacket, bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	defer putRelayBuf(pk.buf)
	data := *pk.buf
	if len(data) > len(bufs[n]) {
		s.b.stats.relayDropped.Add(1)
		return n
	}
	sizes[n] = copy(bufs[n], data)
	eps[n] = pk.peer.viaRelay
	s.b.stats.relayRx.add(1, uint64(len(data)))
	return n + 1
}

// send queues copies of bufs for the writer (WireGuard reuses bufs).
func (s *relaySession) send(dst key.NodePublic, bufs [][]byte) {
	if s.waiting.Load() {
		s.b.stats.relayDropped.Add(uint64(len(bufs)))
		return
	}
	for _, b := range bufs {
		if len(b) == 0 || len(b) > derp.MaxPacketSize {
			s.b.stats.relayDropped.Add(1)
			continue
		}
		buf := getRelayBuf(len(b))
		copy(*buf, b)
		select {
		case s.tx <- relayPacket{dst: dst, buf: buf}:
		default:
			putRelayBuf(buf)
			s.b.stats.relayDropped.Add(1)
		}
	}
}

func (s *relaySession) writeLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case pk := <-s.tx:
			n := len(*pk.buf)
			err := s.dc.Send(pk.dst, *pk.buf)
			putRelayBuf(pk.buf)
			if err != nil {
				s.b.stats.relayDropped.Add(1)
			} else {
				s.b.stats.relayTx.add(1, uint64(n))
			}
		}
	}
}

// RelayStats counts WireGuard packets (and their bytes) per path since the
// mesh started. Direct counts include the probes sent to unconfirmed
// candidates.
type RelayStats struct {
	DirectTxPackets, DirectTxBytes uint64
	DirectRxPackets, DirectRxBytes uint64
	RelayTxPackets, RelayTxBytes   uint64
	RelayRxPackets, RelayRxBytes   uint64
	// RelayDropped: relay packets dropped (queue full, relay not connected,
	// unknown sender, too large).
	RelayDropped uint64
	// RelayConnected: the relay has admitted this node and the connection is up.
	RelayConnected bool
}

type pathCounter struct{ packets, bytes atomic.Uint64 }

func (c *pathCounter) add(p, b uint64) { c.packets.Add(p); c.bytes.Add(b) }

type relayCounters struct {
	directTx, directRx, relayTx, relayRx pathCounter
	relayDropped                         atomic.Uint64
	connected                            atomic.Bool
}

// Stats returns the path counters.
func (b *RelayBind) Stats() RelayStats {
	c := &b.stats
	return RelayStats{
		DirectTxPackets: c.directTx.packets.Load(), DirectTxBytes: c.directTx.bytes.Load(),
		DirectRxPackets: c.directRx.packets.Load(), DirectRxBytes: c.directRx.bytes.Load(),
		RelayTxPackets: c.relayTx.packets.Load(), RelayTxBytes: c.relayTx.bytes.Load(),
		RelayRxPackets: c.relayRx.packets.Load(), RelayRxBytes: c.relayRx.bytes.Load(),
		RelayDropped:   c.relayDropped.Load(),
		RelayConnected: c.connected.Load(),
	}
}

func checkRelayURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return fmt.Errorf("mesh: relay URL %q: want http://host:port/derp", s)
	}
	return nil
}

// The mesh's side of the relay.

// newBind returns the device's bind: cfg.Bind or wireguard-go's default,
// inside a RelayBind when cfg.RelayURL is set.
func (m *Mesh) newBind(cfg *Config) (conn.Bind, error) {
	bind := cfg.Bind
	if bind == nil {
		bind = conn.NewDefaultBind()
	}
	if cfg.RelayURL == "" {
		return bind, nil
	}
	rb, err := newRelayBind(bind, cfg.PrivateKey, cfg.RelayURL, m.logf)
	if err != nil {
		return nil, err
	}
	m.relay = rb
	return rb, nil
}

// Relay returns the relay bind, or nil when the mesh has no relay.
func (m *Mesh) Relay() *RelayBind { return m.relay }

// endpointConfig is the UAPI endpoint value for a peer: with the relay, its
// key and candidate, so that the bind can always reach it.
func (m *Mesh) endpointConfig(p Peer) string {
	if m.relay != nil {
		return relayEndpointString(p.PublicKey, p.Endpoint)
	}
	if p.Endpoint.IsValid() {
		return p.Endpoint.String()
	}
	return ""
}

func (m *Mesh) relayForget(pub keys.NodePublic) {
	if m.relay != nil {
		m.relay.forget(pub)
	}
}

func (m *Mesh) closeRelay() {
	if m.relay != nil {
		m.relay.destroy()
	}
}

// uapiShowEndpoint rewrites a keyed endpoint line of a UAPI get for `wg
// show`, which resolves what it reads: the address, or no line at all for a
// peer reached only through the relay.
func uapiShowEndpoint(line []byte) []byte {
	rest, ok := bytes.CutPrefix(line, []byte("endpoint="+relayKeyPrefix))
	if !ok {
		return line
	}
	if _, addr, ok := bytes.Cut(rest, []byte("@")); ok {
		return append([]byte("endpoint="), addr...)
	}
	return nil
}
