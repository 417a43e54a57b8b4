package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/membership"
)

// Options configures Run.
type Options struct {
	// For is how long the federation stays up in total (0: until ctx ends).
	For time.Duration
	// Dir holds the nodes' data directories; default a fresh temporary one,
	// removed afterwards.
	Dir string
	// TransferBytes is the size of each throughput transfer; default 64 MiB.
	TransferBytes int64
	// NoFederation skips the second part (Raft, invites, windows).
	NoFederation bool
	// Logf, if set, receives the federation's nodes' logs, each line
	// prefixed with the node's name (tests show them when they fail).
	Logf func(format string, args ...any)
}

// Run starts a small federation on this machine (two datacenters, a
// store, and a stranger whose key nobody listed), shows the nodes talking,
// the stranger refused, a peer removed and a stopped node declared dead,
// printing the figures as it goes.
func Run(ctx context.Context, w io.Writer, opt Options) (err error) {
	start := time.Now()
	if opt.TransferBytes == 0 {
		opt.TransferBytes = 64 << 20
	}
	if opt.Dir == "" {
		d, err := os.MkdirTemp("", "custos-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		opt.Dir = d
	}
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	say("== Custos demo: a federation of userspace WireGuard nodes on 127.0.0.1 (data in %s)", opt.Dir)

	nodes := map[string]*node.Node{}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	peersOf, err := startDemoNodes(opt.Dir, nodes, say)
	if err != nil {
		return err
	}
	members := demoMembers

	say("\n== 1. Gossip: memberlist over the mesh finds every member alive")
	t0 := time.Now()
	if err := nodetest.WaitCond(ctx, 30*time.Second, func() bool { return allAlive(nodes, members) }); err != nil {
		return fmt.Errorf("members did not all see each other alive: %w", err)
	}
	say("   all %d members alive after %v", len(members), time.Since(t0).Round(time.Millisecond))

	say("\n== 2. Traffic inside the mesh (store-praha-1 → datacenters, %d MiB each)", opt.TransferBytes>>20)
	tcpMbps, err := demoTCP(ctx, nodes["store-praha-1"].Mesh(), nodes["dc-a"].Mesh(), opt.TransferBytes)
	if err != nil {
		return fmt.Errorf("tcp transfer: %w", err)
	}
	say("   TCP  store-praha-1 → dc-a: %7.0f Mbit/s", tcpMbps)
	quicMbps, err := demoQUIC(ctx, nodes["store-praha-1"].Mesh(), nodes["dc-b"].Mesh(), opt.TransferBytes)
	if err != nil {
		return fmt.Errorf("quic transfer: %w", err)
	}
	say("   QUIC store-praha-1 → dc-b: %7.0f Mbit/s (quic-go on mesh packet conns, %d-byte packets)", quicMbps, mesh.QUICPacketSize)

	say("\n== 3. A stranger (a key no member lists) tries to reach dc-a")
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, serr := nodes["stranger"].Mesh().DialTCP(sctx, netip.AddrPortFrom(nodes["dc-a"].Mesh().Addr(), 9))
	cancel()
	if serr == nil {
		return errors.New("the stranger reached dc-a: the mesh is broken")
	}
	st, _ := nodes["dc-a"].Status()
	known := false
	for _, p := range st.Peers {
		known = known || p.PublicKey == nodes["stranger"].Mesh().PublicKey()
	}
	say("   refused: %v", serr)
	say("   dc-a's WireGuard peers include the stranger: %v (its handshakes are dropped unanswered)", known)
	_, nerr := nodes["dc-a"].Mesh().DialTCP(ctx, netip.AddrPortFrom(nodes["stranger"].Mesh().Addr(), 9))
	say("   dc-a dialing the stranger's address: %v", nerr)

	say("\n== 4. dc-b is removed from store-praha-1's peers file while streaming to it")
	cut, err := demoRemoval(ctx, nodes["store-praha-1"], nodes["dc-b"], peersOf)
	if err != nil {
		return fmt.Errorf("removal: %w", err)
	}
	say("   the open TCP stream was cut %v after the file changed (file poll 100 ms)", cut.Round(time.Millisecond))

	say("\n== 5. dc-b stops; gossip reports it dead")
	nodes["dc-b"].Close()
	delete(nodes, "dc-b")
	t0 = time.Now()
	if err := nodetest.WaitCond(ctx, 30*time.Second, func() bool { return liveness(nodes["dc-a"], "dc-b") == "dead" }); err != nil {
		return fmt.Errorf("dc-a never saw dc-b dead: %w", err)
	}
	dead := time.Since(t0)
	say("   dc-a sees dc-b dead after %v", dead.Round(time.Millisecond))

	say("\n== status of dc-a (what `custos status --dir %s` prints)", filepath.Join(opt.Dir, "dc-a"))
	if st, err := nodes["dc-a"].Status(); err == nil {
		membership.WritePeerTable(w, st.Peers, "   ")
	}
	say("\n== figures: TCP %.0f Mbit/s, QUIC %.0f Mbit/s, peer cut %v, dead after %v",
		tcpMbps, quicMbps, cut.Round(time.Millisecond), dead.Round(time.Millisecond))

	if !opt.NoFederation {
		if err := runFederation(ctx, w, filepath.Join(opt.Dir, "federation"), opt.Logf); err != nil {
			return fmt.Errorf("federation demo: %w", err)
		}
	}

	if opt.For > 0 {
		rest := opt.For - time.Since(start)
		if rest > 0 {
			say("   keeping the federation up for %v more (Ctrl-C stops)", rest.Round(time.Second))
			select {
			case <-ctx.Done():
			case <-time.After(rest):
			}
		}
	} else {
		say("   federation up; Ctrl-C stops")
		<-ctx.Done()
	}
	say("== demo done")
	return nil
}

// demoMembers are the federation's members; the demo's fourth node, the
// stranger, lists dc-a as its peer, but nobody lists the stranger.
var demoMembers = []string{"dc-a", "dc-b", "store-praha-1"}

// startDemoNodes makes keys and ports for every demo node first, so that
// each peers file can list the others, then starts the nodes into nodes.
// peersOf returns the peers-file entries of a list of nodes, minus self.
func startDemoNodes(dir string, nodes map[string]*node.Node, say func(string, ...any)) (peersOf func(self string, list []string) []mesh.Peer, err error) {
	names := append(slices.Clone(demoMembers), "stranger")
	listen := map[string]netip.AddrPort{}
	entry := map[string]mesh.Peer{}
	for _, name := range names {
		port, err := nodetest.FreeUDPPort()
		if err != nil {
			return nil, err
		}
		pub, err := node.NodeKey(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		listen[name] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		entry[name] = mesh.Peer{Name: name, PublicKey: pub, Endpoint: listen[name]}
	}
	peersOf = func(self string, list []string) []mesh.Peer {
		var ps []mesh.Peer
		for _, o := range list {
			if o != self {
				ps = append(ps, entry[o])
			}
		}
		return ps
	}
	for _, name := range names {
		ps := peersOf(name, demoMembers)
		if name == "stranger" {
			ps = peersOf(name, []string{"dc-a"})
		}
		pf := filepath.Join(dir, name, "peers.toml")
		if err := os.WriteFile(pf, membership.FormatPeers(ps), 0o600); err != nil {
			return nil, err
		}
		n, err := node.New(node.Config{Dir: filepath.Join(dir, name), Name: name, Listen: listen[name], PeersFile: pf, PeersPoll: 100 * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		nodes[name] = n
		say("   started %-14s %s  mesh %s  udp %s", name, n.Mesh().PublicKey().ShortString(), n.Mesh().Addr(), listen[name])
	}
	return peersOf, nil
}

// liveness is what n's gossip says of peer, "" when n has no status.
func liveness(n *node.Node, peer string) string {
	st, err := n.Status()
	if err != nil {
		return ""
	}
	return st.Liveness(peer)
}

func allAlive(nodes map[string]*node.Node, members []string) bool {
	for _, a := range members {
		for _, b := range members {
			if a != b && liveness(nodes[a], b) != "alive" {
				return false
			}
		}
	}
	return true
}

func mbps(n int64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }

func demoTCP(ctx context.Context, from, to *mesh.Mesh, size int64) (float64, error) {
	ln, err := to.ListenTCP(5001)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != size {
			err = fmt.Errorf("received %d of %d bytes", n, size)
		}
		got <- err
	}()
	c, err := from.DialTCP(ctx, netip.AddrPortFrom(to.Addr(), 5001))
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := io.CopyN(c, zeroReader{}, size); err != nil {
		c.Close()
		return 0, err
	}
	c.Close()
	if err := <-got; err != nil {
		return 0, err
	}
	return mbps(size, time.Since(t0)), nil
}

func demoQUIC(ctx context.Context, from, to *mesh.Mesh, size int64) (float64, error) {
	spc, err := to.ListenUDP(4433)
	if err != nil {
		return 0, err
	}
	defer spc.Close()
	cpc, err := from.ListenUDP(0)
	if err != nil {
		return 0, err
	}
	defer cpc.Close()
	srvTLS, cliTLS, err := pinnedTLS()
	if err != nil {
		return 0, err
	}
	qc := &quic.Config{InitialPacketSize: mesh.QUICPacketSize, DisablePathMTUDiscovery: true}
	st, ct := &quic.Transport{Conn: spc}, &quic.Transport{Conn: cpc}
	defer st.Close()
	defer ct.Close()
	ln, err := st.Listen(srvTLS, qc)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			got <- err
			return
		}
		n, err := io.Copy(io.Discard, s)
		if err == nil && n != size {
			err = fmt.Errorf("received %d of %d bytes", n, size)
		}
		conn.CloseWithError(0, "")
		got <- err
	}()
	conn, err := ct.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 4433)), cliTLS, qc)
	if err != nil {
		return 0, err
	}
	defer conn.CloseWithError(0, "")
	t0 := time.Now()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyN(s, zeroReader{}, size); err != nil {
		return 0, err
	}
	s.Close()
	if err := <-got; err != nil {
		return 0, err
	}
	return mbps(size, time.Since(t0)), nil
}

