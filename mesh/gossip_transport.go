package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipNet is what the gossip transport needs from the mesh: UDP and TCP on mesh addresses.
type gossipNet interface {
	ListenUDP(addr netip.AddrPort) (net.PacketConn, error)
	ListenTCP(addr netip.AddrPort) (net.Listener, error)
	DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

const (
	// gossipPacketBufSize is the largest UDP datagram we can receive. memberlist
	// sizes its own packets (Config.UDPBufferSize), but a peer with a different
	// setting must not have its packets silently truncated.
	gossipPacketBufSize = 65536

	// Backoff bounds for a read/accept loop that keeps failing: short enough to
	// recover quickly from a transient error, capped so a persistently broken
	// listener costs one log line per second rather than a hot spin.
	gossipBaseDelay = 5 * time.Millisecond
	gossipMaxDelay  = 1 * time.Second
)

// gossipTransport is a memberlist transport over the mesh (in production a
// WireGuard userspace netstack). memberlist's own NetTransport cannot be used:
// it binds OS sockets and type-asserts *net.UDPConn/*net.TCPListener, whereas
// netstack hands us gonet conns behind the plain net interfaces.
type gossipTransport struct {
	n     gossipNet
	local netip.AddrPort // actual bound address (port resolved if bind asked for 0)
	udp   net.PacketConn
	tcp   net.Listener
	logf  func(format string, args ...any)

	// Unbuffered like NetTransport's: memberlist has its own handoff queue, and
	// backpressure here is preferable to holding unbounded packets.
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn

	// ctx is cancelled by Shutdown. Loops check it before reporting an error,
	// so the errors caused by closing the listeners are not logged, and it
	// aborts in-flight dials and blocked channel handoffs.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error

	// logMu/logClosed gate memberlist's logging (see gossipLogWriter):
	// memberlist.Shutdown does not wait for a probe in flight, which can log
	// up to a probe interval later — about a node that no longer exists, into
	// a logf whose owner (a closed mesh, a finished test) may be gone.
	logMu     sync.RWMutex
	logClosed bool
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// newGossipTransport listens on bind (UDP and TCP, same port) over n.
// If bind's port is 0, the TCP listener picks the port and UDP reuses it,
// because memberlist advertises one port for both protocols.
func newGossipTransport(n gossipNet, bind netip.AddrPort, logf func(format string, args ...any)) (*gossipTransport, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// Netstack treats a 4-in-6 address as IPv6; peers advertise plain IPv4.
	bind = netip.AddrPortFrom(bind.Addr().Unmap(), bind.Port())
	if !bind.Addr().IsValid() || bind.Addr().IsUnspecified() {
		// We advertise the bind address to peers, so it has to be a real one.
		return nil, fmt.Errorf("mesh: gossip bind %s: need a specific mesh address", bind)
	}

	tcp, err := n.ListenTCP(bind)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip listen tcp %s: %w", bind, err)
	}
	local := bind
	if local.Port() == 0 {
		ap, err := addrPortOf(tcp.Addr())
		if err != nil {
			tcp.Close()
			return nil, fmt.Errorf("mesh: gossip listen tcp %s: bound port: %w", bind, err)
		}
		local = netip.AddrPortFrom(bind.Addr(), ap.Port())
	}
	udp, err := n.ListenUDP(local)
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("mesh: gossip listen udp %s: %w", local, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	t := &gossipTransport{
		n:        n,
		local:    local,
		udp:      udp,
		tcp:      tcp,
		logf:     logf,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		ctx:      ctx,
		cancel:   cancel,
	}
	t.wg.Add(2)
	go t.readLoop()
	go t.acceptLoop()
	return t, nil
}

// LocalAddr is the mesh address and port the transport listens on (and advertises).
func (t *gossipTransport) LocalAddr() netip.AddrPort { return t.local }

// FinalAdvertiseAddr implements memberlist.Transport. An explicit advertise
// address in the memberlist config wins; otherwise we advertise the bind address.
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		// AsSlice yields 4 bytes for IPv4 and 16 for IPv6, which is what
		// memberlist puts on the wire.
		return net.IP(t.local.Addr().AsSlice()), int(t.local.Port()), nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, 0, fmt.Errorf("mesh: gossip advertise address %q: %w", ip, err)
	}
	return net.IP(a.Unmap().AsSlice()), port, nil
}

