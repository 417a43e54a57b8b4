package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// testRelay is a relay server on 127.0.0.1 whose members the test changes.
type testRelay struct {
	*RelayServer
	name string
	url  string

	mu      sync.Mutex
	members map[keys.NodePublic]bool
}

func startRelay(t testing.TB) *testRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testRelay{name: "relay", url: "http://" + ln.Addr().String() + "/derp", members: map[keys.NodePublic]bool{}}
	r.RelayServer, err = NewRelayServer(RelayServerConfig{
		Listener: ln,
		Admit:    r.admit,
		Logf:     func(f string, a ...any) { t.Logf("relay server: "+f, a...) },
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (r *testRelay) relay() Relay { return Relay{Name: r.name, URL: r.url} }

func (r *testRelay) admit(k keys.NodePublic) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[k]
}

func (r *testRelay) setMember(k keys.NodePublic, in bool) {
	r.mu.Lock()
	r.members[k] = in
	r.mu.Unlock()
}

func (r *testRelay) connected(k keys.NodePublic) bool { return slices.Contains(r.Clients(), k) }

// newRelayMesh starts a mesh node using relay r, a member of it; its
// direct UDP starts blocked if blocked is set.
func newRelayMesh(t testing.TB, name string, r *testRelay, blocked bool) (*Mesh, *blockableBind) {
	t.Helper()
	bind := &blockableBind{Bind: newUDPBind()}
	bind.blocked.Store(blocked)
	priv := keys.NewNodePrivate()
	r.setMember(priv.Public(), true)
	m, err := New(Config{
		PrivateKey: priv,
		Prefix:     testPrefix,
		Name:       name,
		NoGossip:   true,
		Bind:       bind,
		Relays:     []Relay{r.relay()},
		Logf:       func(f string, a ...any) { t.Logf(name+": "+f, a...) },
	})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	waitUntil(t, 10*time.Second, name+" connected to the relay", func() bool { return m.Relay().Stats().RelayConnected })
	return m, bind
}

// echoRoundTrip sends n random bytes from a to b's echo port 80 and checks
// they come back intact.
func echoRoundTrip(t testing.TB, from, to *Mesh, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := from.DialTCP(ctx, netip.AddrPortFrom(to.Addr(), 80))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, n)
	rand.Read(payload)
	go c.Write(payload)
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("echo returned different bytes")
	}
}

func TestRelayCarriesMeshWhenDirectBlocked(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, true)
	b, _ := newRelayMesh(t, "b", r, true)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, b, 80)

	const n = 1 << 20
	echoRoundTrip(t, a, b, n)

	sa, sb := a.Relay().Stats(), b.Relay().Stats()
	t.Logf("a: %+v", sa)
	t.Logf("b: %+v", sb)
	if sa.RelayTxBytes < n || sb.RelayRxBytes < n || sb.RelayTxBytes < n || sa.RelayRxBytes < n {
		t.Fatalf("relay carried less than the %d bytes echoed: a %+v, b %+v", n, sa, sb)
	}
	if sa.DirectRxPackets != 0 || sb.DirectRxPackets != 0 {
		t.Fatalf("direct packets received through a blocked path: a %d, b %d", sa.DirectRxPackets, sb.DirectRxPackets)
	}
	// Each peer's status splits its bytes the same way.
	pa, pb := pathBytesOf(t, a, b.PublicKey()), pathBytesOf(t, b, a.PublicKey())
	if pa.RelayTx < n || pa.RelayRx < n || pb.RelayTx < n || pb.RelayRx < n || pa.DirectRx+pb.DirectRx != 0 {
		t.Fatalf("per-peer path bytes: a→b %+v, b→a %+v; want ≥ %d relayed each way, none received direct", pa, pb, n)
	}
}

// pathBytesOf is m's per-path byte counters for the peer pub, from Status.
func pathBytesOf(t *testing.T, m *Mesh, pub keys.NodePublic) PathBytes {
	t.Helper()
	st, err := m.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		if p.PublicKey == pub {
			return p.Bytes
		}
	}
	t.Fatalf("%s is not a peer", pub.ShortString())
	return PathBytes{}
}

func TestDirectPreferredWhenAvailable(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, false)
	b, _ := newRelayMesh(t, "b", r, false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, b, 80)
	// The first packets go over the relay, with copies probing the direct
	// path; both ends must confirm it. How soon is BenchmarkTimeToDirect's
	// to measure: on a loaded machine under -race a handshake restarted by
	// the watchdog alone takes seconds, so the deadline here is generous.
	start := time.Now()
	waitUntil(t, 20*time.Second, "an echo entirely direct", func() bool {
		before := a.Relay().Stats()
		echoRoundTrip(t, a, b, 16<<10)
		after := a.Relay().Stats()
		return after.RelayTxPackets == before.RelayTxPackets && after.DirectTxPackets > before.DirectTxPackets
	})
	t.Logf("direct path confirmed after %v", time.Since(start).Round(time.Millisecond))

	before, pbefore := a.Relay().Stats(), pathBytesOf(t, a, b.PublicKey())
	const n = 4 << 20
	echoRoundTrip(t, a, b, n)
	after, pafter := a.Relay().Stats(), pathBytesOf(t, a, b.PublicKey())
	if d, r := pafter.DirectTx-pbefore.DirectTx, pafter.RelayTx-pbefore.RelayTx; d < n || pafter.DirectRx-pbefore.DirectRx < n || r > d/100 {
		t.Fatalf("a's status for b: %d bytes sent direct, %d relayed, %d received direct, for a %d-byte echo", d, r, pafter.DirectRx-pbefore.DirectRx, n)
	}
	direct := after.DirectTxBytes - before.DirectTxBytes
	relayed := after.RelayTxBytes - before.RelayTxBytes
	t.Logf("a sent %d bytes direct, %d over the relay", direct, relayed)
	if direct < n {
		t.Fatalf("only %d bytes went direct for a %d-byte transfer", direct, n)
	}
	if relayed > direct/100 {
		t.Fatalf("%d bytes went over the relay although direct UDP works (%d direct)", relayed, direct)
	}
}

