package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// loopbackGossipNet is the test twin of the mesh netstack: gossipNet over the
// OS loopback. The transport sees it only through the net interfaces, as it
// would see gonet conns.
type loopbackGossipNet struct{}

func (loopbackGossipNet) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
}

func (loopbackGossipNet) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
}

func (loopbackGossipNet) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr.String())
}

// testLog collects log lines and echoes them to t while the test runs. memberlist
// goroutines can outlive a failing test, and t.Logf after the test ends panics.
type testLog struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	done   bool
	lines  []string
}

func newTestLog(t *testing.T, prefix string) *testLog {
	l := &testLog{t: t, prefix: prefix}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) logf(format string, args ...any) {
	line := l.prefix + fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if !l.done {
		l.t.Log(line)
	}
}

func (l *testLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// newLoopbackGossipTransport binds port 0 on ip. The port is picked by TCP and
// reused for UDP, which another process may hold, so retry like memberlist does.
func newLoopbackGossipTransport(t *testing.T, ip string, logf func(string, ...any)) *gossipTransport {
	t.Helper()
	var err error
	for range 10 {
		var gt *gossipTransport
		if gt, err = newGossipTransport(loopbackGossipNet{}, netip.AddrPortFrom(netip.MustParseAddr(ip), 0), logf); err == nil {
			return gt
		}
	}
	t.Fatalf("newGossipTransport on %s: %v", ip, err)
	return nil
}

// verifyNoGoroutineLeaks is goleak.VerifyNone with more patience than goleak's
// built-in retries (~0.5s): memberlist.Shutdown does not wait for a probe in
// flight, which only ends when its probe interval (500ms, up to 8x under
// Lifeguard awareness) runs out. Our transport itself stops synchronously.
func verifyNoGoroutineLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for goleak.Find() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaveRecorder is a memberlist.EventDelegate noting when each node was
// declared dead (or left), as seen by one member.
type leaveRecorder struct {
	mu   sync.Mutex
	left map[string]time.Time
}

func (r *leaveRecorder) NotifyJoin(*memberlist.Node)   {}
func (r *leaveRecorder) NotifyUpdate(*memberlist.Node) {}
func (r *leaveRecorder) NotifyLeave(n *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.left[n.Name]; !ok {
		r.left[n.Name] = time.Now()
	}
}

func (r *leaveRecorder) leftAt(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.left[name]
	return at, ok
}

func aliveMembers(ml *memberlist.Memberlist) []string {
	var names []string
	for _, n := range ml.Members() {
		if n.State == memberlist.StateAlive {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names
}

func TestGossipMembershipJoinAndFailureDetection(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)

	const n = 3
	var (
		lists [n]*memberlist.Memberlist
		recs  [n]*leaveRecorder
		names [n]string
	)
	for i := range n {
		names[i] = fmt.Sprintf("node-%d", i)
		tr := newLoopbackGossipTransport(t, "127.0.0.1", newTestLog(t, names[i]+": ").logf)
		recs[i] = &leaveRecorder{left: map[string]time.Time{}}
		cfg := gossipConfig(names[i], tr, newTestLog(t, names[i]+": ").logf)
		cfg.Events = recs[i]
		ml, err := memberlist.Create(cfg)
		if err != nil {
			tr.Shutdown()
			t.Fatalf("memberlist.Create(%s): %v", names[i], err)
		}
		lists[i] = ml
		defer ml.Shutdown() // idempotent, also for the node stopped below
	}

	// Join through node-0 using its mesh address as a literal "ip:port", so
	// memberlist never attempts DNS.
	seed := lists[0].LocalNode().FullAddress().Addr
	for i := 1; i < n; i++ {
		if _, err := lists[i].Join([]string{seed}); err != nil {
			t.Fatalf("%s join %s: %v", names[i], seed, err)
		}
	}
	all := slices.Clone(names[:])
	for i := range n {
		waitFor(t, 10*time.Second, names[i]+" to see 3 alive members", func() bool {
			return slices.Equal(aliveMembers(lists[i]), all)
		})
	}

	// Stop node-2 without Leave: the others must find out by probing.
	victim := names[n-1]
	stopped := time.Now()
	if err := lists[n-1].Shutdown(); err != nil {
		t.Fatalf("shutdown %s: %v", victim, err)
	}
	for i := range n - 1 {
		waitFor(t, 15*time.Second, names[i]+" to declare "+victim+" dead", func() bool {
			_, ok := recs[i].leftAt(victim)
			return ok && !slices.Contains(aliveMembers(lists[i]), victim) && len(lists[i].Members()) == n-1
		})
	}
	var worst time.Duration
	for i := range n - 1 {
		at, _ := recs[i].leftAt(victim)
		d := at.Sub(stopped)
		worst = max(worst, d)
		t.Logf("%s declared %s dead %v after shutdown", names[i], victim, d.Round(time.Millisecond))
	}
	t.Logf("failure detected by all survivors after %v", worst.Round(time.Millisecond))

	for i := range n - 1 {
		if err := lists[i].Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", names[i], err)
		}
	}
}

func TestGossipTransportPacketAndStream(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			if ip == "::1" {
				ln, err := net.Listen("tcp", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				ln.Close()
			}
			testGossipPacketAndStream(t, ip)
		})
	}
}

