// Package consensustest is a test twin of the mesh as package consensus sees
// it: TCP between mesh addresses. Every host is reached on 127.0.0.1 at a
// port of its own, and presents a made-up mesh address (a ULA that is never
// routed), so a whole cluster runs in one process without root.
//
// Like WireGuard, the twin authenticates the source: a conn accepted by a
// host's listener reports, as RemoteAddr, the mesh address of the host that
// dialed it, and a host cannot dial as another. (The twin carries that
// address in a 16-byte preamble that it writes and reads itself, below what
// consensus sees.) Links can be cut and healed, and the twin counts dials and
// accepted conns per pair of hosts, so tests can check who reached whom.
//
// It imports nothing of the project; it satisfies consensus.Network.
package consensustest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// Addr is the mesh address of test host i: fd00:c057::i.
func Addr(i int) netip.Addr {
	b := netip.MustParseAddr("fd00:c057::").As16()
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrFrom16(b)
}

// preambleTimeout bounds how long an accepted conn may take to send its
// preamble.
const preambleTimeout = 5 * time.Second

// Net is a set of hosts on loopback TCP. The zero value is not usable: call
// New.
type Net struct {
	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener // guarded by mu
	cut       map[pair]bool                // guarded by mu; both orders stored
	conns     map[*conn]pair               // guarded by mu
	dials     map[pair]int                 // guarded by mu
	accepts   map[pair]int                 // guarded by mu
	silent    map[netip.Addr]chan struct{} // guarded by mu; closed by Unsilence
}

type pair struct{ from, to netip.Addr }

// New returns an empty Net.
func New() *Net {
	return &Net{
		listeners: make(map[netip.AddrPort]*listener),
		cut:       make(map[pair]bool),
		conns:     make(map[*conn]pair),
		dials:     make(map[pair]int),
		accepts:   make(map[pair]int),
		silent:    make(map[netip.Addr]chan struct{}),
	}
}

// Silence makes host a vanish without a word, as a host that lost power or
// whose packets are blackholed: its conns stay open but carry nothing
// either way (reads wait for their deadline, writes are swallowed), and
// dials to it hang until their context ends. Nothing is closed.
func (n *Net) Silence(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.silent[a] == nil {
		n.silent[a] = make(chan struct{})
	}
}

// Unsilence undoes Silence for new traffic.
func (n *Net) Unsilence(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.silent[a]; ch != nil {
		close(ch)
		delete(n.silent, a)
	}
}

// silenced returns the channel Unsilence closes if either end is silent.
func (n *Net) silenced(a, b netip.Addr) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.silent[a]; ch != nil {
		return ch
	}
	return n.silent[b]
}

// Host returns the host with mesh address addr.
func (n *Net) Host(addr netip.Addr) *Host { return &Host{net: n, addr: addr} }

// Cut refuses new conns between a and b, both ways, and breaks the open ones.
func (n *Net) Cut(a, b netip.Addr) {
	n.mu.Lock()
	n.cut[pair{a, b}] = true
	n.cut[pair{b, a}] = true
	var doomed []*conn
	for c, p := range n.conns {
		if (p.from == a && p.to == b) || (p.from == b && p.to == a) {
			doomed = append(doomed, c)
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// Heal undoes Cut.
func (n *Net) Heal(a, b netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, pair{a, b})
	delete(n.cut, pair{b, a})
}

// Dials counts the calls of from's Dial to to.
func (n *Net) Dials(from, to netip.Addr) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[pair{from, to}]
}

// Accepts counts the conns from from that to's listeners handed to Accept.
func (n *Net) Accepts(from, to netip.Addr) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.accepts[pair{from, to}]
}

// Host is one node's view of the Net. It satisfies consensus.Network.
type Host struct {
	net  *Net
	addr netip.Addr
}

// Addr is the host's mesh address.
func (h *Host) Addr() netip.Addr { return h.addr }

// Listen listens on the host's mesh address and port.
func (h *Host) Listen(port uint16) (net.Listener, error) {
	ap := netip.AddrPortFrom(h.addr, port)
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &listener{net: h.net, addr: ap, real: real, ch: make(chan net.Conn), done: make(chan struct{}), pending: make(map[net.Conn]struct{})}
	h.net.mu.Lock()
	if _, ok := h.net.listeners[ap]; ok {
		h.net.mu.Unlock()
		real.Close()
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: syscall.EADDRINUSE}
	}
	h.net.listeners[ap] = l
	h.net.mu.Unlock()
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// Dial connects to a mesh address and port.
func (h *Host) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	n := h.net
	p := pair{h.addr, to.Addr()}
	n.mu.Lock()
	n.dials[p]++
	l := n.listeners[to]
	cut := n.cut[p]
	n.mu.Unlock()
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(to), Err: err}
	}
	if cut {
		return nil, opErr(syscall.EHOSTUNREACH)
	}
	if ch := n.silenced(h.addr, to.Addr()); ch != nil {
		select {
		case <-ctx.Done():
			return nil, opErr(ctx.Err())
		case <-ch:
		}
	}
	if l == nil {
		return nil, opErr(syscall.ECONNREFUSED)
	}
	var d net.Dialer
	rc, err := d.DialContext(ctx, "tcp", l.real.Addr().String())
	if err != nil {
		return nil, opErr(err)
	}
	pre := h.addr.As16()
	rc.SetWriteDeadline(time.Now().Add(preambleTimeout))
	if _, err := rc.Write(pre[:]); err != nil {
		rc.Close()
		return nil, opErr(err)
	}
	rc.SetWriteDeadline(time.Time{})
	local := netip.AddrPortFrom(h.addr, uint16(rc.LocalAddr().(*net.TCPAddr).Port))
	return n.track(rc, local, to, p), nil
}

