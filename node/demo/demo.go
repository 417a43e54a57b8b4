// Package demo runs `make demo`'s whole federation on this machine: first a
// bare mesh of four nodes (traffic, a refused stranger, a removed peer, a
// dead node), then a federation founded and joined by invite, recording,
// replicating, showing live view and releasing keys under a quorum. It is a
// client of package node, as cmd is, and prints each step's figures; it must
// never reach into a node's internals, so what it shows is what an operator
// could see.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

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
	m := &meshDemo{ctx: ctx, w: w, dir: opt.Dir, size: opt.TransferBytes, nodes: map[string]*node.Node{}}
	m.say("== Custos demo: a federation of userspace WireGuard nodes on 127.0.0.1 (data in %s)", opt.Dir)
	defer m.close()
	if err := m.startNodes(); err != nil {
		return err
	}
	for _, step := range []func() error{m.gossip, m.traffic, m.stranger, m.removal, m.deadNode} {
		if err := step(); err != nil {
			return err
		}
	}
	m.statusTable()

	hold := func() { keepUp(ctx, m.say, start, opt.For) }
	if !opt.NoFederation {
		// The federation stays up, its console open, while the demo runs.
		if err := runFederation(ctx, w, filepath.Join(opt.Dir, "federation"), opt.Logf, hold); err != nil {
			return fmt.Errorf("federation demo: %w", err)
		}
	} else {
		hold()
	}
	m.say("== demo done")
	return nil
}

