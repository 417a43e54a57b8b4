package mesh

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/keys"
)

// tcpProxy forwards TCP connections to a target until it is told to
// black-hole them: then it keeps every connection open, accepts new ones,
// and forwards nothing, as a datacenter whose network is cut silently
// looks from outside (no RST, no FIN).
type tcpProxy struct {
	ln     net.Listener
	target string
	hole   atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(u, c)
		go p.pipe(c, u)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			src.Close()
			dst.Close()
			return
		}
		if !p.hole.Load() {
			dst.Write(buf[:n])
		}
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// startRelayBehind starts a named relay; with proxied set, nodes reach it
// through a tcpProxy (returned) that the test can black-hole.
func startRelayBehind(t testing.TB, name string, proxied bool) (*testRelay, *tcpProxy) {
	t.Helper()
	r := startRelay(t)
	r.name = name
	if !proxied {
		return r, nil
	}
	target := strings.TrimSuffix(strings.TrimPrefix(r.url, "http://"), "/derp")
	p := startProxy(t, target)
	r.url = "http://" + p.ln.Addr().String() + "/derp"
	return r, p
}

// newMultiRelayMesh starts a mesh node that is a member of every relay in
// rs and uses them in that order; its direct UDP is blocked.
func newMultiRelayMesh(t testing.TB, name string, rs ...*testRelay) *Mesh {
	t.Helper()
	bind := &blockableBind{Bind: newUDPBind()}
	bind.blocked.Store(true)
	priv := keys.NewNodePrivate()
	var relays []Relay
	for _, r := range rs {
		r.setMember(priv.Public(), true)
		relays = append(relays, r.relay())
	}
	m, err := New(Config{
		PrivateKey: priv,
		Prefix:     testPrefix,
		Name:       name,
		NoGossip:   true,
		Bind:       bind,
		Relays:     relays,
		Logf:       func(f string, a ...any) { t.Logf(name+": "+f, a...) },
	})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	waitUntil(t, 10*time.Second, name+" connected to every relay", func() bool { return relaysUp(m) == len(rs) })
	return m
}

// udpTrickle sends a datagram from one mesh to another's port every 20 ms
// until the test ends, and counts those that arrive.
func udpTrickle(t testing.TB, from, to *Mesh, port uint16) *atomic.Int64 {
	t.Helper()
	rc, err := to.ListenUDP(port)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := from.ListenUDP(port)
	if err != nil {
		rc.Close()
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); rc.Close(); sc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	})
	wg.Go(func() {
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), port))
		msg := make([]byte, 200)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			sc.WriteTo(msg, dst)
		}
	})
	return &n
}

// relaysUp counts m's connected relay sessions.
func relaysUp(m *Mesh) int {
	r := m.relay.run.Load()
	if r == nil {
		return 0
	}
	n := 0
	for _, c := range *r.clients.Load() {
		if c.up.Load() {
			n++
		}
	}
	return n
}

// relaySent is how many bytes m has written to the named relay.
func relaySent(m *Mesh, name string) uint64 {
	if r := m.relay.run.Load(); r != nil {
		for _, c := range *r.clients.Load() {
			if c.cfg.Name == name {
				return c.sent.bytes.Load()
			}
		}
	}
	return 0
}

