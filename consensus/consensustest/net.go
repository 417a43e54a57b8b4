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
	}
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
	c := &conn{Conn: rc, net: n, local: net.TCPAddrFromAddrPort(local), remote: net.TCPAddrFromAddrPort(remote)}
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
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Close() error {
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