// keepUp leaves the federation running until opt.For has passed since
// start, or, with no duration, until ctx ends (Ctrl-C).
func keepUp(ctx context.Context, say func(string, ...any), start time.Time, total time.Duration) {
	if total > 0 {
		rest := total - time.Since(start)
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
}

// demoMembers are the federation's members; the demo's fourth node, the
// stranger, lists dc-a as its peer, but nobody lists the stranger.
var demoMembers = []string{"dc-a", "dc-b", "store-praha-1"}

// meshDemo is the first part of the demo: nodes that know each other only
// from their peers files, with no policy, so that what it shows is the mesh
// alone. Its steps run in order and keep their figures for the summary.
type meshDemo struct {
	ctx   context.Context
	w     io.Writer
	dir   string
	size  int64 // bytes per throughput transfer
	nodes map[string]*node.Node
	// peersOf returns the peers-file entries of a list of nodes, minus self.
	peersOf func(self string, list []string) []mesh.Peer

	tcpMbps, quicMbps float64
	cut, dead         time.Duration
}

func (m *meshDemo) say(f string, a ...any) { fmt.Fprintf(m.w, f+"\n", a...) }

func (m *meshDemo) close() {
	for _, n := range m.nodes {
		n.Close()
	}
}

// startNodes makes keys and ports for every demo node first, so that
// each peers file can list the others, then starts the nodes.
func (m *meshDemo) startNodes() error {
	names := append(slices.Clone(demoMembers), "stranger")
	listen := map[string]netip.AddrPort{}
	entry := map[string]mesh.Peer{}
	for _, name := range names {
		port, err := nodetest.FreeUDPPort()
		if err != nil {
			return err
		}
		pub, err := node.NodeKey(filepath.Join(m.dir, name))
		if err != nil {
			return err
		}
		listen[name] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		entry[name] = mesh.Peer{Name: name, PublicKey: pub, Endpoint: listen[name]}
	}
	m.peersOf = func(self string, list []string) []mesh.Peer {
		var ps []mesh.Peer
		for _, o := range list {
			if o != self {
				ps = append(ps, entry[o])
			}
		}
		return ps
	}
	for _, name := range names {
		ps := m.peersOf(name, demoMembers)
		if name == "stranger" {
			ps = m.peersOf(name, []string{"dc-a"})
		}
		pf := filepath.Join(m.dir, name, "peers.toml")
		if err := os.WriteFile(pf, membership.FormatPeers(ps), 0o600); err != nil {
			return err
		}
		n, err := node.New(node.Config{Dir: filepath.Join(m.dir, name), Name: name, Listen: listen[name], PeersFile: pf, PeersPoll: 100 * time.Millisecond})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		m.nodes[name] = n
		m.say("   started %-14s %s  mesh %s  udp %s", name, n.Mesh().PublicKey().ShortString(), n.Mesh().Addr(), listen[name])
	}
	return nil
}

// gossip shows memberlist, over the mesh, finding every member alive.
func (m *meshDemo) gossip() error {
	m.say("\n== 1. Gossip: memberlist over the mesh finds every member alive")
	t0 := time.Now()
	if err := nodetest.WaitCond(m.ctx, 30*time.Second, func() bool { return allAlive(m.nodes, demoMembers) }); err != nil {
		return fmt.Errorf("members did not all see each other alive: %w", err)
	}
	m.say("   all %d members alive after %v", len(demoMembers), time.Since(t0).Round(time.Millisecond))
	return nil
}

// traffic measures TCP and QUIC throughput through the userspace
// WireGuard tunnels, from the store to each datacenter.
func (m *meshDemo) traffic() error {
	m.say("\n== 2. Traffic inside the mesh (store-praha-1 → datacenters, %d MiB each)", m.size>>20)
	var err error
	m.tcpMbps, err = demoTCP(m.ctx, m.nodes["store-praha-1"].Mesh(), m.nodes["dc-a"].Mesh(), m.size)
	if err != nil {
		return fmt.Errorf("tcp transfer: %w", err)
	}
	m.say("   TCP  store-praha-1 → dc-a: %7.0f Mbit/s", m.tcpMbps)
	m.quicMbps, err = demoQUIC(m.ctx, m.nodes["store-praha-1"].Mesh(), m.nodes["dc-b"].Mesh(), m.size)
	if err != nil {
		return fmt.Errorf("quic transfer: %w", err)
	}
	m.say("   QUIC store-praha-1 → dc-b: %7.0f Mbit/s (quic-go on mesh packet conns, %d-byte packets)", m.quicMbps, mesh.QUICPacketSize)
	return nil
}

// stranger shows that a key no member lists reaches no one: dc-a never
// makes it a WireGuard peer, and dc-a cannot dial it either.
func (m *meshDemo) stranger() error {
	m.say("\n== 3. A stranger (a key no member lists) tries to reach dc-a")
	stranger, dca := m.nodes["stranger"], m.nodes["dc-a"]
	sctx, cancel := context.WithTimeout(m.ctx, 3*time.Second)
	_, serr := stranger.Mesh().DialTCP(sctx, netip.AddrPortFrom(dca.Mesh().Addr(), 9))
	cancel()
	if serr == nil {
		return errors.New("the stranger reached dc-a: the mesh is broken")
	}
	st, _ := dca.Status()
	known := false
	for _, p := range st.Peers {
		known = known || p.PublicKey == stranger.Mesh().PublicKey()
	}
	m.say("   refused: %v", serr)
	m.say("   dc-a's WireGuard peers include the stranger: %v (its handshakes are dropped unanswered)", known)
	_, nerr := dca.Mesh().DialTCP(m.ctx, netip.AddrPortFrom(stranger.Mesh().Addr(), 9))
	m.say("   dc-a dialing the stranger's address: %v", nerr)
	return nil
}

// removal shows that taking a peer out of a peers file cuts its open
// streams, not only new ones.
func (m *meshDemo) removal() error {
	m.say("\n== 4. dc-b is removed from store-praha-1's peers file while streaming to it")
	var err error
	m.cut, err = demoRemoval(m.ctx, m.nodes["store-praha-1"], m.nodes["dc-b"], m.peersOf)
	if err != nil {
		return fmt.Errorf("removal: %w", err)
	}
	m.say("   the open TCP stream was cut %v after the file changed (file poll 100 ms)", m.cut.Round(time.Millisecond))
	return nil
}

// deadNode stops dc-b and times how long gossip takes to call it dead.
func (m *meshDemo) deadNode() error {
	m.say("\n== 5. dc-b stops; gossip reports it dead")
	m.nodes["dc-b"].Close()
	delete(m.nodes, "dc-b")
	t0 := time.Now()
	if err := nodetest.WaitCond(m.ctx, 30*time.Second, func() bool { return liveness(m.nodes["dc-a"], "dc-b") == "dead" }); err != nil {
		return fmt.Errorf("dc-a never saw dc-b dead: %w", err)
	}
	m.dead = time.Since(t0)
	m.say("   dc-a sees dc-b dead after %v", m.dead.Round(time.Millisecond))
	return nil
}

// statusTable prints dc-a's peer table, as `custos status` would, and the
// figures of the steps above.
func (m *meshDemo) statusTable() {
	m.say("\n== status of dc-a (what `custos status --dir %s` prints)", filepath.Join(m.dir, "dc-a"))
	if st, err := m.nodes["dc-a"].Status(); err == nil {
		membership.WritePeerTable(m.w, st.Peers, "   ")
	}
	m.say("\n== figures: TCP %.0f Mbit/s, QUIC %.0f Mbit/s, peer cut %v, dead after %v",
		m.tcpMbps, m.quicMbps, m.cut.Round(time.Millisecond), m.dead.Round(time.Millisecond))
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