func testGossipPacketAndStream(t *testing.T, ip string) {
	logA, logB := newTestLog(t, "a: "), newTestLog(t, "b: ")
	a := newLoopbackGossipTransport(t, ip, logA.logf)
	defer a.Shutdown()
	b := newLoopbackGossipTransport(t, ip, logB.logf)
	defer b.Shutdown()

	// FinalAdvertiseAddr: the bind address, as memberlist wants it.
	advIP, advPort, err := a.FinalAdvertiseAddr("", 7946)
	if err != nil {
		t.Fatalf("FinalAdvertiseAddr: %v", err)
	}
	wantLen := net.IPv4len
	if a.LocalAddr().Addr().Is6() {
		wantLen = net.IPv6len
	}
	if !advIP.Equal(net.ParseIP(ip)) || len(advIP) != wantLen || advPort != int(a.LocalAddr().Port()) {
		t.Fatalf("FinalAdvertiseAddr = %v (len %d), %d; want %s (len %d), %d", advIP, len(advIP), advPort, ip, wantLen, a.LocalAddr().Port())
	}
	if advIP, advPort, err := a.FinalAdvertiseAddr("fd7a::1", 1234); err != nil || advIP.String() != "fd7a::1" || advPort != 1234 {
		t.Fatalf("FinalAdvertiseAddr(explicit) = %v, %d, %v", advIP, advPort, err)
	}

	// Packet: payload, sender address and receipt time reach memberlist.
	payload := []byte("ping over the mesh")
	before := time.Now()
	if _, err := a.WriteTo(payload, b.LocalAddr().String()); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	select {
	case p := <-b.PacketCh():
		if !bytes.Equal(p.Buf, payload) {
			t.Errorf("packet payload = %q, want %q", p.Buf, payload)
		}
		from, ok := p.From.(*net.UDPAddr)
		if !ok || from.AddrPort() != a.LocalAddr() {
			t.Errorf("packet From = %#v, want *net.UDPAddr %v", p.From, a.LocalAddr())
		}
		if p.Timestamp.Before(before) || p.Timestamp.After(time.Now()) {
			t.Errorf("packet Timestamp %v not within the exchange", p.Timestamp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no packet received")
	}

	// Stream: dial, accept, exchange bytes both ways.
	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.LocalAddr().String(), Name: "b"}, 5*time.Second)
	if err != nil {
		t.Fatalf("DialAddressTimeout: %v", err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}
	defer s.Close()
	if _, err := c.Write([]byte("push")); err != nil {
		t.Fatalf("stream write: %v", err)
	}
	buf := make([]byte, 4)
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "push" {
		t.Fatalf("stream read = %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pull")); err != nil {
		t.Fatalf("stream write back: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pull" {
		t.Fatalf("stream read back = %q, %v", buf, err)
	}
	c.Close()
	s.Close()

	for _, tr := range []*gossipTransport{a, b} {
		if err := tr.Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	if lines := slices.Concat(logA.snapshot(), logB.snapshot()); len(lines) > 0 {
		t.Errorf("unexpected transport logs: %q", lines)
	}
}

func TestGossipTransportMalformedAddress(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)
	tr := newLoopbackGossipTransport(t, "127.0.0.1", newTestLog(t, "").logf)
	defer tr.Shutdown()

	for _, addr := range []string{
		"",
		"garbage",
		"127.0.0.1",         // no port
		"127.0.0.1:",        // empty port
		"127.0.0.1:99999",   // port out of range
		"127.0.0.1:0",       // unusable port
		"::1:7946",          // IPv6 without brackets
		"[::1]",             // no port
		"localhost:7946",    // names are not resolved inside the mesh
		"[fd7a::1%x]:-1",    // negative port
		"300.1.2.3:7946",    // bad octet
		"node/1.2.3.4:7946", // memberlist's join syntax is not a transport address
	} {
		if _, err := tr.WriteTo([]byte{1}, addr); err == nil || !strings.HasPrefix(err.Error(), "mesh: gossip write to") {
			t.Errorf("WriteTo(%q) error = %v, want a mesh: gossip write error", addr, err)
		}
		if _, err := tr.WriteToAddress([]byte{1}, memberlist.Address{Addr: addr, Name: "x"}); err == nil {
			t.Errorf("WriteToAddress(%q) succeeded", addr)
		}
		if c, err := tr.DialTimeout(addr, time.Second); err == nil {
			c.Close()
			t.Errorf("DialTimeout(%q) succeeded", addr)
		}
	}

	// A transport cannot advertise an unspecified or missing address.
	for _, bind := range []netip.AddrPort{{}, netip.MustParseAddrPort("0.0.0.0:0"), netip.MustParseAddrPort("[::]:0")} {
		if gt, err := newGossipTransport(loopbackGossipNet{}, bind, nil); err == nil {
			gt.Shutdown()
			t.Errorf("newGossipTransport(%v) succeeded", bind)
		}
	}
}

// failingUDPNet fails ListenUDP so the constructor's cleanup can be observed.
type failingUDPNet struct {
	loopbackGossipNet
	tcp net.Listener
}

func (f *failingUDPNet) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	ln, err := f.loopbackGossipNet.ListenTCP(addr)
	f.tcp = ln
	return ln, err
}

func (f *failingUDPNet) ListenUDP(netip.AddrPort) (net.PacketConn, error) {
	return nil, errors.New("udp unavailable")
}

func TestGossipTransportListenFailureCleansUp(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)
	f := &failingUDPNet{}
	if gt, err := newGossipTransport(f, netip.MustParseAddrPort("127.0.0.1:0"), nil); err == nil {
		gt.Shutdown()
		t.Fatal("newGossipTransport succeeded without UDP")
	} else if !strings.Contains(err.Error(), "udp unavailable") {
		t.Errorf("error = %v, want the ListenUDP cause", err)
	}
	if f.tcp == nil {
		t.Fatal("TCP listener was never opened")
	}
	if _, err := f.tcp.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TCP listener left open: Accept error = %v", err)
	}
}

