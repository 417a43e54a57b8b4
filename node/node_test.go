package node

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/membership"
)

func checkLeaks(t *testing.T) { nodetest.CheckLeaks(t) }

type testNode struct {
	dir, peers string
	listen     netip.AddrPort
	pub        keys.NodePublic
}

func prepare(t *testing.T, name string) testNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	pub, err := NodeKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := nodetest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	return testNode{dir: dir, peers: filepath.Join(dir, "peers.toml"), listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), pub: pub}
}

func (tn testNode) peer(name string) mesh.Peer {
	return mesh.Peer{Name: name, PublicKey: tn.pub, Endpoint: tn.listen}
}

func start(t *testing.T, name string, tn testNode, peers ...mesh.Peer) *Node {
	t.Helper()
	if err := os.WriteFile(tn.peers, membership.FormatPeers(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Dir: tn.dir, Name: name, Listen: tn.listen, PeersFile: tn.peers, PeersPoll: 50 * time.Millisecond,
		Logf: func(f string, a ...any) { t.Logf(name+": "+f, a...) }})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestNodesTalkAndPeersFileDrivesMesh(t *testing.T) {
	checkLeaks(t)
	a, b := prepare(t, "a"), prepare(t, "b")
	na := start(t, "a", a, b.peer("b"))
	nb := start(t, "b", b, a.peer("a"))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodetest.WaitCond(ctx, 15*time.Second, func() bool {
		sa, erra := na.Status()
		sb, errb := nb.Status()
		return erra == nil && errb == nil && sa.Liveness("b") == "alive" && sb.Liveness("a") == "alive"
	}); err != nil {
		t.Fatalf("nodes never saw each other alive: %v", err)
	}
	// A node without a policy has no cameras to view: the local API says
	// so rather than failing inside its handler.
	if _, err := LiveVia(ctx, a.dir, "praha-1/entrance", io.Discard); err == nil || !strings.Contains(err.Error(), "has no policy") {
		t.Errorf("live view on a node without a policy: %v, want \"this node has no policy\"", err)
	}
	// The local API serves status to the CLI.
	st, err := FetchStatus(ctx, a.dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "a" || st.PublicKey != a.pub || len(st.Peers) != 1 || st.Peers[0].Name != "b" || st.Peers[0].LastHandshake.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	if fi, err := os.Stat(SocketPath(a.dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("api socket: %v, %v; want mode 0600", fi, err)
	}

	// A broken edit keeps the last good peers and is reported.
	os.WriteFile(a.peers, []byte("[[peer]]\nname = \"b\"\npublic_key = \"nodekey:broken\"\n"), 0o600)
	if err := nodetest.WaitCond(ctx, 5*time.Second, func() bool { s, _ := na.Status(); return s.PeersError != "" }); err != nil {
		t.Fatal("broken peers file not reported")
	}
	if s, _ := na.Status(); len(s.Peers) != 1 || !strings.Contains(s.PeersError, "keeping the previous peers") {
		t.Fatalf("after broken edit: peers %d, error %q", len(s.Peers), s.PeersError)
	}

	// Removing b from the file cuts a's open connection to b.
	ln, err := nb.Mesh().ListenTCP(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	c, err := na.Mesh().DialTCP(ctx, netip.AddrPortFrom(nb.Mesh().Addr(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	os.WriteFile(a.peers, nil, 0o600)
	removed := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection to removed peer still open: %v", err)
	}
	if d := time.Since(removed); d > 2*time.Second {
		t.Fatalf("connection cut after %v; want within 2 s", d)
	}
	if err := nodetest.WaitCond(ctx, 5*time.Second, func() bool { s, _ := na.Status(); return len(s.Peers) == 0 && s.PeersError == "" }); err != nil {
		s, _ := na.Status()
		t.Fatalf("after removal: %+v", s)
	}
	if _, err := na.Mesh().DialTCP(ctx, netip.AddrPortFrom(nb.Mesh().Addr(), 7000)); !errors.Is(err, mesh.ErrNoPeer) {
		t.Fatalf("dial removed peer: %v, want ErrNoPeer", err)
	}
}

func TestNodeStartErrors(t *testing.T) {
	checkLeaks(t)
	a := prepare(t, "a")
	n := start(t, "a", a)

	// A second node in the same directory.
	if _, err := New(Config{Dir: a.dir, Listen: netip.MustParseAddrPort("127.0.0.1:1")}); err == nil {
		t.Fatal("second node in the same directory started")
	} else if !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second node: %v", err)
	}
	b := prepare(t, "b")
	// Port in use (a's port).
	if _, err := New(Config{Dir: b.dir, Listen: a.listen}); err == nil || !strings.Contains(err.Error(), "cannot listen on UDP port") {
		t.Fatalf("port in use: %v", err)
	}
	n.Close()
	// Key readable by others.
	os.Chmod(KeyPath(b.dir), 0o644)
	if _, err := New(Config{Dir: b.dir, Listen: b.listen}); !errors.Is(err, keys.ErrKeyFilePermissions) {
		t.Fatalf("open key file: %v", err)
	}
	os.Chmod(KeyPath(b.dir), 0o600)
	// Bad peers file.
	os.WriteFile(b.peers, []byte("nonsense"), 0o600)
	if _, err := New(Config{Dir: b.dir, Listen: b.listen, PeersFile: b.peers}); err == nil || !strings.Contains(err.Error(), "peers file") {
		t.Fatalf("bad peers file: %v", err)
	}
	if _, err := New(Config{Dir: b.dir, Listen: b.listen, PeersFile: filepath.Join(b.dir, "missing.toml")}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing peers file: %v", err)
	}
	// Missing required config.
	if _, err := New(Config{Listen: b.listen}); err == nil || !strings.Contains(err.Error(), "--dir") {
		t.Fatalf("no dir: %v", err)
	}
	if _, err := New(Config{Dir: b.dir}); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("no listen: %v", err)
	}
	if _, err := New(Config{Dir: b.dir, Listen: b.listen, Name: "bad name"}); err == nil {
		t.Fatal("bad name accepted")
	}
	// Status of a directory with no node.
	if _, err := FetchStatus(context.Background(), b.dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("status without node: %v", err)
	}
}

// Two nodes started in one directory at the same moment: exactly one runs,
// and the other says why, not that the audit journal is locked.
func TestSimultaneousStartsInOneDirectory(t *testing.T) {
	checkLeaks(t)
	a := prepare(t, "a")
	os.WriteFile(a.peers, nil, 0o600)
	const tries = 4
	type result struct {
		n   *Node
		err error
	}
	results := make(chan result, tries)
	startGate := make(chan struct{})
	for range tries {
		go func() {
			<-startGate
			n, err := New(Config{Dir: a.dir, Name: "a", Listen: a.listen, PeersFile: a.peers})
			results <- result{n, err}
		}()
	}
	close(startGate)
	running := 0
	for range tries {
		r := <-results
		if r.err == nil {
			running++
			defer r.n.Close()
			continue
		}
		if !strings.Contains(r.err.Error(), "another node is already running in") {
			t.Errorf("a loser's error: %v", r.err)
		}
	}
	if running != 1 {
		t.Fatalf("%d nodes run in one directory, want 1", running)
	}
}