// WriteTo implements memberlist.Transport.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport: one UDP datagram.
func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	dst, err := parseGossipAddr(a.Addr)
	if err != nil {
		return time.Time{}, fmt.Errorf("mesh: gossip write to %q: %w", a.Addr, err)
	}
	// gonet's WriteTo type-asserts *net.UDPAddr, so build exactly that.
	if _, err := t.udp.WriteTo(b, net.UDPAddrFromAddrPort(dst)); err != nil {
		return time.Time{}, fmt.Errorf("mesh: gossip write to %s: %w", dst, err)
	}
	// Stamp after the write returns: memberlist measures probe RTT from this,
	// and a stamp taken before a slow write would inflate it.
	return time.Now(), nil
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a TCP stream over the mesh.
func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst, err := parseGossipAddr(a.Addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip dial %q: %w", a.Addr, err)
	}
	// Derive from t.ctx so Shutdown aborts dials; timeout <= 0 means none,
	// matching net.Dialer.
	ctx, cancel := t.ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(t.ctx, timeout)
	}
	defer cancel() // the context only bounds connection setup, not the conn
	c, err := t.n.DialTCP(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip dial %s: %w", dst, err)
	}
	return c, nil
}

// StreamCh implements memberlist.Transport.
func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport: closes the listeners and waits for
// the loops to exit. Once it returns, neither the transport nor a memberlist
// configured by gossipConfig calls logf again. Safe to call more than once;
// later calls return the first call's result.
func (t *gossipTransport) Shutdown() error {
	t.shutdownOnce.Do(func() {
		t.cancel() // before Close, so the loops see the shutdown with their error
		if err := errors.Join(t.tcp.Close(), t.udp.Close()); err != nil {
			t.shutdownErr = fmt.Errorf("mesh: gossip shutdown: %w", err)
		}
		t.wg.Wait()
		t.logMu.Lock() // waits out any memberlist log line in progress
		t.logClosed = true
		t.logMu.Unlock()
	})
	return t.shutdownErr
}

// readLoop turns UDP datagrams into memberlist packets until Shutdown.
func (t *gossipTransport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, gossipPacketBufSize)
	var delay time.Duration
	for {
		n, from, err := t.udp.ReadFrom(buf)
		ts := time.Now() // as close to receipt as we can: memberlist derives RTT from it
		if err != nil {
			if !t.backoff(&delay, "UDP read", err) {
				return
			}
			continue
		}
		delay = 0
		if n == 0 {
			// memberlist needs at least a message-type byte.
			t.logf("mesh: gossip: empty UDP packet from %v", from)
			continue
		}
		src, err := addrPortOf(from)
		if err != nil {
			// memberlist replies and applies IP checks based on From.
			t.logf("mesh: gossip: UDP packet from unusable address %v: %v", from, err)
			continue
		}
		// memberlist keeps Buf beyond this call, and buf is reused for the
		// next read; copy exactly n bytes rather than pinning 64 KiB per packet.
		p := &memberlist.Packet{
			Buf:       bytes.Clone(buf[:n]),
			From:      net.UDPAddrFromAddrPort(src),
			Timestamp: ts,
		}
		select {
		case t.packetCh <- p:
		case <-t.ctx.Done():
			return
		}
	}
}

// acceptLoop hands inbound TCP streams to memberlist until Shutdown.
func (t *gossipTransport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if !t.backoff(&delay, "TCP accept", err) {
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streamCh <- c:
		case <-t.ctx.Done():
			c.Close() // nobody will ever read it
			return
		}
	}
}

// backoff handles a loop's I/O error. It returns false if the loop should exit:
// on Shutdown (silently: the error is just the listener being closed), or when
// the listener was closed under us, which will never heal. Otherwise it logs
// and sleeps with exponential backoff so a persistent error cannot spin.
func (t *gossipTransport) backoff(delay *time.Duration, op string, err error) bool {
	if t.ctx.Err() != nil {
		return false
	}
	if errors.Is(err, net.ErrClosed) {
		t.logf("mesh: gossip %s on %s: listener closed, giving up: %v", op, t.local, err)
		return false
	}
	d := min(max(2*(*delay), gossipBaseDelay), gossipMaxDelay)
	*delay = d
	t.logf("mesh: gossip %s on %s: %v (retrying in %v)", op, t.local, err, d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.ctx.Done():
		return false
	}
}

