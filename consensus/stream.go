package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's StreamLayer over the mesh. It asks Admit before
// every dial and every accept, writes (on dial) and reads (on accept) the
// protocol byte that multiplexes Raft and forwarding on one port, and hands
// forwarding conns to serveForward. It tracks every conn it made or accepted
// and closes them all on Close, so nothing outlives the node.
type streamLayer struct {
	// ctx ends when the node starts closing: a dial in flight (to a peer
	// that is gone, which can take the whole IOTimeout) must not hold up
	// raft's shutdown, which waits for its replication goroutines.
	ctx       context.Context
	network   Network
	admit     Admit
	addr      netip.AddrPort // advertised: what peers dial
	ln        net.Listener
	ioTimeout time.Duration
	logf      func(string, ...any)
	forward   func(net.Conn) // serves a forwarding conn until it ends

	raftConns chan net.Conn
	done      chan struct{} // closed by shutdown
	closeOnce sync.Once     // shutdown's
	// acceptDone ends Accept. Close closes it, when raft's transport
	// closes, and shutdown does not: an Accept that failed before then
	// would have the transport log the error in a loop until then.
	acceptDone chan struct{}
	acceptOnce sync.Once
	wg         sync.WaitGroup // the accept loop and each accepted conn's demux

	mu     sync.Mutex
	conns  map[*trackedConn]struct{} // guarded by mu
	closed bool                      // guarded by mu
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ctx context.Context, cfg Config, forward func(net.Conn)) (*streamLayer, error) {
	ln, err := cfg.Network.Listen(cfg.Addr.Port())
	if err != nil {
		return nil, fmt.Errorf("consensus: listen on port %d: %w", cfg.Addr.Port(), err)
	}
	s := &streamLayer{
		ctx:        ctx,
		network:    cfg.Network,
		admit:      cfg.Admit,
		addr:       cfg.Addr,
		ln:         ln,
		ioTimeout:  cfg.IOTimeout,
		logf:       cfg.Logf,
		forward:    forward,
		raftConns:  make(chan net.Conn),
		done:       make(chan struct{}),
		acceptDone: make(chan struct{}),
		conns:      make(map[*trackedConn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Accept returns the next admitted Raft conn. It implements net.Listener
// for raft.NetworkTransport.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftConns:
		return c, nil
	case <-s.acceptDone:
		return nil, net.ErrClosed
	}
}

// Addr is the advertised mesh address, which raft uses as this server's
// address.
func (s *streamLayer) Addr() net.Addr { return net.TCPAddrFromAddrPort(s.addr) }

// Dial opens a Raft conn to a peer. It implements raft.StreamLayer.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	return s.dial(ctx, string(address), protoRaft)
}

// dial asks Admit, connects, and announces proto.
func (s *streamLayer) dial(ctx context.Context, address string, proto byte) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("consensus: dial %q: not a mesh address and port: %w", address, err)
	}
	if err := s.admit(ap.Addr().Unmap()); err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", ErrNotAdmitted, ap, err)
	}
	if s.isClosed() {
		return nil, fmt.Errorf("%w: dial %s", ErrClosed, ap)
	}
	c, err := s.network.Dial(ctx, ap)
	if err != nil {
		return nil, fmt.Errorf("consensus: dial %s: %w", ap, err)
	}
	tc := s.track(c)
	if tc == nil {
		c.Close()
		return nil, fmt.Errorf("%w: dial %s", ErrClosed, ap)
	}
	// Asked again now that the conn is tracked: a Readmit that ran
	// since the first answer did not see this conn, and would leave a
	// peer revoked meanwhile with it.
	if err := s.admit(ap.Addr().Unmap()); err != nil {
		tc.Close()
		return nil, fmt.Errorf("%w: dial %s: %v", ErrNotAdmitted, ap, err)
	}
	tc.SetWriteDeadline(time.Now().Add(s.ioTimeout))
	if _, err := tc.Write([]byte{proto}); err != nil {
		tc.Close()
		return nil, fmt.Errorf("consensus: dial %s: %w", ap, err)
	}
	tc.SetWriteDeadline(time.Time{})
	return tc, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logf("consensus: accept: %v (retrying in %v)", err, delay)
			select {
			case <-time.After(delay):
				continue
			case <-s.done:
				return
			}
		}
		delay = 0
		remote, err := remoteAddr(c)
		if err == nil {
			err = s.admit(remote)
		}
		if err != nil {
			s.logf("consensus: refused connection from %v: %v", c.RemoteAddr(), err)
			c.Close()
			continue
		}
		tc := s.track(c)
		if tc == nil {
			c.Close()
			return
		}
		// Asked again once tracked, as in dial.
		if err := s.admit(remote); err != nil {
			s.logf("consensus: refused connection from %v: %v", c.RemoteAddr(), err)
			tc.Close()
			continue
		}
		s.wg.Add(1)
		go s.demux(tc)
	}
}

// demux reads the protocol byte of an admitted conn and hands it on.
func (s *streamLayer) demux(c *trackedConn) {
	defer s.wg.Done()
	c.SetReadDeadline(time.Now().Add(s.ioTimeout))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		select {
		case s.raftConns <- c:
		case <-s.done:
			c.Close()
		}
	case protoForward:
		s.forward(c)
		c.Close()
	default:
		s.logf("consensus: closed connection from %v: unknown protocol byte %#x", c.RemoteAddr(), b[0])
		c.Close()
	}
}

// remoteAddr is the peer's mesh address as the Network reports it.
func remoteAddr(c net.Conn) (netip.Addr, error) {
	ra := c.RemoteAddr()
	if ta, ok := ra.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap(), nil
		}
		return netip.Addr{}, fmt.Errorf("remote address %v is not an IP address", ra)
	}
	if ra == nil {
		return netip.Addr{}, errors.New("connection has no remote address")
	}
	ap, err := netip.ParseAddrPort(ra.String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("remote address %q: %w", ra.String(), err)
	}
	return ap.Addr().Unmap(), nil
}

// Close shuts the layer down and ends Accept. It implements net.Listener:
// raft's transport calls it when it closes.
func (s *streamLayer) Close() error {
	s.shutdown()
	s.acceptOnce.Do(func() { close(s.acceptDone) })
	return nil
}

// shutdown stops accepting, closes every conn and waits for the goroutines
// serving them. Accept goes on waiting, until Close.
func (s *streamLayer) shutdown() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ln.Close()
		s.mu.Lock()
		s.closed = true
		conns := make([]*trackedConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
	})
}

func (s *streamLayer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers c, or returns nil if the layer is closed.
func (s *streamLayer) track(c net.Conn) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	tc := &trackedConn{Conn: c, s: s}
	if ra, err := remoteAddr(c); err == nil {
		tc.remote = ra
	}
	s.conns[tc] = struct{}{}
	return tc
}

// recheck asks Admit again for the peer of every open conn and closes those
// it now refuses: admission is checked on dial and accept, and a node that
// is revoked while a conn is open must not keep it.
func (s *streamLayer) recheck() (closed int) {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if !c.remote.IsValid() || s.admit(c.remote) != nil {
			s.logf("consensus: closed connection to %v: no longer admitted", c.remote)
			c.Close()
			closed++
		}
	}
	return closed
}

// trackedConn removes itself from its layer when closed.
type trackedConn struct {
	net.Conn
	s      *streamLayer
	remote netip.Addr // the peer's mesh address, as Admit saw it
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}
