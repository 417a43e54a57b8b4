package mesh

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// DialTCP opens a TCP connection over the mesh. It fails at once with
// ErrNoPeer when no current peer owns the address: a node can never reach
// an address it has no peer for, and should not wait a timeout to learn it.
func (m *Mesh) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if err := m.checkPeerAddr(dst.Addr()); err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", dst, err)
	}
	c, err := m.tnet.dialTCP(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", dst, err)
	}
	return m.track(c, dst.Addr())
}

// ListenTCP listens on a TCP port of this node's mesh address. Accepted
// connections are tracked so that removing their peer closes them.
func (m *Mesh) ListenTCP(port uint16) (net.Listener, error) {
	ln, err := m.tnet.listenTCP(netip.AddrPortFrom(m.addr, port))
	if err != nil {
		return nil, fmt.Errorf("mesh: listen tcp port %d: %w", port, err)
	}
	return &trackedListener{Listener: ln, m: m}, nil
}

// ListenUDP opens a UDP socket on this node's mesh address (port 0 picks
// one). The conn is a net.PacketConn but not a *net.UDPConn: QUIC over it
// must keep packets within QUICPacketSize.
func (m *Mesh) ListenUDP(port uint16) (net.PacketConn, error) {
	c, err := m.tnet.listenUDP(netip.AddrPortFrom(m.addr, port))
	if err != nil {
		return nil, fmt.Errorf("mesh: listen udp port %d: %w", port, err)
	}
	return udpConn{c}, nil
}

// udpConn is a netstack UDP conn. Its socket buffers belong to the gVisor
// stack, not to a kernel socket, so the buffer setters quic-go calls (and
// warns about when absent) have nothing to set.
type udpConn struct{ *gonet.UDPConn }

func (udpConn) SetReadBuffer(int) error  { return nil }
func (udpConn) SetWriteBuffer(int) error { return nil }

func (m *Mesh) checkPeerAddr(a netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.byAddr[a.Unmap()]; !ok {
		return ErrNoPeer
	}
	return nil
}

// track registers c under its peer's address; if the peer went away in the
// meantime the conn is closed and refused.
func (m *Mesh) track(c net.Conn, peer netip.Addr) (net.Conn, error) {
	tc := &trackedConn{Conn: c, m: m, peer: peer.Unmap()}
	m.mu.Lock()
	if _, ok := m.byAddr[tc.peer]; !ok || m.closed {
		m.mu.Unlock()
		c.Close()
		return nil, fmt.Errorf("mesh: connection with %s: %w", peer, ErrNoPeer)
	}
	set := m.conns[tc.peer]
	if set == nil {
		set = map[*trackedConn]struct{}{}
		m.conns[tc.peer] = set
	}
	set[tc] = struct{}{}
	m.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	m    *Mesh
	peer netip.Addr
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		if set := c.m.conns[c.peer]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(c.m.conns, c.peer)
			}
		}
		c.m.mu.Unlock()
	})
	return c.Conn.Close()
}

type trackedListener struct {
	net.Listener
	m *Mesh
}

func (l *trackedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// gonet returns a nil RemoteAddr for a connection reset before we
		// got to it; such a connection is simply dropped.
		ra, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok || ra == nil {
			c.Close()
			continue
		}
		ap := ra.AddrPort()
		// A connection can only arrive from a peer's /128, but the peer may
		// have been removed between the SYN and here: drop it then.
		tc, err := l.m.track(c, ap.Addr().Unmap())
		if err != nil {
			continue
		}
		return tc, nil
	}
}
