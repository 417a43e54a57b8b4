package mesh

import (
	"bytes"
	"crypto/rand"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/net/stun"

	"github.com/custos-cctv/custos/keys"
)

// TestSTUNAnsweredOnMeshSocket: a STUN binding request sent to a mesh's
// WireGuard port is answered from it with the sender's address.
func TestSTUNAnsweredOnMeshSocket(t *testing.T) {
	checkLeaks(t)
	m, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, NoGossip: true, Relay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(m.ListenPort())}
	tx := stun.NewTxID()
	if _, err := pc.WriteToUDP(stun.Request(tx), to); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no STUN answer: %v", err)
	}
	if from.Port != to.Port {
		t.Fatalf("answer from %v, want the WireGuard port %d", from, to.Port)
	}
	gotTx, addr, err := stun.ParseResponse(buf[:n])
	if err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if gotTx != tx {
		t.Fatal("answer has another transaction ID")
	}
	if want := pc.LocalAddr().(*net.UDPAddr).AddrPort(); netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()) != want {
		t.Fatalf("reflexive address %v, want %v", addr, want)
	}
	// The counter moves just after the send returns, which may be after
	// the answer arrived.
	waitUntil(t, 5*time.Second, "the answer counted", func() bool { return m.relay.stun.answered.Load() == 1 })
}

