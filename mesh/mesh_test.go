package mesh

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/custos-cctv/custos/keys"
)

var testPrefix = func() netip.Prefix {
	p, err := keys.MeshPrefix("mesh-test")
	if err != nil {
		panic(err)
	}
	return p
}()

func newTestMesh(t testing.TB, name string, gossip bool) *Mesh {
	t.Helper()
	m, err := New(Config{
		PrivateKey: keys.NewNodePrivate(),
		Prefix:     testPrefix,
		Name:       name,
		NoGossip:   !gossip,
		Logf:       func(f string, a ...any) { t.Logf(name+": "+f, a...) },
	})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// loopPeer is m as a peer reached on 127.0.0.1.
func loopPeer(m *Mesh, name string) Peer {
	return Peer{Name: name, PublicKey: m.PublicKey(), Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.ListenPort())}
}

func connectAll(t testing.TB, ms map[string]*Mesh) {
	t.Helper()
	for name, m := range ms {
		var peers []Peer
		for other, o := range ms {
			if other != name {
				peers = append(peers, loopPeer(o, other))
			}
		}
		if err := m.SetPeers(peers); err != nil {
			t.Fatalf("%s SetPeers: %v", name, err)
		}
	}
}

// echoTCP serves one connection on m's port, echoing everything.
func echoTCP(t testing.TB, m *Mesh, port uint16) {
	t.Helper()
	ln, err := m.ListenTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

func TestThreeNodesTCPUDPQUIC(t *testing.T) {
	checkLeaks(t)
	ms := map[string]*Mesh{
		"a": newTestMesh(t, "a", false),
		"b": newTestMesh(t, "b", false),
		"c": newTestMesh(t, "c", false),
	}
	connectAll(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, m := range ms {
		echoTCP(t, m, 80)
	}
	// TCP: every ordered pair round-trips a message.
	for from, fm := range ms {
		for to, tm := range ms {
			if from == to {
				continue
			}
			c, err := fm.DialTCP(ctx, netip.AddrPortFrom(tm.Addr(), 80))
			if err != nil {
				t.Fatalf("tcp %s→%s: %v", from, to, err)
			}
			msg := "hello from " + from + " to " + to + "\n"
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || got != msg {
				t.Fatalf("tcp %s→%s echo: got %q, %v; want %q", from, to, got, err, msg)
			}
			c.Close()
		}
	}

	// UDP: a datagram from a to b arrives with a's mesh address as source.
	bpc, err := ms["b"].ListenUDP(5000)
	if err != nil {
		t.Fatal(err)
	}
	defer bpc.Close()
	apc, err := ms["a"].ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer apc.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ms["b"].Addr(), 5000))
	buf := make([]byte, 1500)
	var n int
	var from net.Addr
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := apc.WriteTo([]byte("datagram"), dst); err != nil {
			t.Fatal(err)
		}
		bpc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err = bpc.ReadFrom(buf)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("udp a→b: %v", err)
	}
	if string(buf[:n]) != "datagram" {
		t.Fatalf("udp payload = %q", buf[:n])
	}
	if src, _ := netip.ParseAddrPort(from.String()); src.Addr() != ms["a"].Addr() {
		t.Fatalf("udp source = %v, want a's mesh address %v", from, ms["a"].Addr())
	}

	// QUIC: c dials b over mesh packet conns and round-trips a stream.
	srv, cli, stop := quicPair(t, ms["b"], ms["c"])
	defer stop()
	done := make(chan error, 1)
	go func() {
		conn, err := srv.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(s, s)
		s.Close()
		done <- err
	}()
	s, err := cli.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("quic open stream: %v", err)
	}
	payload := make([]byte, 256<<10)
	rand.Read(payload)
	go func() { s.Write(payload); s.Close() }()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("quic read: %v", err)
	}
	if string(got) != string(payload) {
		t.Fatalf("quic echo: got %d bytes, want %d identical", len(got), len(payload))
	}
	if err := <-done; err != nil {
		t.Fatalf("quic server: %v", err)
	}
}