func TestRelayRevokeClosesConnection(t *testing.T) {
	for _, recheck := range []bool{false, true} {
		name := "admission-poll"
		if recheck {
			name = "recheck-call"
		}
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			r := startRelay(t)
			a, _ := newRelayMesh(t, "a", r, true)
			b, _ := newRelayMesh(t, "b", r, true)
			connectAll(t, map[string]*Mesh{"a": a, "b": b})
			rx := streamCounter(t, a, 90)
			streamTo(t, b, a, 90)
			waitUntil(t, 15*time.Second, "data flowing over the relay", func() bool { return rx.Load() > 256<<10 })

			r.setMember(b.PublicKey(), false)
			if recheck {
				r.Recheck()
			}
			revoked := time.Now()
			waitUntil(t, 2*time.Second, "b's relay connection closed", func() bool { return !r.connected(b.PublicKey()) })
			closed := time.Since(revoked)
			if r.connected(a.PublicKey()) == false {
				t.Fatal("a, still a member, lost its relay connection")
			}
			// Let in-flight packets land, then nothing more for 2 s.
			var at int64
			waitUntil(t, 3*time.Second, "b's stream stalled", func() bool {
				before := rx.Load()
				time.Sleep(300 * time.Millisecond)
				at = rx.Load()
				return before == at
			})
			time.Sleep(2 * time.Second)
			if got := rx.Load(); got != at {
				t.Fatalf("data still arriving from a revoked node: %d → %d", at, got)
			}
			if r.connected(b.PublicKey()) || b.Relay().Stats().RelayConnected {
				t.Fatal("a revoked node reconnected to the relay")
			}
			t.Logf("relay connection closed %v after the revocation", closed)

			// Admitted again, it comes back (the client backs off up to 5 s).
			r.setMember(b.PublicKey(), true)
			waitUntil(t, 10*time.Second, "b back on the relay", func() bool { return r.connected(b.PublicKey()) })
		})
	}
}

func TestRelayRefusesNonMember(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, true)
	echoTCP(t, a, 80)

	// A node a would talk to, but which the relay does not admit.
	bind := &blockableBind{Bind: newUDPBind()}
	bind.blocked.Store(true)
	stranger, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, NoGossip: true, Bind: bind, Relays: []Relay{r.relay()}})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	connectAll(t, map[string]*Mesh{"a": a, "stranger": stranger})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if c, err := stranger.DialTCP(ctx, netip.AddrPortFrom(a.Addr(), 80)); err == nil {
		c.Close()
		t.Fatal("a node the relay does not admit reached a through it")
	}
	if r.connected(stranger.PublicKey()) || stranger.Relay().Stats().RelayConnected {
		t.Fatal("the relay accepted a non-member")
	}
	if got := a.Relay().Stats().RelayRxPackets; got != 0 {
		t.Fatalf("a received %d packets over the relay from a non-member", got)
	}

	// The raw protocol: the connection ends before the server says hello,
	// and the packet it sends never reaches a.
	priv := key.NewNode()
	dc, err := derphttp.NewClient(priv, r.url, func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	dc.Send(derpKey(a.PublicKey()), []byte("\x04\x00\x00\x00not wireguard"))
	m, err := dc.Recv()
	if err == nil {
		t.Fatalf("a non-member's first message from the relay: %T, want the connection closed", m)
	}
	if _, ok := m.(derp.ServerInfoMessage); ok {
		t.Fatal("the relay greeted a non-member")
	}
	time.Sleep(200 * time.Millisecond)
	if st := a.Relay().Stats(); st.RelayRxPackets != 0 {
		t.Fatalf("a received a non-member's packet: %+v", st)
	}
}

func TestRelayServerCloseWithClients(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, true)
	waitUntil(t, 5*time.Second, "a listed", func() bool { return r.connected(a.PublicKey()) })
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay server Close hung with a client connected")
	}
	waitUntil(t, 5*time.Second, "a sees the relay gone", func() bool { return !a.Relay().Stats().RelayConnected })
}

func TestNewRelayServerNeedsAdmission(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if s, err := NewRelayServer(RelayServerConfig{Listener: ln}); err == nil {
		s.Close()
		t.Fatal("a relay server without an admission func started")
	}
}

func TestNewRejectsBadRelayURL(t *testing.T) {
	for _, u := range []string{"ftp://relay/derp", "relay:80", "http:///derp", "http://user:pw@relay/derp"} {
		m, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, NoGossip: true, Relays: []Relay{{Name: "r", URL: u}}})
		if err == nil {
			m.Close()
			t.Fatalf("relay URL %q accepted", u)
		}
		if !strings.Contains(err.Error(), "relay URL") {
			t.Fatalf("relay URL %q: err = %v, want it named", u, err)
		}
	}
}