// track wraps rc with mesh addresses and registers it for Cut.
func (n *Net) track(rc net.Conn, local, remote netip.AddrPort, p pair) *conn {
	c := &conn{Conn: rc, net: n, local: net.TCPAddrFromAddrPort(local), remote: net.TCPAddrFromAddrPort(remote),
		closed: make(chan struct{}), kick: make(chan struct{}, 1)}
	n.mu.Lock()
	n.conns[c] = p
	n.mu.Unlock()
	return c
}

// conn is a loopback conn that reports mesh addresses.
type conn struct {
	net.Conn
	net           *Net
	local, remote *net.TCPAddr
	closed        chan struct{} // closed by Close
	closeOnce     sync.Once
	kick          chan struct{} // a deadline changed

	mu           sync.Mutex
	readDeadline time.Time // guarded by mu
}

// Read waits out its deadline while either end is silent.
func (c *conn) Read(p []byte) (int, error) {
	for {
		ch := c.net.silenced(c.local.AddrPort().Addr(), c.remote.AddrPort().Addr())
		if ch == nil {
			return c.Conn.Read(p)
		}
		c.mu.Lock()
		dl := c.readDeadline
		c.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		var expire <-chan time.Time
		var t *time.Timer
		if !dl.IsZero() {
			t = time.NewTimer(time.Until(dl))
			expire = t.C
		}
		var err error
		select {
		case <-ch: // heard again
		case <-c.kick: // a new deadline: look again
		case <-expire:
			err = os.ErrDeadlineExceeded
		case <-c.closed:
			err = net.ErrClosed
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return 0, err
		}
	}
}

// Write swallows what is written while either end is silent.
func (c *conn) Write(p []byte) (int, error) {
	if c.net.silenced(c.local.AddrPort().Addr(), c.remote.AddrPort().Addr()) != nil {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	// Wake a silent Read so it sees the new deadline.
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.net.mu.Lock()
	delete(c.net.conns, c)
	c.net.mu.Unlock()
	return c.Conn.Close()
}

// listener hands accepted conns, preamble read, to Accept.
type listener struct {
	net  *Net
	addr netip.AddrPort
	real net.Listener
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup // run and each handshake

	mu      sync.Mutex
	pending map[net.Conn]struct{} // guarded by mu; nil once closed
}

func (l *listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		l.net.mu.Lock()
		if l.net.listeners[l.addr] == l {
			delete(l.net.listeners, l.addr)
		}
		l.net.mu.Unlock()
		close(l.done)
		l.real.Close()
		l.mu.Lock()
		for rc := range l.pending {
			rc.Close()
		}
		l.pending = nil
		l.mu.Unlock()
		l.wg.Wait()
	})
	return nil
}

func (l *listener) run() {
	defer l.wg.Done()
	for {
		rc, err := l.real.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go l.handshake(rc)
	}
}

// handshake reads the dialer's preamble and hands the conn to Accept.
func (l *listener) handshake(rc net.Conn) {
	defer l.wg.Done()
	if !l.hold(rc) {
		rc.Close()
		return
	}
	defer l.release(rc)
	rc.SetReadDeadline(time.Now().Add(preambleTimeout))
	var pre [16]byte
	if _, err := io.ReadFull(rc, pre[:]); err != nil {
		rc.Close()
		return
	}
	rc.SetReadDeadline(time.Time{})
	from := netip.AddrFrom16(pre)
	p := pair{from, l.addr.Addr()}
	l.net.mu.Lock()
	cut := l.net.cut[p]
	l.net.mu.Unlock()
	if cut {
		rc.Close()
		return
	}
	remote := netip.AddrPortFrom(from, uint16(rc.RemoteAddr().(*net.TCPAddr).Port))
	c := l.net.track(rc, l.addr, remote, p)
	l.net.mu.Lock()
	l.net.accepts[p]++ // counted before Accept returns it
	l.net.mu.Unlock()
	select {
	case l.ch <- c:
	case <-l.done:
		l.net.mu.Lock()
		l.net.accepts[p]--
		l.net.mu.Unlock()
		c.Close()
	}
}

// hold registers rc as in handshake, so Close can break it, or reports
// that the listener is closed.
func (l *listener) hold(rc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	l.pending[rc] = struct{}{}
	return true
}

func (l *listener) release(rc net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, rc)
}

// String describes the Net for test failures.
func (n *Net) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("consensustest.Net{%d listeners, %d conns}", len(n.listeners), len(n.conns))
}