func TestStrangerGetsNothing(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	stranger := newTestMesh(t, "stranger", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, a, 80)
	// The stranger knows a's key and endpoint; a does not know the stranger.
	if err := stranger.SetPeers([]Peer{loopPeer(a, "a")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if c, err := stranger.DialTCP(ctx, netip.AddrPortFrom(a.Addr(), 80)); err == nil {
		c.Close()
		t.Fatal("stranger reached a")
	}
	st, err := a.stats()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.peers[stranger.PublicKey()]; ok {
		t.Fatal("a has the stranger as a WireGuard peer")
	}
	// a's legitimate peer still works.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	c, err := b.DialTCP(ctx2, netip.AddrPortFrom(a.Addr(), 80))
	if err != nil {
		t.Fatalf("b→a: %v", err)
	}
	c.Close()
	// And nobody can even try an address it has no peer for.
	start := time.Now()
	_, err = a.DialTCP(context.Background(), netip.AddrPortFrom(stranger.Addr(), 80))
	if !errors.Is(err, ErrNoPeer) {
		t.Fatalf("a→stranger: err = %v, want ErrNoPeer", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusing a non-peer took %v; want immediate", d)
	}
}

func TestRemovePeerCutsTCPAndQUIC(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// TCP: b streams to a; a counts.
	ln, err := a.ListenTCP(90)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var tcpRx atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			tcpRx.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	bc, err := b.DialTCP(ctx, netip.AddrPortFrom(a.Addr(), 90))
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			bc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := bc.Write(chunk); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	// QUIC: b streams to a over a mesh packet conn.
	srv, cli, stop := quicPair(t, a, b)
	defer stop()
	var quicRx atomic.Int64
	go func() {
		conn, err := srv.Accept(ctx)
		if err != nil {
			return
		}
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			quicRx.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	qs, err := cli.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			if _, err := qs.Write(chunk); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	waitUntil(t, 10*time.Second, "data flowing before removal", func() bool {
		return tcpRx.Load() > 256<<10 && quicRx.Load() > 256<<10
	})

	if err := a.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	// Allow in-flight packets to land, then require silence for 2 s.
	var tcpAt, quicAt int64
	waitUntil(t, 2*time.Second, "both streams stalled", func() bool {
		t1, q1 := tcpRx.Load(), quicRx.Load()
		time.Sleep(300 * time.Millisecond)
		tcpAt, quicAt = tcpRx.Load(), quicRx.Load()
		return t1 == tcpAt && q1 == quicAt
	})
	stalled := time.Since(removed)
	time.Sleep(2 * time.Second)
	if tcpRx.Load() != tcpAt || quicRx.Load() != quicAt {
		t.Fatalf("data still flowing after peer removal: tcp %d→%d, quic %d→%d", tcpAt, tcpRx.Load(), quicAt, quicRx.Load())
	}
	t.Logf("streams stopped within %v of removal", stalled)
}

func TestGossipSeesStoppedNodeDead(t *testing.T) {
	checkLeaks(t)
	ms := map[string]*Mesh{
		"a": newTestMesh(t, "a", true),
		"b": newTestMesh(t, "b", true),
		"c": newTestMesh(t, "c", true),
	}
	connectAll(t, ms)
	liveness := func(m *Mesh, peer string) string {
		st, err := m.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st {
			if p.Name == peer {
				return p.Liveness
			}
		}
		return "absent"
	}
	waitUntil(t, 20*time.Second, "all alive", func() bool {
		for n, m := range ms {
			for o := range ms {
				if o != n && liveness(m, o) != "alive" {
					return false
				}
			}
		}
		return true
	})
	ms["c"].Close()
	stopped := time.Now()
	waitUntil(t, 30*time.Second, "a and b see c dead", func() bool {
		return liveness(ms["a"], "c") == "dead" && liveness(ms["b"], "c") == "dead"
	})
	t.Logf("stopped node seen dead by both peers after %v", time.Since(stopped).Round(10*time.Millisecond))
}

// Peers that are down: rejoinLoop asks again every second, and each join
// waits longer than that, so a join already waiting must not be started
// twice (without it, goroutines pile up for as long as the peers are down).
func TestGossipJoinsOncePerPeer(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", true)
	var down []Peer
	for i := range 5 {
		p := loopPeer(newTestMesh(t, fmt.Sprintf("down%d", i), false), fmt.Sprintf("down%d", i))
		p.Endpoint = netip.MustParseAddrPort("127.0.0.1:9") // nothing answers there
		down = append(down, p)
	}
	if err := a.SetPeers(down); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		a.gossip.goJoin(down)
	}
	if n := a.gossip.pendingJoins(); n > len(down) {
		t.Fatalf("%d joins waiting for %d peers that are down", n, len(down))
	}
}

func TestGossipLearnsEndpointButNeverAddsPeers(t *testing.T) {
	checkLeaks(t)
	// Endpoint gossip needs the advertised port, known only after bind: use
	// fixed free ports.
	pa, pb, pc := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	mkAt := func(name string, port uint16) *Mesh {
		m, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, Name: name, ListenPort: port,
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b, c := mkAt("a", pa), mkAt("b", pb), mkAt("c", pc)
	// a knows everyone's endpoint; b and c know a's endpoint and each
	// other's key only. Gossip through a must tell them where the other is.
	must(t, a.SetPeers([]Peer{loopPeer(b, "b"), loopPeer(c, "c")}))
	must(t, b.SetPeers([]Peer{loopPeer(a, "a"), {Name: "c", PublicKey: c.PublicKey()}}))
	must(t, c.SetPeers([]Peer{loopPeer(a, "a"), {Name: "b", PublicKey: b.PublicKey()}}))
	echoTCP(t, c, 80)
	waitUntil(t, 30*time.Second, "b reaches c through a gossiped endpoint", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := b.DialTCP(ctx, netip.AddrPortFrom(c.Addr(), 80))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	// a gossips about b and c, but a stranger a doesn't have never becomes
	// b's peer, however much gossip b hears.
	for _, p := range b.PeerList() {
		if p.Name != "a" && p.Name != "c" {
			t.Fatalf("b has unexpected peer %s", p.Name)
		}
	}
}

func TestUAPIWgShowAndReadOnly(t *testing.T) {
	checkLeaks(t)
	iface := "cst" + strings.ToLower(rand.Text()[:8])
	sock := filepath.Join(t.TempDir(), iface+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, NoGossip: true, UAPI: ln})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := newTestMesh(t, "b", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})

	// The raw protocol: get works without the private key; set is refused.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "get=1\n\n")
	get := readUAPI(t, c)
	if strings.Contains(get, "private_key") {
		t.Fatal("uapi get revealed the private key")
	}
	if !strings.Contains(get, "public_key="+b.PublicKey().WireGuardHex()) || !strings.HasSuffix(get, "errno=0\n") {
		t.Fatalf("uapi get lacks peer b or errno=0:\n%s", get)
	}
	stranger := keys.NewNodePrivate().Public()
	io.WriteString(c, "set=1\npublic_key="+stranger.WireGuardHex()+"\nallowed_ip=::/0\n\n")
	if got := readUAPI(t, c); got != "errno=1\n" {
		t.Fatalf("uapi set answered %q, want errno=1 (refused)", got)
	}
	st, _ := a.stats()
	if _, ok := st.peers[stranger]; ok {
		t.Fatal("uapi set added a peer")
	}

	// The real tool.
	wg, err := exec.LookPath("wg")
	if err != nil {
		t.Skip("wg (wireguard-tools) not installed; .ci/run installs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("wg looks for sockets in /var/run/wireguard, which needs root")
	}
	// wg finds userspace interfaces by socket name in /var/run/wireguard.
	if err := os.MkdirAll("/var/run/wireguard", 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join("/var/run/wireguard", iface+".sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)
	out, err := exec.Command(wg, "show", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("wg show %s: %v\n%s", iface, err, out)
	}
	raw := b.PublicKey().Raw32()
	if want := "peer: " + base64.StdEncoding.EncodeToString(raw[:]); !strings.Contains(string(out), want) {
		t.Fatalf("wg show output lacks %q:\n%s", want, out)
	}
	if !strings.Contains(string(out), b.Addr().String()+"/128") {
		t.Fatalf("wg show output lacks b's allowed ip:\n%s", out)
	}
	t.Logf("wg show %s:\n%s", iface, out)
}

func readUAPI(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var sb strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("uapi read: %v (so far %q)", err, sb.String())
		}
		if l == "\n" {
			return sb.String()
		}
		sb.WriteString(l)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	k := keys.NewNodePrivate()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no key", Config{Prefix: testPrefix}, "no private key"},
		{"no prefix", Config{PrivateKey: k}, "not an IPv6 prefix"},
		{"v4 prefix", Config{PrivateKey: k, Prefix: netip.MustParsePrefix("10.0.0.0/8")}, "not an IPv6 prefix"},
		{"tiny mtu", Config{PrivateKey: k, Prefix: testPrefix, MTU: 500}, "MTU"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg)
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
	// Port in use.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	m, err := New(Config{PrivateKey: k, Prefix: testPrefix, ListenPort: port, NoGossip: true})
	if err == nil {
		m.Close()
		t.Fatalf("listening on a used port %d succeeded", port)
	}
	if !strings.Contains(err.Error(), "cannot listen on UDP port") {
		t.Fatalf("port in use: err = %v", err)
	}
}

func TestSetPeersRejectsBadPeers(t *testing.T) {
	a := newTestMesh(t, "a", false)
	other := keys.NewNodePrivate().Public()
	cases := []struct {
		name  string
		peers []Peer
	}{
		{"zero key", []Peer{{Name: "z"}}},
		{"own key", []Peer{{Name: "me", PublicKey: a.PublicKey()}}},
		{"duplicate", []Peer{{Name: "x", PublicKey: other}, {Name: "y", PublicKey: other}}},
		{"unspecified endpoint", []Peer{{Name: "u", PublicKey: other, Endpoint: netip.MustParseAddrPort("0.0.0.0:51820")}}},
	}
	for _, tc := range cases {
		if err := a.SetPeers(tc.peers); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
		if n := len(a.PeerList()); n != 0 {
			t.Errorf("%s: a refused SetPeers changed the peer set (%d peers)", tc.name, n)
		}
	}
}

// quicPair starts a QUIC listener on srvM and a client connection from cliM
// to it, both over mesh packet conns.
func quicPair(t testing.TB, srvM, cliM *Mesh) (*quic.Listener, *quic.Conn, func()) {
	t.Helper()
	spc, err := srvM.ListenUDP(4433)
	if err != nil {
		t.Fatal(err)
	}
	cpc, err := cliM.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	qc := &quic.Config{InitialPacketSize: QUICPacketSize, DisablePathMTUDiscovery: true, MaxIdleTimeout: 30 * time.Second}
	st := &quic.Transport{Conn: spc}
	ct := &quic.Transport{Conn: cpc}
	ln, err := st.Listen(testTLS(t), qc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cc := testTLS(t)
	cc.InsecureSkipVerify = true // test only: the mesh already authenticated the peer
	conn, err := ct.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(srvM.Addr(), 4433)), cc, qc)
	if err != nil {
		t.Fatalf("quic dial: %v", err)
	}
	return ln, conn, func() {
		conn.CloseWithError(0, "")
		ln.Close()
		st.Close()
		ct.Close()
		spc.Close()
		cpc.Close()
	}
}

func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		NextProtos:   []string{"custos/1"},
		MinVersion:   tls.VersionTLS13,
	}
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freeUDPPort(t testing.TB) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// checkLeaks verifies, after every other cleanup of t has run, that no
// goroutine outlived the test.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleakOpts...) })
}

// goleakOpts ignores goroutines that outlive a test by design: gVisor's
// and quic-go's process-wide workers.
var goleakOpts = []goleak.Option{
	// memberlist's Shutdown does not wait for an in-flight probe; it ends at
	// its probe timeout and only then sees the closed transport.
	goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	goleak.IgnoreTopFunction("gvisor.dev/gvisor/pkg/sync.Gopark"),
	goleak.IgnoreAnyFunction("gvisor.dev/gvisor/pkg/tcpip/stack.(*processor).start"),
}