// TestRelayFailover: two nodes that can only meet through relays keep
// streaming when their home relay dies, whether its process ends (its
// connections close) or its network is cut silently (only the pings tell).
func TestRelayFailover(t *testing.T) {
	for _, how := range []string{"killed", "blackholed"} {
		t.Run(how, func(t *testing.T) {
			checkLeaks(t)
			ra, proxy := startRelayBehind(t, "dc-a", true)
			rb, _ := startRelayBehind(t, "dc-b", false)
			a := newMultiRelayMesh(t, "a", ra, rb)
			b := newMultiRelayMesh(t, "b", ra, rb)
			connectAll(t, map[string]*Mesh{"a": a, "b": b})
			// Datagrams, not a TCP stream: how fast the bind moves, not
			// how far TCP's retransmission timer has backed off meanwhile.
			rx := udpTrickle(t, b, a, 90)
			waitUntil(t, 15*time.Second, "datagrams flowing", func() bool { return rx.Load() > 20 })
			if relaySent(b, "dc-a") == 0 || relaySent(b, "dc-b") != 0 {
				t.Fatalf("b did not send over its home relay dc-a: dc-a %d bytes, dc-b %d", relaySent(b, "dc-a"), relaySent(b, "dc-b"))
			}

			if how == "killed" {
				ra.Close()
			} else {
				proxy.hole.Store(true)
			}
			died := time.Now()
			at, viaB := rx.Load(), relaySent(b, "dc-b")
			deadline := time.Now().Add(15 * time.Second)
			for !(rx.Load() > at+20 && relaySent(b, "dc-b") > viaB) {
				if time.Now().After(deadline) {
					for _, m := range []*Mesh{a, b} {
						for _, c := range *m.relay.run.Load().clients.Load() {
							t.Logf("%s: %s up %v idle %v sent %d recvd %d", m.name, c.cfg.Name, c.up.Load(), time.Duration(nanotime()-c.lastRx.Load()), c.sent.packets.Load(), c.recvd.packets.Load())
						}
					}
					t.Fatalf("no datagrams over dc-b 15 s after dc-a was %s: received %d (%d before), b sent %d bytes to dc-b (%d before), relays up: a %d, b %d; a %+v; b %+v",
						how, rx.Load(), at, relaySent(b, "dc-b"), viaB, relaysUp(a), relaysUp(b), a.Relay().Stats(), b.Relay().Stats())
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("datagrams flowing over dc-b %v after dc-a was %s", time.Since(died).Round(10*time.Millisecond), how)
			if n := a.resets.Load() + b.resets.Load(); n != 0 {
				t.Errorf("%d WireGuard sessions were restarted; a dead relay is repaired by failing over, the sessions were fine", n)
			}
			// Each side finds the silent relay by its own pings, so the side
			// that does not send over it may notice a little later.
			waitUntil(t, 10*time.Second, "only dc-b connected on both sides", func() bool {
				return relaysUp(a) == 1 && relaysUp(b) == 1
			})
		})
	}
}

// TestSetRelaysAtRuntime: relays can be added and removed while traffic
// flows; sessions to relays that stay are kept.
func TestSetRelaysAtRuntime(t *testing.T) {
	checkLeaks(t)
	ra, _ := startRelayBehind(t, "dc-a", false)
	rb, _ := startRelayBehind(t, "dc-b", false)
	a := newMultiRelayMesh(t, "a", ra)
	b := newMultiRelayMesh(t, "b", ra)
	rb.setMember(a.PublicKey(), true)
	rb.setMember(b.PublicKey(), true)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, b, 80)
	echoRoundTrip(t, a, b, 64<<10)

	sessA := (*a.relay.run.Load().clients.Load())[0]
	for _, m := range []*Mesh{a, b} {
		must(t, m.SetRelays([]Relay{ra.relay(), rb.relay()}))
	}
	if got := (*a.relay.run.Load().clients.Load())[0]; got != sessA {
		t.Fatal("SetRelays replaced the session of a relay that stayed")
	}
	waitUntil(t, 10*time.Second, "both relays connected", func() bool { return relaysUp(a) == 2 && relaysUp(b) == 2 })

	// Removing the home relay moves traffic to the other.
	for _, m := range []*Mesh{a, b} {
		must(t, m.SetRelays([]Relay{rb.relay()}))
	}
	waitUntil(t, 5*time.Second, "a off dc-a", func() bool { return !ra.connected(a.PublicKey()) })
	before := relaySent(a, "dc-b")
	echoRoundTrip(t, a, b, 64<<10)
	if relaySent(a, "dc-b") < before+64<<10 {
		t.Fatal("the echo did not go over dc-b")
	}

	// Bad sets are refused whole, and the current one stays.
	for _, bad := range [][]Relay{
		{rb.relay(), rb.relay()},
		{rb.relay(), {Name: "dc-b", URL: "http://127.0.0.1:9/derp"}},
		{rb.relay(), {Name: "other", URL: rb.url}},
		{{Name: "x", URL: "ftp://relay/derp"}},
		{{Name: "", URL: rb.url}},
		{{Name: "x\n", URL: rb.url}},
	} {
		err := a.SetRelays(bad)
		if err == nil {
			t.Fatalf("SetRelays(%v) accepted", bad)
		}
		if !strings.Contains(err.Error(), "relay") {
			t.Fatalf("SetRelays(%v): unclear error %v", bad, err)
		}
	}
	if relaysUp(a) != 1 {
		t.Fatal("a refused SetRelays changed the sessions")
	}
	// A mesh without the relay path refuses relays.
	plain := newTestMesh(t, "plain", false)
	if err := plain.SetRelays([]Relay{rb.relay()}); err == nil {
		t.Fatal("SetRelays on a mesh without Config.Relay accepted")
	}
}

// TestRelayReceiveUnblocksOnClose: with several relays, every receive func
// returns net.ErrClosed on Close, also while a relay is unreachable.
func TestRelayReceiveUnblocksOnClose(t *testing.T) {
	checkLeaks(t)
	ra, _ := startRelayBehind(t, "dc-a", false)
	_, hole := startRelayBehind(t, "dc-b", true)
	hole.hole.Store(true)
	priv := keys.NewNodePrivate()
	ra.setMember(priv.Public(), true)
	b, err := newRelayBind(newUDPBind(), priv, []Relay{ra.relay(), {Name: "dc-b", URL: "http://" + hole.ln.Addr().String() + "/derp"}}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.destroy()
	for i := range 3 {
		fns, _, err := b.Open(0)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, len(fns))
		for _, fn := range fns {
			go func() {
				bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
				for {
					if _, err := fn(bufs, sizes, eps); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		waitUntil(t, 5*time.Second, "dc-a connected", func() bool { return b.Stats().RelayConnected })
		b.Close()
		for range fns {
			select {
			case err := <-errs:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("cycle %d: receive returned %v", i, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("cycle %d: a receive func did not return on Close", i)
			}
		}
	}
}