// pinnedTLS makes a throwaway server certificate and a client config that
// accepts exactly that certificate. (The node-key certificates checked
// against the policy come with the QUIC service.)
func pinnedTLS() (srv, cli *tls.Config, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, err
	}
	srv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{"custos/1"}, MinVersion: tls.VersionTLS13}
	cli = &tls.Config{
		NextProtos: []string{"custos/1"}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the exact-certificate check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) != 1 || !bytes.Equal(raw[0], der) {
				return errors.New("unexpected server certificate")
			}
			return nil
		},
	}
	return srv, cli, nil
}

func demoRemoval(ctx context.Context, store, dcb *node.Node, peersOf func(string, []string) []mesh.Peer) (time.Duration, error) {
	ln, err := store.Mesh().ListenTCP(5002)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := dcb.Mesh().DialTCP(ctx, netip.AddrPortFrom(store.Mesh().Addr(), 5002))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 8<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(10 * time.Second):
		return 0, errors.New("store did not accept")
	}
	defer sc.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, sc)
		if err == nil {
			err = io.EOF
		}
		readErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let data flow first
	st, err := store.Status()
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(st.PeersFile, membership.FormatPeers(peersOf(store.Name(), []string{"dc-a", store.Name()})), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-readErr:
		return time.Since(t0), nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("stream still open 10 s after removal")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