func TestGossipTransportShutdownTwice(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)
	logs := newTestLog(t, "")
	tr := newLoopbackGossipTransport(t, "127.0.0.1", logs.logf)
	mlLogs := newTestLog(t, "")
	cfg := gossipConfig("solo", tr, mlLogs.logf)
	cfg.Logger.Printf("[INFO] memberlist: hello")
	if got := mlLogs.snapshot(); !slices.Equal(got, []string{"[INFO] memberlist: hello"}) {
		t.Fatalf("memberlist log forwarded as %q", got)
	}

	// Leave a packet and a stream that nobody consumes: Shutdown must not hang
	// on the loops' handoff to memberlist.
	if _, err := tr.WriteTo([]byte("unread"), tr.LocalAddr().String()); err != nil {
		t.Fatalf("WriteTo self: %v", err)
	}
	c, err := tr.DialTimeout(tr.LocalAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("DialTimeout self: %v", err)
	}
	defer c.Close()

	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hung")
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}

	// After Shutdown: errors, not panics, and no loop logging.
	if _, err := tr.WriteTo([]byte{1}, "127.0.0.1:7946"); err == nil {
		t.Error("WriteTo after Shutdown succeeded")
	}
	if c, err := tr.DialTimeout(tr.LocalAddr().String(), time.Second); err == nil {
		c.Close()
		t.Error("DialTimeout after Shutdown succeeded")
	}
	if lines := logs.snapshot(); len(lines) > 0 {
		t.Errorf("transport logged during/after Shutdown: %q", lines)
	}
	// memberlist goroutines outliving Shutdown must not reach logf either.
	cfg.Logger.Printf("[INFO] memberlist: late")
	if got := mlLogs.snapshot(); len(got) != 1 {
		t.Errorf("memberlist log after Shutdown forwarded: %q", got)
	}
}
