package mesh

import (
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/types/key"
)

// The client side of the relays, as tailscale's magicsock does it (learned,
// not copied): the node keeps one DERP session to every relay it is given,
// with its WireGuard key as its DERP identity (DERP's handshake proves the
// client holds the private key). A reader goroutine per session hands
// received packets to the bind's single relay receive func, and a writer
// goroutine drains a bounded queue, so WireGuard's Send never waits on TCP:
// a full queue drops, as UDP would.
//
// A relay whose process dies shows as a Recv error at once. One whose
// network is cut silently does not: TCP would keep the connection for
// minutes. So the session pings the relay every relayPingInterval and
// treats relaySilence without any frame as a dead connection: it drops it
// and dials again with backoff, and the bind sends over another relay
// meanwhile (relays.go).

// relayRun is the relay state of one Open: the sessions and the channel
// their readers deliver into.
type relayRun struct {
	b       *RelayBind
	rx      chan relayPacket
	done    chan struct{}
	clients atomic.Pointer[[]*relayClient] // in order of preference; replaced by SetRelays
	loops   sync.WaitGroup                 // the STUN loop
}

// relayClient is one relay's session, kept across reconnections.
type relayClient struct {
	run  *relayRun
	cfg  Relay
	tx   chan relayPacket
	ping chan struct{} // asks the writer to ping; the watcher never writes itself
	done chan struct{}
	wg   sync.WaitGroup

	dc     atomic.Pointer[derphttp.Client] // the current connection; nil between attempts
	up     atomic.Bool                     // admitted and not silent
	lastRx atomic.Int64                    // nanotime of the last frame on the current connection
	upAt   atomic.Int64                    // nanotime it last came up
	sent   pathCounter                     // packets written to this relay
	recvd  pathCounter                     // packets from registered peers read from it
}

type relayPacket struct {
	peer *relayPeer     // received: the sender
	from *relayClient   // received: the session it came on
	dst  key.NodePublic // to send: the destination
	buf  *[]byte
}