// TestReflexiveFromRelaySTUN: a node learns its reflexive address from a
// datacenter's WireGuard port, and advertises it first among its candidates.
func TestReflexiveFromRelaySTUN(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	dc, _ := newRelayMesh(t, "dc", r, false)
	priv := keys.NewNodePrivate()
	r.setMember(priv.Public(), true)
	stunAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dc.ListenPort())
	n, err := New(Config{PrivateKey: priv, Prefix: testPrefix, NoGossip: true,
		Relays: []Relay{{Name: "dc", URL: r.url, STUN: stunAddr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.ListenPort())
	waitUntil(t, 10*time.Second, "the reflexive address", func() bool { return slices.Equal(n.relay.Reflexive(), []netip.AddrPort{want}) })
	waitUntil(t, 5*time.Second, "the reflexive address advertised first", func() bool {
		c := n.cands.Load()
		return c != nil && len(*c) > 0 && (*c)[0] == want
	})

	waitUntil(t, 10*time.Second, "the underlay status", func() bool {
		u := n.Underlay()
		return u.Reflexive == want.String() && u.Home == "dc" && len(u.Relays) == 1 && u.Relays[0].Connected &&
			len(u.Candidates) > 0 && u.Candidates[0] == want.String()
	})

	// Dropping the relay forgets what it told.
	must(t, n.SetRelays(nil))
	if got := n.relay.Reflexive(); len(got) != 0 {
		t.Fatalf("reflexive %v after the relay was removed", got)
	}
}

// TestBogusFirstCandidateGoesDirect: of a peer's candidates, the one that
// answers becomes the direct path; the others cost only probes.
func TestBogusFirstCandidateGoesDirect(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, false)
	b, _ := newRelayMesh(t, "b", r, false)
	bogus := netip.MustParseAddrPort("127.0.0.1:9")
	must(t, a.SetPeers([]Peer{{Name: "b", PublicKey: b.PublicKey(), Endpoint: bogus}}))
	must(t, b.SetPeers([]Peer{{Name: "a", PublicKey: a.PublicKey(), Endpoint: bogus}}))
	echoTCP(t, b, 80)
	t0 := time.Now()
	echoRoundTrip(t, a, b, 64<<10)
	t.Logf("first echo over the relay took %v", time.Since(t0))
	if st := a.Relay().Stats(); st.DirectRxPackets != 0 || st.RelayRxBytes < 64<<10 {
		t.Fatalf("without a real candidate: %+v", st)
	}
	if p := a.Path(b.PublicKey()); p.Kind != "relay" || p.Relay != r.name || time.Since(p.LastRx) > 10*time.Second {
		t.Fatalf("path to b over the relay: %+v", p)
	}
	if ps := statusOf(t, a, "b"); ps.Path != "relay "+r.name {
		t.Fatalf("status path %q, want %q", ps.Path, "relay "+r.name)
	}

	// Gossip would tell them these; the real one comes second.
	loop := func(m *Mesh) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.ListenPort())
	}
	a.relay.setLearned(b.PublicKey(), []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:9"), loop(b)})
	b.relay.setLearned(a.PublicKey(), []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:9"), loop(a)})
	if got := a.relay.candidatesOf(b.PublicKey()); len(got) != 3 || got[0] != bogus {
		t.Fatalf("candidates of b: %v", got)
	}
	t0 = time.Now()
	waitUntil(t, 10*time.Second, "an echo entirely direct", func() bool {
		before := a.Relay().Stats()
		echoRoundTrip(t, a, b, 16<<10)
		after := a.Relay().Stats()
		return after.RelayTxPackets == before.RelayTxPackets && after.DirectTxPackets > before.DirectTxPackets
	})
	t.Logf("direct %v after learning the candidates", time.Since(t0))
	if p := a.Path(b.PublicKey()); p.Kind != "direct" || p.Addr != loop(b) {
		t.Fatalf("path to b once direct: %+v, want direct %v", p, loop(b))
	}
	if ps := statusOf(t, a, "b"); ps.Path != "direct "+loop(b).String() {
		t.Fatalf("status path %q", ps.Path)
	}

	// Relay peers keep NAT mappings open, once they have a session.
	waitUntil(t, 3*underlayTick, "a 25 s persistent keepalive on the peer", func() bool {
		var get bytes.Buffer
		must(t, a.dev.IpcGetOperation(&get))
		return strings.Contains(get.String(), "persistent_keepalive_interval=25\n")
	})
}

// TestGossipCandidatesFindDirectPath: nodes whose configured endpoints are
// wrong find each other directly through the candidates they gossip (here,
// this host's interface addresses: nodes on one LAN).
func TestGossipCandidatesFindDirectPath(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	mk := func(name string) *Mesh {
		priv := keys.NewNodePrivate()
		r.setMember(priv.Public(), true)
		m, err := New(Config{PrivateKey: priv, Prefix: testPrefix, Name: name, Relays: []Relay{r.relay()},
			Logf: func(f string, a ...any) { t.Logf(name+": "+f, a...) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := mk("a"), mk("b")
	bogus := netip.MustParseAddrPort("127.0.0.1:9")
	must(t, a.SetPeers([]Peer{{Name: "b", PublicKey: b.PublicKey(), Endpoint: bogus}}))
	must(t, b.SetPeers([]Peer{{Name: "a", PublicKey: a.PublicKey(), Endpoint: bogus}}))
	want := localCandidates(b.ListenPort())
	if len(want) == 0 {
		t.Fatal("no local candidates")
	}
	waitUntil(t, 30*time.Second, "a learned b's candidates by gossip", func() bool {
		return slices.Contains(a.relay.candidatesOf(b.PublicKey()), want[0])
	})
	echoTCP(t, b, 80)
	waitUntil(t, 10*time.Second, "an echo entirely direct", func() bool {
		before := a.Relay().Stats()
		echoRoundTrip(t, a, b, 16<<10)
		after := a.Relay().Stats()
		return after.RelayTxPackets == before.RelayTxPackets && after.DirectTxPackets > before.DirectTxPackets
	})

	// A peer removed and added again (as a policy change can do) gets
	// back what gossip holds of it, though b's metadata did not change.
	must(t, a.SetPeers(nil))
	if got := a.relay.candidatesOf(b.PublicKey()); len(got) != 0 {
		t.Fatalf("candidates of a removed peer: %v", got)
	}
	must(t, a.SetPeers([]Peer{{Name: "b", PublicKey: b.PublicKey(), Endpoint: bogus}}))
	if got := a.relay.candidatesOf(b.PublicKey()); !slices.Contains(got, want[0]) {
		t.Fatalf("candidates of b once added again: %v, want %v among them", got, want[0])
	}
}

func TestLocalCandidates(t *testing.T) {
	cands := localCandidates(4242)
	if len(cands) == 0 {
		t.Fatal("no candidates")
	}
	loopOnly := true
	for _, c := range cands {
		loopOnly = loopOnly && c.Addr().IsLoopback()
	}
	for _, c := range cands {
		a := c.Addr()
		if c.Port() != 4242 || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.Is4In6() || (a.IsLoopback() && !loopOnly) {
			t.Fatalf("bad candidate %v in %v", c, cands)
		}
	}
	ref := netip.MustParseAddrPort("203.0.113.5:4242")
	got := advertised([]netip.AddrPort{ref, ref}, cands)
	if got[0] != ref || len(got) > maxCandidates || slices.Index(got[1:], ref) >= 0 {
		t.Fatalf("advertised %v", got)
	}
}

// sinkBind is an inner bind that records what is sent (fuzzing).
type sinkBind struct {
	conn.Bind
	sent [][]byte
}

func (s *sinkBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	for _, b := range bufs {
		s.sent = append(s.sent, bytes.Clone(b))
	}
	return nil
}

func (s *sinkBind) ParseEndpoint(a string) (conn.Endpoint, error) {
	return conn.NewStdNetBind().ParseEndpoint(a)
}

// FuzzDirectReceive feeds arbitrary datagrams from a STUN server's address
// and another through the bind's direct receive path: it never panics,
// answers only well-formed binding requests (once, bounded), takes a
// response only for a transaction it sent, and hands everything else to
// WireGuard unchanged.
func FuzzDirectReceive(f *testing.F) {
	f.Add(stun.Request(stun.NewTxID()), false)
	f.Add(stun.Response(stun.NewTxID(), netip.MustParseAddrPort("203.0.113.1:7")), true)
	f.Add([]byte("\x04\x00\x00\x00wireguard data"), false)
	f.Add([]byte("\x00\x01\x00\x00\x21\x12\xa4\x42000000000000"), true)
	server := netip.MustParseAddrPort("192.0.2.50:3478")
	f.Fuzz(func(t *testing.T, pkt []byte, fromServer bool) {
		inner := &sinkBind{}
		b, err := newRelayBind(inner, keys.NewNodePrivate(), nil, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		defer b.destroy()
		// One pending request to the server, with the fuzz input's
		// transaction ID if it has one.
		var tx stun.TxID
		if len(pkt) >= 20 {
			copy(tx[:], pkt[8:20])
		}
		b.stun.pending[tx] = stunPending{relay: "dc", to: server, sent: nanotime()}
		from := netip.MustParseAddrPort("198.51.100.9:5555")
		if fromServer {
			from = server
		}
		src, _ := inner.ParseEndpoint(from.String())
		fn := b.wrapDirect(func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			sizes[0] = copy(bufs[0], pkt)
			eps[0] = src
			return 1, nil
		})
		bufs, sizes, eps := [][]byte{make([]byte, 65536)}, []int{0}, []conn.Endpoint{nil}
		n, err := fn(bufs, sizes, eps)
		if n != 1 || err != nil {
			t.Fatalf("receive: %d %v", n, err)
		}
		consumed := sizes[0] == 0 && len(pkt) > 0
		if consumed && !stun.Is(pkt) {
			t.Fatalf("consumed a non-STUN packet %q", pkt)
		}
		if !consumed && (sizes[0] != len(pkt) || !bytes.Equal(bufs[0][:sizes[0]], pkt)) {
			t.Fatal("a packet WireGuard gets was changed")
		}
		if len(inner.sent) > 1 || (len(inner.sent) == 1 && (len(inner.sent[0]) > 64 || !consumed)) {
			t.Fatalf("sent %d answers for %q", len(inner.sent), pkt)
		}
		if r := b.stun.reflex["dc"]; r.IsValid() && (!fromServer || !usableAddrPort(r)) {
			t.Fatalf("took reflexive %v from %v", r, from)
		}
	})
}

// statusOf is the status line of the peer called name.
func statusOf(t *testing.T, m *Mesh, name string) PeerStatus {
	t.Helper()
	st, err := m.Status()
	must(t, err)
	for _, ps := range st {
		if ps.Name == name {
			return ps
		}
	}
	t.Fatalf("no peer %q in status", name)
	return PeerStatus{}
}

// TestForgedUDPDoesNotMovePath: packets shaped like WireGuard's, from an
// address that is not the peer's, never move the peer's path: only what
// WireGuard authenticates roams it.
func TestForgedUDPDoesNotMovePath(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t)
	a, _ := newRelayMesh(t, "a", r, false)
	b, _ := newRelayMesh(t, "b", r, false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, a, 80)
	echoRoundTrip(t, b, a, 16<<10)
	want := "direct " + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.ListenPort()).String()
	waitUntil(t, 10*time.Second, "b's path to a direct", func() bool { return statusOf(t, b, "a").Path == want })

	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	defer attacker.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(b.ListenPort())}
	for i := range 200 {
		pkt := make([]byte, 32+i)
		pkt[0] = byte(1 + i%4) // initiation, response, cookie, transport
		rand.Read(pkt[4:])
		attacker.WriteToUDP(pkt, to)
	}
	time.Sleep(300 * time.Millisecond)
	if got := statusOf(t, b, "a"); got.Path != want || strings.Contains(got.Endpoint, attacker.LocalAddr().String()) {
		t.Fatalf("after forged packets from %v: path %q, endpoint %q; want %q", attacker.LocalAddr(), got.Path, got.Endpoint, want)
	}
}
