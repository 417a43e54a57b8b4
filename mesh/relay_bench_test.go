package mesh

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// The NAT path's figures for `make bench`: TCP over the relay beside TCP
// over direct UDP, the relay server's CPU per Mbit relayed (the server in
// a child process, so its CPU is its own), and the time from two nodes'
// start to a direct path between them.

// streamThrough writes n chunks of 64 KiB from x to y over a mesh TCP
// connection (after a first chunk that completes the handshake) and
// returns once y has read them all, with the timer running for the n.
func streamThrough(b *testing.B, x, y *Mesh, n int, timed func()) {
	b.Helper()
	ln, err := y.ListenTCP(91)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := x.DialTCP(ctx, netip.AddrPortFrom(y.Addr(), 91))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	c.Write(chunk) // the handshake and, for direct, the path's confirmation
	b.SetBytes(int64(len(chunk)))
	timed()
	b.ResetTimer()
	for range n {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if got := <-got; got < int64(n+1)*int64(len(chunk)) {
		b.Fatalf("receiver got %d bytes, want %d", got, (n+1)*len(chunk))
	}
	b.StopTimer()
}

// BenchmarkMeshTCPPath measures TCP throughput inside the mesh between two
// nodes on loopback, over direct UDP and over the relay (direct UDP
// blocked). Run: go test -run '^$' -bench MeshTCPPath ./mesh/
func BenchmarkMeshTCPPath(b *testing.B) {
	for _, path := range []string{"direct", "relay"} {
		b.Run(path, func(b *testing.B) {
			r := startRelay(b)
			blocked := path == "relay"
			x, _ := newRelayMesh(b, "x", r, blocked)
			y, _ := newRelayMesh(b, "y", r, blocked)
			connectAll(b, map[string]*Mesh{"x": x, "y": y})
			var before RelayStats
			streamThrough(b, x, y, b.N, func() { before = x.Relay().Stats() })
			after := x.Relay().Stats()
			total := float64(after.DirectTxBytes - before.DirectTxBytes + after.RelayTxBytes - before.RelayTxBytes)
			if total > 0 {
				b.ReportMetric(100*float64(after.RelayTxBytes-before.RelayTxBytes)/total, "%relayed")
			}
			if path == "relay" {
				// Packets the sender's relay queue dropped, per 100 sent.
				sent := float64(after.RelayTxPackets - before.RelayTxPackets)
				b.ReportMetric(100*float64(after.RelayDropped-before.RelayDropped)/max(sent, 1), "%dropped")
			}
		})
	}
}

// relayChildEnv makes the test binary a relay server for
// BenchmarkRelayServerCPU (TestRelayServerChild).
const relayChildEnv = "CUSTOS_RELAY_CHILD_KEYS"

// TestRelayServerChild is the relay process of BenchmarkRelayServerCPU; it
// does nothing in a normal run. It admits the node keys listed in its
// environment, prints its address, answers "cpu" on stdin with its own
// CPU time in nanoseconds, and exits when stdin closes.
func TestRelayServerChild(t *testing.T) {
	list := os.Getenv(relayChildEnv)
	if list == "" {
		t.Skip("the relay process of BenchmarkRelayServerCPU")
	}
	members := map[keys.NodePublic]bool{}
	for _, s := range strings.Split(list, ",") {
		k, err := keys.ParseNodePublicHex(s)
		if err != nil {
			t.Fatal(err)
		}
		members[k] = true
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewRelayServer(RelayServerConfig{Listener: ln, Admit: func(k keys.NodePublic) bool { return members[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fmt.Printf("addr %s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "cpu" {
			fmt.Printf("cpu %d\n", cpuNanos())
		}
	}
}

// cpuNanos is this process's user and system CPU time.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// relayChild is a relay server in a child process.
type relayChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	url string
}

func startRelayChild(b *testing.B, members ...keys.NodePublic) *relayChild {
	b.Helper()
	var hexKeys []string
	for _, k := range members {
		hexKeys = append(hexKeys, k.WireGuardHex())
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayServerChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), relayChildEnv+"="+strings.Join(hexKeys, ","))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	rc := &relayChild{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	addr, ok := rc.line("addr ")
	if !ok {
		b.Fatal("the relay child printed no address")
	}
	rc.url = "http://" + addr + "/derp"
	return rc
}

// line returns the rest of the child's next line that starts with prefix.
func (rc *relayChild) line(prefix string) (string, bool) {
	for rc.out.Scan() {
		if rest, ok := strings.CutPrefix(rc.out.Text(), prefix); ok {
			return rest, true
		}
	}
	return "", false
}

func (rc *relayChild) cpu(b *testing.B) time.Duration {
	b.Helper()
	if _, err := io.WriteString(rc.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	s, ok := rc.line("cpu ")
	ns, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || ns < 0 {
		b.Fatalf("the relay child's CPU time: %q", s)
	}
	return time.Duration(ns)
}

// BenchmarkRelayServerCPU: a datacenter relay's CPU per Mbit it relays,
// with the relay server alone in its own process, two nodes streaming
// TCP through it (direct UDP blocked).
func BenchmarkRelayServerCPU(b *testing.B) {
	xk, yk := keys.NewNodePrivate(), keys.NewNodePrivate()
	rc := startRelayChild(b, xk.Public(), yk.Public())
	mk := func(name string, priv keys.NodePrivate) *Mesh {
		bind := &blockableBind{Bind: newUDPBind()}
		bind.blocked.Store(true)
		m, err := New(Config{PrivateKey: priv, Prefix: testPrefix, Name: name, NoGossip: true, Bind: bind,
			Relays: []Relay{{Name: "dc", URL: rc.url}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		waitUntil(b, 10*time.Second, name+" on the relay", func() bool { return m.Relay().Stats().RelayConnected })
		return m
	}
	x, y := mk("x", xk), mk("y", yk)
	connectAll(b, map[string]*Mesh{"x": x, "y": y})
	var cpu0 time.Duration
	streamThrough(b, x, y, b.N, func() { cpu0 = rc.cpu(b) })
	used := rc.cpu(b) - cpu0
	mbit := float64(b.N) * 64 * 1024 * 8 / 1e6
	usPerMbit := float64(used.Microseconds()) / mbit
	b.ReportMetric(usPerMbit, "cpu-us/Mbit")
	// The same as the share of one core that 100 Mbit/s of relayed
	// traffic keeps busy: 100 Mbit each second costs 100·usPerMbit µs.
	b.ReportMetric(100*usPerMbit/1e6*100, "core%/100Mbps")
}

// BenchmarkTimeToDirect: two nodes whose configured endpoints lead
// nowhere (as a store's private address does from another site) start,
// reach each other over the relay, learn each other's candidates by
// gossip, and probe: the time from their start to a direct path both ways.
func BenchmarkTimeToDirect(b *testing.B) {
	var total time.Duration
	for range b.N {
		total += timeToDirect(b)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-direct")
}

func timeToDirect(b *testing.B) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	r := startRelay(b)
	start := time.Now()
	var ms []*Mesh
	for _, name := range []string{"a", "b"} {
		priv := keys.NewNodePrivate()
		r.setMember(priv.Public(), true)
		m, err := New(Config{PrivateKey: priv, Prefix: testPrefix, Name: name, Relays: []Relay{r.relay()}})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		ms = append(ms, m)
	}
	a, c := ms[0], ms[1]
	nowhere := netip.MustParseAddrPort("127.0.0.1:9")
	must(b, a.SetPeers([]Peer{{Name: "b", PublicKey: c.PublicKey(), Endpoint: nowhere}}))
	must(b, c.SetPeers([]Peer{{Name: "a", PublicKey: a.PublicKey(), Endpoint: nowhere}}))
	a.Greet()
	c.Greet()
	deadline := time.Now().Add(60 * time.Second)
	for a.Path(c.PublicKey()).Kind != "direct" || c.Path(a.PublicKey()).Kind != "direct" {
		if time.Now().After(deadline) {
			b.Fatalf("no direct path in 60 s: a→b %v, b→a %v", a.Path(c.PublicKey()), c.Path(a.PublicKey()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