const (
	relayQueue        = 256
	relayBackoffMin   = 100 * time.Millisecond
	relayBackoffMax   = 5 * time.Second
	relayBufSize      = 2048 // a WireGuard packet at the default MTU, pooled
	relayPingInterval = 2 * time.Second
	relaySilence      = 5 * time.Second
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

func newRelayRun(b *RelayBind) *relayRun {
	r := &relayRun{b: b, rx: make(chan relayPacket, relayQueue), done: make(chan struct{})}
	r.clients.Store(&[]*relayClient{})
	return r
}

// setRelays makes the sessions match rs: a relay whose configuration is
// unchanged keeps its session; the others are closed or started.
func (r *relayRun) setRelays(rs []Relay) {
	old := *r.clients.Load()
	next := make([]*relayClient, 0, len(rs))
	kept := map[*relayClient]bool{}
	for _, cfg := range rs {
		var c *relayClient
		for _, o := range old {
			if o.cfg == cfg {
				c = o
			}
		}
		if c == nil {
			c = r.startClient(cfg)
		}
		kept[c] = true
		next = append(next, c)
	}
	r.clients.Store(&next)
	for _, o := range old {
		if !kept[o] {
			o.close()
		}
	}
}

// close stops every session; the receive func returns net.ErrClosed.
func (r *relayRun) close() {
	close(r.done)
	for _, c := range *r.clients.Swap(&[]*relayClient{}) {
		c.close()
	}
	r.loops.Wait()
}

func (r *relayRun) startClient(cfg Relay) *relayClient {
	c := &relayClient{
		run:  r,
		cfg:  cfg,
		tx:   make(chan relayPacket, relayQueue),
		ping: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	c.wg.Add(2)
	go c.loop()
	go c.writeLoop()
	return c
}

// close stops the session's goroutines; closing the DERP client cancels a
// dial in progress and unblocks Recv and Send.
func (c *relayClient) close() {
	close(c.done)
	if dc := c.dc.Load(); dc != nil {
		dc.Close()
	}
	c.wg.Wait()
	c.up.Store(false)
}

func (c *relayClient) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// loop connects, serves the connection until it fails or goes silent, and
// connects again with backoff, until close.
func (c *relayClient) loop() {
	defer c.wg.Done()
	b := c.run.b
	delay := relayBackoffMin
	failing := false
	for !c.closed() {
		priv := b.privateKey()
		if priv.IsZero() {
			return // the mesh was closed
		}
		// derphttp logs every dial; the session logs state changes instead.
		dc, err := derphttp.NewClient(priv, c.cfg.URL, func(string, ...any) {}, b.netMon)
		if err != nil {
			b.logf("mesh: relay %s: %v", c.cfg.Name, err) // the URL was checked: not expected
			return
		}
		// A plain dialer: no tailscale socket marks or proxies.
		var d net.Dialer
		dc.SetURLDialer(d.DialContext)
		c.dc.Store(dc)
		if c.closed() { // close may have missed this client
			dc.Close()
			return
		}
		admitted, err := c.serve(dc)
		c.up.Store(false)
		c.dc.Store(nil)
		dc.Close()
		if c.closed() {
			return
		}
		switch {
		case errors.Is(err, derphttp.ErrClientClosed):
			// The watcher closed a silent connection, and said so.
		case admitted:
			b.logf("mesh: relay %s lost: %v; reconnecting", c.cfg.Name, err)
			delay, failing = relayBackoffMin, false
		case !failing:
			b.logf("mesh: relay %s: %v (not admitted, or unreachable); retrying", c.cfg.Name, err)
			failing = true
		}
		t := time.NewTimer(delay)
		select {
		case <-c.done:
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, relayBackoffMax)
	}
}

// serve reads one connection until it fails; admitted reports whether the
// relay let us in.
func (c *relayClient) serve(dc *derphttp.Client) (admitted bool, err error) {
	stop := make(chan struct{})
	defer close(stop)
	c.lastRx.Store(nanotime())
	c.wg.Add(1)
	go c.watch(dc, stop)
	for {
		m, err := dc.Recv()
		if err != nil {
			return admitted, err
		}
		c.lastRx.Store(nanotime())
		switch m := m.(type) {
		case derp.ServerInfoMessage:
			// The server sends it once it has admitted us.
			admitted = true
			c.upAt.Store(nanotime())
			c.up.Store(true)
			c.run.b.logf("mesh: relay %s connected", c.cfg.Name)
			c.run.b.stunSoon() // a reconnection may follow a move to another network
		case derp.ReceivedPacket:
			c.deliver(m)
		}
		// Pongs only refresh lastRx; a DERP server pings no client.
	}
}

// watch asks for a ping every relayPingInterval and drops the connection
// once it has been silent for relaySilence (a dial or handshake that takes
// that long included), checking four times as often as it pings.
func (c *relayClient) watch(dc *derphttp.Client, stop chan struct{}) {
	defer c.wg.Done()
	t := time.NewTicker(relayPingInterval / 4)
	defer t.Stop()
	var lastPing int64
	for {
		select {
		case <-stop:
			return
		case <-c.done:
			return
		case <-t.C:
		}
		if idle := time.Duration(nanotime() - c.lastRx.Load()); idle > relaySilence {
			if c.up.Swap(false) {
				c.run.b.logf("mesh: relay %s silent for %v; reconnecting", c.cfg.Name, idle.Round(time.Second))
			}
			dc.Close()
			return
		}
		if now := nanotime(); c.up.Load() && now-lastPing >= int64(relayPingInterval) {
			lastPing = now
			select {
			case c.ping <- struct{}{}:
			default:
			}
		}
	}
}

// deliver queues a packet from a registered peer for the receive func;
// anything else is dropped before WireGuard sees it.
func (c *relayClient) deliver(m derp.ReceivedPacket) {
	b := c.run.b
	p := b.peers.Load().byKey[m.Source]
	if p == nil || len(m.Data) == 0 {
		b.stats.relayDropped.Add(1)
		return
	}
	p.noteRelay(c, nanotime())
	c.recvd.add(1, uint64(len(m.Data)))
	buf := getRelayBuf(len(m.Data))
	copy(*buf, m.Data) // m.Data is only valid until the next Recv
	select {
	case c.run.rx <- relayPacket{peer: p, from: c, buf: buf}:
	case <-c.done:
	case <-c.run.done:
	}
}

// receive is the relays' conn.ReceiveFunc: it blocks for one packet, then
// takes what else is queued, up to len(bufs).
func (r *relayRun) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	for {
		var pk relayPacket
		select {
		case pk = <-r.rx:
		case <-r.done:
			return 0, net.ErrClosed
		}
		n := r.take(pk, bufs, sizes, eps, 0)
	drain:
		for n < len(bufs) {
			select {
			case pk = <-r.rx:
				n = r.take(pk, bufs, sizes, eps, n)
			default:
				break drain
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *relayRun) take(pk relayPacket, bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) int {
	defer putRelayBuf(pk.buf)
	data := *pk.buf
	if len(data) > len(bufs[n]) {
		r.b.stats.relayDropped.Add(1)
		return n
	}
	sizes[n] = copy(bufs[n], data)
	eps[n] = pk.peer.viaRelay
	r.b.stats.relayRx.add(1, uint64(len(data)))
	pk.peer.bytes.relayRx.Add(uint64(len(data)))
	return n + 1
}

// send queues copies of bufs for the writer (WireGuard reuses bufs).
func (c *relayClient) send(dst key.NodePublic, bufs [][]byte) {
	b := c.run.b
	if c.dc.Load() == nil {
		b.stats.relayDropped.Add(uint64(len(bufs)))
		return
	}
	for _, pkt := range bufs {
		if len(pkt) == 0 || len(pkt) > derp.MaxPacketSize {
			b.stats.relayDropped.Add(1)
			continue
		}
		buf := getRelayBuf(len(pkt))
		copy(*buf, pkt)
		select {
		case c.tx <- relayPacket{dst: dst, buf: buf}:
		default:
			putRelayBuf(buf)
			b.stats.relayDropped.Add(1)
		}
	}
}

// writeLoop sends queued packets and pings on the current connection. A
// write to a silently dead relay can block; the watcher's Close ends it.
func (c *relayClient) writeLoop() {
	defer c.wg.Done()
	b := c.run.b
	for {
		select {
		case <-c.done:
			for {
				select {
				case pk := <-c.tx:
					putRelayBuf(pk.buf)
				default:
					return
				}
			}
		case <-c.ping:
			if dc := c.dc.Load(); dc != nil {
				var data [8]byte
				rand.Read(data[:])
				dc.SendPing(data) // an error shows as the Recv error or as silence
			}
		case pk := <-c.tx:
			n := len(*pk.buf)
			err := errRelayDown
			if dc := c.dc.Load(); dc != nil {
				err = dc.Send(pk.dst, *pk.buf)
			}
			putRelayBuf(pk.buf)
			if err != nil {
				b.stats.relayDropped.Add(1)
			} else {
				b.stats.relayTx.add(1, uint64(n))
				c.sent.add(1, uint64(n))
			}
		}
	}
}

var errRelayDown = errors.New("mesh: relay not connected")