// parseGossipAddr parses the "ip:port" / "[v6]:port" strings memberlist hands
// to the transport. memberlist only ever passes IP literals (it resolves names
// itself in Join), so no DNS is needed or wanted inside the mesh.
func parseGossipAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("port 0")
	}
	// memberlist may render an IPv4 peer via a 16-byte net.IP; netstack would
	// route ::ffff:a.b.c.d as IPv6, so send to the plain IPv4 form.
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// addrPortOf extracts an address from a net.Addr without assuming the
// concrete type (gonet and the OS both use *net.UDPAddr/*net.TCPAddr today,
// but the mesh interface does not promise it).
func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return netip.AddrPort{}, errors.New("no address")
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}, err
		}
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, fmt.Errorf("invalid address %v", a)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// gossipConfig returns memberlist settings tuned for a WireGuard mesh of at most a few hundred nodes
// on LAN/WAN links: name, transport, and timings chosen so a stopped node is declared dead quickly.
//
// Failure detection time for a node that stops answering, with N members and
// PI = ProbeInterval:
//
//	T ≈ wait for a probe of it   0 … (N-1)·PI   (each member probes one peer per PI, round-robin)
//	  + the failed probe round    PI             (direct ack, then indirect + TCP, until PI ends)
//	  + suspicion timeout         SuspicionMult · max(1, log10 N) · PI
//	  + gossip of "dead"          ~GossipInterval · a few hops
//
// With PI = 500ms, SuspicionMult = 4 and N = 3 that is 2.5–3.5s (+~0.1–0.3s
// gossip). From N ≥ 4 memberlist starts the suspicion timer at
// SuspicionMaxTimeoutMult (default 6) times that and shrinks it towards the
// minimum as other members independently confirm the suspicion, which on a
// busy cluster happens within a probe interval or two. At N = 300 the minimum
// suspicion is 4·2.5·0.5s ≈ 5s.
//
// Logging goes through logf until t shuts down and never after; logf must not
// block on a lock held by whoever calls Shutdown (memberlist.Shutdown included),
// since Shutdown waits for a log line in progress.
func gossipConfig(name string, t *gossipTransport, logf func(string, ...any)) *memberlist.Config {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := memberlist.DefaultLANConfig()
	c.Name = name
	c.Transport = t
	// memberlist uses BindPort as the default port for Join addresses without
	// one and for legacy messages; keep it (and the advertised port) truthful.
	c.BindAddr = t.local.Addr().String()
	c.BindPort = int(t.local.Port())
	c.AdvertiseAddr = "" // let the transport advertise its bind address
	c.AdvertisePort = int(t.local.Port())

	// memberlist refuses LogOutput and Logger together; Logger alone suffices.
	c.LogOutput = nil
	c.Logger = log.New(gossipLogWriter{t: t, logf: logf}, "", 0)

	// WireGuard already encrypts and authenticates every packet between mesh
	// peers; a second layer would only cost CPU and a shared key to manage.
	c.SecretKey = nil
	c.Keyring = nil
	c.GossipVerifyIncoming = false
	c.GossipVerifyOutgoing = false

	// Timings: see the formula above. A probe succeeds if any ack arrives
	// before the end of its interval, so the 500ms interval (not the timeout)
	// bounds the RTT we tolerate — ample for WAN. ProbeTimeout only decides
	// when to also try indirect/TCP probes, leaving them 250ms of the round.
	// Lifeguard's awareness still stretches both up to 8× on a struggling
	// node, so a slow link causes suspicion (which the node refutes) rather
	// than a false death.
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.SuspicionMult = 4
	// Faster dissemination of the verdict, so every survivor learns within
	// a few hundred ms of the first; cheap at a few hundred nodes.
	c.GossipInterval = 100 * time.Millisecond

	// Keep gossip datagrams within the IPv6 minimum MTU (1280 - 40 IPv6 - 8
	// UDP) so they never need fragmenting inside the tunnel (WireGuard tunnel
	// MTUs are 1280–1420); memberlist's default of 1400 would.
	c.UDPBufferSize = 1232
	// A join or push/pull to a peer that is down should not hold a join
	// slot for the LAN default of 10 s; 3 s is ample inside the mesh.
	c.TCPTimeout = 3 * time.Second
	return c
}

// gossipLogWriter adapts logf to the io.Writer behind memberlist's *log.Logger,
// which writes one whole line per call. Lines are dropped once t has shut down,
// and so are memberlist's [DEBUG] lines: one per probe and push/pull, they
// would drown what matters (suspicions, deaths, refutations).
type gossipLogWriter struct {
	t    *gossipTransport
	logf func(string, ...any)
}

func (w gossipLogWriter) Write(p []byte) (int, error) {
	w.t.logMu.RLock()
	defer w.t.logMu.RUnlock()
	if !w.t.logClosed && !bytes.Contains(p, []byte("[DEBUG]")) {
		w.logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}
