package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetnsNATLab checks the NAT lab with plain sockets before any node runs
// on it (the routers are what the NAT matrix's cases rest on):
//   - endpoint-independent: every destination sees the same mapped address,
//     the router's public one with the source port kept; a stranger's
//     datagram to it is dropped (filtering), but two sites sending to each
//     other's mapped address at once both get through (hole punching);
//   - symmetric (--random-fully): destinations see different ports, and
//     the same hole punching fails both ways;
//   - forwarded UDP dropped: no UDP gets out, TCP does;
//   - two hosts on one LAN reach each other at their LAN addresses even
//     when their router drops UDP.
func TestNetnsNATLab(t *testing.T) {
	nl := newNATLab(t, endpointIndependent, endpointIndependent)
	dcA, dcB := nl.public("dc-a", 10), nl.public("dc-b", 20)
	store := nl.lanNode("store-1", "lan1", 2)
	hq := nl.lanNode("hq", "lan2", 2)
	r1, r2 := nl.router(1), nl.router(2)

	// Three whoami servers: two ports on dc-a, one on dc-b.
	servers := []netip.AddrPort{
		netip.AddrPortFrom(dcA.addr, 7000), netip.AddrPortFrom(dcA.addr, 7001), netip.AddrPortFrom(dcB.addr, 7000),
	}
	for _, s := range servers {
		ns := dcA.ns
		if s.Addr() == dcB.addr {
			ns = dcB.ns
		}
		serveWhoami(listenUDPIn(t, ns, s.String()))
	}
	const port = 40000
	sc := listenUDPIn(t, store.ns, "0.0.0.0:40000")
	hc := listenUDPIn(t, hq.ns, "0.0.0.0:40000")
	mappings := func(c *net.UDPConn) []netip.AddrPort {
		var m []netip.AddrPort
		for _, s := range servers {
			m = append(m, mappedAddr(c, s, 3*time.Second))
		}
		return m
	}

	t.Run("endpoint-independent", func(t *testing.T) {
		for _, x := range []struct {
			name string
			c    *net.UDPConn
			want netip.AddrPort
		}{{"store-1", sc, netip.AddrPortFrom(r1.pub, port)}, {"hq", hc, netip.AddrPortFrom(r2.pub, port)}} {
			m := mappings(x.c)
			t.Logf("%s (%s:%d) as the servers see it: %v", x.name, nl.nodes[x.name].addr, port, m)
			for i, got := range m {
				if got != x.want {
					t.Errorf("%s seen by %s as %v, want %v (the router's address, the source port kept)", x.name, servers[i], got, x.want)
				}
			}
		}
		// A stranger (a port the store never sent to) is filtered out.
		stranger := listenUDPIn(t, dcB.ns, dcB.addr.String()+":7002")
		for range 5 {
			stranger.WriteToUDPAddrPort([]byte("punch"), netip.AddrPortFrom(r1.pub, port))
		}
		if got, _ := punchRecv(sc, time.Second); got {
			t.Errorf("an unsolicited datagram from %v reached store-1 through %s", stranger.LocalAddr(), r1.name)
		}
		aGot, bGot := punch(sc, hc, netip.AddrPortFrom(r1.pub, port), netip.AddrPortFrom(r2.pub, port), 3*time.Second)
		t.Logf("simultaneous sends between the mapped addresses: store-1 received %v, hq received %v", aGot, bGot)
		if !aGot || !bGot {
			t.Errorf("hole punching through two endpoint-independent NATs failed: store-1 received %v, hq received %v", aGot, bGot)
		}
	})

	t.Run("symmetric", func(t *testing.T) {
		nl.rebuildRouter(r1, symmetric)
		nl.rebuildRouter(r2, symmetric)
		var seen [2][]netip.AddrPort
		for i, x := range []struct {
			name string
			c    *net.UDPConn
			pub  netip.Addr
		}{{"store-1", sc, r1.pub}, {"hq", hc, r2.pub}} {
			m := mappings(x.c)
			seen[i] = m
			t.Logf("%s (%s:%d) as the servers see it: %v", x.name, nl.nodes[x.name].addr, port, m)
			ports := map[uint16]bool{}
			for j, got := range m {
				if got.Addr() != x.pub {
					t.Errorf("%s seen by %s as %v, want the router's address %v", x.name, servers[j], got, x.pub)
				}
				ports[got.Port()] = true
			}
			// Three flows, three random ports: all equal by chance about
			// once in 4·10⁹ runs.
			if len(ports) < 2 {
				t.Errorf("%s: every destination saw port %v: the mapping does not depend on the destination", x.name, m[0])
			}
		}
		aGot, bGot := punch(sc, hc, seen[0][0], seen[1][0], 2*time.Second)
		if aGot || bGot {
			t.Errorf("hole punching through two symmetric NATs got through (store-1 received %v, hq received %v): not symmetric", aGot, bGot)
		}
	})

	t.Run("UDP blocked", func(t *testing.T) {
		nl.rebuildRouter(r1, blockUDP)
		if got := mappedAddr(sc, servers[0], 1500*time.Millisecond); got.IsValid() {
			t.Errorf("UDP from store-1 got out through %s (seen as %v) with forwarded UDP dropped", r1.name, got)
		}
		if got := mappedAddr(hc, servers[0], 3*time.Second); got.Addr() != r2.pub {
			t.Errorf("hq behind %s seen as %v, want %v: the whoami server or router-2 is broken", r2.name, got, r2.pub)
		}
		ln := listenTCPIn(t, dcA.ns, dcA.addr.String()+":51820")
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if err := dialTCPIn(store.ns, netip.AddrPortFrom(dcA.addr, 51820), 5*time.Second); err != nil {
			t.Errorf("TCP from store-1 to dc-a through %s: %v", r1.name, err)
		}
	})

	t.Run("same LAN", func(t *testing.T) {
		nl.plug(hq, nl.lans["lan1"], 3)
		aGot, bGot := punch(sc, hc, netip.AddrPortFrom(store.addr, port), netip.AddrPortFrom(hq.addr, port), 3*time.Second)
		if !aGot || !bGot {
			t.Errorf("store-1 and hq on lan1 (router-1 dropping UDP) at their LAN addresses: store-1 received %v, hq received %v", aGot, bGot)
		}
		if got := mappedAddr(hc, servers[0], 1500*time.Millisecond); got.IsValid() {
			t.Errorf("hq, moved behind %s, got UDP out (seen as %v)", r1.name, got)
		}
	})
}

// punchRecv reports whether a "punch" datagram arrives on c within d.
func punchRecv(c *net.UDPConn, d time.Duration) (bool, netip.AddrPort) {
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return false, netip.AddrPort{}
		}
		if string(buf[:n]) == "punch" {
			return true, from
		}
	}
}

// The NAT matrix: a federation whose datacenters are public and whose store
// and admin node sit behind NAT routers (netns_nat_harness_test.go). Each
// case asserts the path `custos status` reports (the contract: "direct
// IP:PORT", "relay NAME" or "none"), that live view delivers frames to hq
// and that the store's replication progresses, all under the case's NAT.
// The cases run in the order that rebuilds least, each from a state the
// previous one leaves unable to satisfy it by accident:
//
//	c  router-1 drops UDP: store-1 joins over TCP and reaches everyone
//	   through the relays;
//	a  router-1 rebuilt endpoint-independent, store-1 and hq restarted:
//	   hq goes direct to router-1's public address within 10 s of the
//	   first packet;
//	b  both routers rebuilt symmetric: the direct path dies, relay only;
//	e  the datacenter whose relay carries store-1 ↔ hq is killed mid
//	   live view: the other relay takes over within 10 s;
//	d  hq moves onto store-1's LAN: direct at the LAN address.
//
// Throughout, no status may claim a direct path at an address a peer
// cannot have from where the viewer sits (a private address of another
// site above all).
func TestNetnsNATMatrix(t *testing.T) {
	f := newNATFed(t)

	t.Run("c_udp_blocked_relay_only", func(t *testing.T) {
		f := f.sub(t)
		began := time.Now()
		f.waitMember(f.store, 90*time.Second)
		f.ensureCamera()
		f.waitRecording(began, 60*time.Second)
		f.logf("store-1 joined over TCP and records, %v after its start", time.Since(began).Round(time.Millisecond))
		for _, viewer := range []*custosProc{f.desk, f.dcA, f.dcB, f.witness} {
			f.waitPath(viewer, f.store, 30*time.Second, isRelay, "a relay")
		}
		for _, peer := range []*custosProc{f.desk, f.dcA, f.dcB, f.witness} {
			f.waitPath(f.store, peer, 30*time.Second, isRelay, "a relay")
		}
		f.liveAndReplicate(began, 20*time.Second, isRelay, "a relay", f.dcA, f.dcB)

		// The relay carries packets, not permissions: the witness reaches
		// store-1 only through it, and without a grant it may not watch.
		out, err := exec.Command(f.bin, "live", "--dir", f.witness.dir, "--camera", natCamera,
			"--out", filepath.Join(f.tmp, "live-witness.ts"), "--for", "5s").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 4 || !strings.Contains(string(out), "no grant") {
			t.Errorf("a live view on the witness, which holds no grant, over the relay: %v\n%s\nwant refused (exit 4, \"no grant\")", err, out)
		} else {
			f.logf("the witness, on a relay path to store-1, was refused a live view: %s", strings.TrimSpace(lastLine(string(out))))
		}
	})

	t.Run("a_endpoint_independent_direct", func(t *testing.T) {
		f := f.sub(t)
		f.nl.rebuildRouter(f.nl.router(1), endpointIndependent)
		// Both ends start afresh, so "the first packet" is a moment the
		// test sees: hq's path for store-1 leaves "none".
		f.kill(f.store)
		f.kill(f.desk)
		began := time.Now()
		f.restart(f.store)
		f.restart(f.desk)
		f.ensureCamera() // if case c could not
		want := "direct " + f.nl.router(1).pub.String() + ":"
		first, direct := f.firstPacketToPath(f.desk, f.store, 90*time.Second, func(p string) bool { return strings.HasPrefix(p, want) })
		if !first.IsZero() && !direct.IsZero() {
			f.logf("hq: store-1's first packet %v after the restarts, %q %v after it",
				first.Sub(began).Round(time.Millisecond), want+"PORT", direct.Sub(first).Round(time.Millisecond))
			if d := direct.Sub(first); d > 10*time.Second {
				t.Errorf("hq's path to store-1 went direct %v after the first packet, want within 10 s", d.Round(time.Millisecond))
			}
		}
		f.waitPath(f.store, f.desk, 30*time.Second, hasPrefix("direct "+f.nl.router(2).pub.String()+":"), "direct to router-2's public address")
		for _, dc := range []*custosProc{f.dcA, f.dcB} {
			f.waitPath(dc, f.store, 30*time.Second, hasPrefix(want), "direct to router-1's public address")
		}
		f.checkTextPath(f.desk, f.store)
		f.waitRecording(began, 60*time.Second) // a live view needs the restarted recorder
		f.liveAndReplicate(began, 20*time.Second, hasPrefix(want), "direct to router-1's public address", f.dcA, f.dcB)
	})

	t.Run("b_symmetric_relay", func(t *testing.T) {
		f := f.sub(t)
		f.nl.rebuildRouter(f.nl.router(1), symmetric)
		f.nl.rebuildRouter(f.nl.router(2), symmetric)
		began := time.Now()
		f.waitPath(f.desk, f.store, 30*time.Second, isRelay, "a relay once the direct path died")
		f.waitPath(f.store, f.desk, 30*time.Second, isRelay, "a relay once the direct path died")
		if p := f.waitPath(f.desk, f.store, time.Second, isRelay, "a relay"); isRelay(p) {
			f.logf("hq and store-1 on a relay (%s) %v after both routers turned symmetric", p, time.Since(began).Round(time.Millisecond))
		}
		f.checkTextPath(f.desk, f.store)
		// The live view's 20 s are also 20 s in which hole punching must
		// not appear to succeed.
		f.liveAndReplicate(time.Now(), 20*time.Second, isRelay, "a relay", f.dcA, f.dcB)
	})

	t.Run("e_relay_datacenter_killed", func(t *testing.T) {
		f := f.sub(t)
		path := f.waitPath(f.desk, f.store, 30*time.Second, isRelay, "a relay")
		victim, survivor := f.dcA, f.dcB
		if path == "relay dc-b" { // the relay in use is the one to kill
			victim, survivor = f.dcB, f.dcA
			f.logf("hq reaches store-1 through dc-b's relay, not its home dc-a: killing dc-b instead")
		}
		live := f.startLiveTo("e", 60*time.Second)
		f.checkFlowing(live, 30*time.Second, "before the kill")
		killed := f.kill(victim)
		f.logf("killed %s with SIGKILL, mid live view over its relay", victim.name)
		want := "relay " + survivor.name
		if f.waitPath(f.desk, f.store, 10*time.Second, func(p string) bool { return p == want }, want+" within 10 s of the kill") == want {
			f.logf("hq's path to store-1 is %q %v after the kill", want, time.Since(killed).Round(time.Millisecond))
		}
		f.waitPath(f.store, f.desk, 15*time.Second, func(p string) bool { return p == want }, want)
		f.checkFlowing(live, 15*time.Second, "after the kill")
		f.checkTextPath(f.desk, f.store)
		f.waitProgress(killed.Add(time.Second), 90*time.Second, survivor)
		f.checkFlowing(live, 15*time.Second, "after replication went on")
		f.finishLive(live, 100)
	})

	t.Run("d_same_lan_direct", func(t *testing.T) {
		f := f.sub(t)
		f.kill(f.desk)
		f.nl.plug(f.ns[f.desk], f.nl.lans["lan1"], 3)
		f.desk.listen = f.ns[f.desk].addr.String() + ":51820"
		began := time.Now()
		f.restart(f.desk)
		want := "direct " + f.ns[f.store].addr.String() + ":"
		p1 := f.waitPath(f.desk, f.store, 30*time.Second, hasPrefix(want), "direct to store-1's LAN address")
		p2 := f.waitPath(f.store, f.desk, 30*time.Second, hasPrefix("direct "+f.ns[f.desk].addr.String()+":"), "direct to hq's LAN address")
		f.logf("%v after hq's restart on lan1: hq → store-1 %q, store-1 → hq %q", time.Since(began).Round(time.Millisecond), p1, p2)
		f.checkTextPath(f.desk, f.store)
		var alive []*custosProc
		for _, dc := range []*custosProc{f.dcA, f.dcB} {
			if !dc.killed {
				alive = append(alive, dc)
			}
		}
		f.liveAndReplicate(began, 20*time.Second, hasPrefix(want), "direct to store-1's LAN address", alive...)
	})
}

// The matrix's federation: its one site, camera and node names.
const (
	natSite   = "site-1"
	natCamera = natSite + "/door"
)

// natFed is a netFed on the NAT lab: dc-a (198.51.100.10), dc-b (.20) and
// the witness (.30) on the public network and voting; store-1 (10.1.0.2)
// behind router-1, which drops UDP at first; hq (10.2.0.2, the netFed's
// desk), an admin node granted live view of site-1, behind router-2.
type natFed struct {
	*netFed
	nl *natLab
	// seen dedupes the address check's complaints.
	seen map[string]bool
	// camera is set once natCamera is in the policy.
	camera *bool
}

// newNATFed founds the federation with every node but store-1 running and
// a member; store-1 has joined (over TCP, through router-1) and been
// started, and case c waits for it.
func newNATFed(t *testing.T) *natFed {
	t.Helper()
	nl := newNATLab(t, blockUDP, endpointIndependent)
	tmp := t.TempDir()
	f := &natFed{
		netFed: &netFed{
			procFed: &procFed{t: t, bin: custosBin(t), tmp: tmp, admin: filepath.Join(tmp, "alice.key")},
			lab:     nl.lab, ns: map[*custosProc]*labNode{}, began: time.Now(),
		},
		nl: nl, seen: map[string]bool{}, camera: new(bool),
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range f.nodes {
				t.Logf("--- stderr tail of %s ---\n%s", p.name, p.stderr)
			}
		}
	})
	for _, n := range []struct {
		name, role, site string
		nd               *labNode
	}{
		{"dc-a", "datacenter", "", nl.public("dc-a", 10)},
		{"dc-b", "datacenter", "", nl.public("dc-b", 20)},
		{"witness", "witness", "", nl.public("witness", 30)},
		{"store-1", "store", natSite, nl.lanNode("store-1", "lan1", 2)},
		{"hq", "admin", "", nl.lanNode("hq", "lan2", 2)},
	} {
		p := &custosProc{name: n.name, role: n.role, site: n.site,
			dir: filepath.Join(tmp, n.name), listen: n.nd.addr.String() + ":51820", stderr: newTailBuffer(40)}
		f.nodes = append(f.nodes, p)
		f.ns[p] = n.nd
	}
	f.dcA, f.dcB, f.witness, f.store, f.desk = f.nodes[0], f.nodes[1], f.nodes[2], f.nodes[3], f.nodes[4]

	f.must(nil, "admin", "keygen", "--out", f.admin, "--name", "alice")
	recovery := filepath.Join(tmp, "recovery.key")
	f.must(nil, "recovery", "keygen", "--out", recovery)
	f.must(f.dcA, "init", "--dir", f.dcA.dir, "--name", "dc-a", "--listen", f.dcA.listen, "--federation", "acme", "--admin-key", f.admin+".pub", "--recovery", recovery+".pub")
	f.up(f.dcA)
	f.waitUntil(f.dcA, 60*time.Second, "dc-a to lead its one-node cluster", func() (bool, string) {
		st, err := f.status(f.dcA)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		return st.Consensus.Role == "leader", "role " + st.Consensus.Role
	})
	f.submit(f.dcA, 30*time.Second, "site", "add", "--name", natSite)
	for _, p := range []*custosProc{f.dcB, f.witness, f.desk, f.store} {
		args := []string{"invite", "--role", p.role, "--name", p.name, "--expires", "1h", "--dir", f.dcA.dir, "--as", f.admin}
		if p.site != "" {
			args = append(args, "--site", p.site)
		}
		token := strings.TrimSpace(f.must(f.dcA, args...))
		if out, errOut, err := f.runIn(p, 60*time.Second, "join", "--dir", p.dir, "--token", token, "--listen", p.listen); err != nil {
			f.fatalf(p, "join %s: %v\n%s%s", p.name, err, out, errOut)
		}
		f.up(p)
		if p == f.store {
			break // case c waits for it
		}
		f.waitMember(p, 60*time.Second)
		if p == f.desk {
			f.submit(f.dcA, 30*time.Second, "grant", "--to", "node:hq", "--action", "live", "--cameras", natSite+"/*", "--until", "2h", "--purpose", "e2e NAT matrix live view")
		}
	}
	f.logf("federation founded in the NAT lab; store-1 joined through %s (%s) and started", nl.router(1).name, nl.router(1).mode)
	return f
}

// sub is f for subtest t: its waits and failures belong to t.
func (f *natFed) sub(t *testing.T) *natFed {
	pf := *f.procFed
	pf.t = t
	nf := *f.netFed
	nf.procFed = &pf
	return &natFed{netFed: &nf, nl: f.nl, seen: f.seen, camera: f.camera}
}

// waitMember waits until p answers, knows its key, and is a member of the
// Raft configuration with a leader known.
func (f *natFed) waitMember(p *custosProc, d time.Duration) {
	f.t.Helper()
	f.waitUntil(p, d, p.name+" a member with a leader known", func() (bool, string) {
		st, err := f.status(p)
		if err != nil {
			return false, err.Error()
		}
		p.key = st.PublicKey
		if st.Consensus == nil {
			return false, "no consensus status"
		}
		return p.key != "" && st.Consensus.Member && st.Consensus.LeaderID != "",
			fmt.Sprintf("member %v, leader %q", st.Consensus.Member, f.nameOf(st.Consensus.LeaderID))
	})
}

// ensureCamera adds natCamera through store-1 (a camera's source is kept by
// its site's store) unless an earlier case did.
func (f *natFed) ensureCamera() {
	f.t.Helper()
	if *f.camera {
		return
	}
	f.submit(f.store, 60*time.Second, "camera", "add", "--site", natSite, "--name", "door", "--source", "synthetic:",
		"--purpose", "protection of property and persons")
	*f.camera = true
}

// waitRecording waits until the store has written a segment of natCamera
// after since (its recorder runs, so a live view can start).
func (f *natFed) waitRecording(since time.Time, d time.Duration) {
	f.t.Helper()
	f.waitUntil(f.store, d, "store-1 recording "+natCamera, func() (bool, string) {
		st, err := f.netStatus(f.store)
		if err != nil {
			return false, err.Error()
		}
		if st.Recording != nil {
			for _, c := range st.Recording.Cameras {
				if c.Camera == natCamera && c.LastSegment.After(since) {
					return true, ""
				}
			}
		}
		return false, st.describeRecording()
	})
}

// natStatus is the part of `custos status --json` the matrix reads.
type natStatus struct {
	netStatus
	Peers []struct {
		Name     string `json:"name"`
		Path     string `json:"path"`
		Endpoint string `json:"endpoint"`
		Liveness string `json:"liveness"`
	} `json:"peers"`
	Underlay json.RawMessage `json:"underlay"`
}

// path is viewer's path to peer by its status ("" when it has no such
// peer or no path field).
func (st natStatus) path(peer string) string {
	for _, p := range st.Peers {
		if p.Name == peer {
			return p.Path
		}
	}
	return ""
}

func (st natStatus) describePaths() string {
	var s []string
	for _, p := range st.Peers {
		s = append(s, fmt.Sprintf("%s: path %q (endpoint %q, %s)", p.Name, p.Path, p.Endpoint, p.Liveness))
	}
	return strings.Join(s, "; ") + "; underlay " + string(st.Underlay)
}

// natStatusOf reads viewer's status and checks every direct path in it.
func (f *natFed) natStatusOf(viewer *custosProc) (natStatus, error) {
	var st natStatus
	if _, err := f.statusInto(viewer, &st); err != nil {
		return st, err
	}
	f.checkDirect(viewer, st)
	return st, nil
}

// checkDirect fails the test once for every direct path in viewer's status
// at an address the peer cannot have from where viewer is now: a public
// node only at its own address; a node behind NAT at its LAN address from
// its own LAN, else only at its router's public address — never at a
// private address of another site.
func (f *natFed) checkDirect(viewer *custosProc, st natStatus) {
	for _, p := range st.Peers {
		rest, ok := strings.CutPrefix(p.Path, "direct ")
		if !ok {
			continue
		}
		peer := f.byName(p.Name)
		ap, err := netip.ParseAddrPort(rest)
		var allowed netip.Addr
		vLAN, pLAN := f.nl.lanOf[f.ns[viewer]], f.nl.lanOf[f.ns[peer]]
		switch {
		case pLAN == nil:
			allowed = f.ns[peer].addr
		case vLAN == pLAN:
			allowed = f.ns[peer].addr
		default:
			for _, r := range f.nl.routers {
				if r.lan == pLAN {
					allowed = r.pub
				}
			}
		}
		if err == nil && ap.Addr() == allowed {
			continue
		}
		msg := fmt.Sprintf("%s's status claims %q for %s, which it can reach directly only at %s", viewer.name, p.Path, p.Name, allowed)
		if err == nil && ap.Addr().IsPrivate() && vLAN != pLAN {
			msg += " (a private address of another site)"
		}
		if !f.seen[msg] {
			f.seen[msg] = true
			f.t.Error(msg)
		}
	}
}

func isRelay(p string) bool { return p == "relay dc-a" || p == "relay dc-b" }

func hasPrefix(prefix string) func(string) bool {
	return func(p string) bool { return strings.HasPrefix(p, prefix) }
}

// waitPath polls viewer's status until its path to peer satisfies ok and
// returns that path; a timeout fails the test (not at once) and returns
// the last path seen.
func (f *natFed) waitPath(viewer, peer *custosProc, d time.Duration, ok func(string) bool, what string) string {
	f.t.Helper()
	var path string
	f.poll(d, func() (bool, string) {
		st, err := f.natStatusOf(viewer)
		if err != nil {
			return false, err.Error()
		}
		path = st.path(peer.name)
		return ok(path), st.describePaths()
	}, fmt.Sprintf("%s's path to %s to be %s", viewer.name, peer.name, what))
	return path
}

// firstPacketToPath polls viewer's path to peer (every 100 ms, as often as
// status answers) and returns when it first left "none" (the first
// authenticated packet) and when it first satisfied ok.
func (f *natFed) firstPacketToPath(viewer, peer *custosProc, d time.Duration, ok func(string) bool) (first, hit time.Time) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		asked := time.Now()
		st, err := f.natStatusOf(viewer)
		if err == nil {
			p := st.path(peer.name)
			if p != last {
				f.logf("%s's path to %s: %q", viewer.name, peer.name, p)
				last = p
			}
			if first.IsZero() && p != "" && p != "none" {
				first = asked
			}
			if ok(p) {
				return first, asked
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Errorf("%s's path to %s never became what the case expects within %v; last %q", viewer.name, peer.name, d, last)
	return first, time.Time{}
}

// checkTextPath checks that `custos status` (text) shows, in its PATH
// column, the path --json shows for peer (read just before and after, in
// case it changed in between).
func (f *natFed) checkTextPath(viewer, peer *custosProc) {
	f.t.Helper()
	var text, before, after string
	for range 5 {
		st, err := f.natStatusOf(viewer)
		if err != nil {
			f.t.Errorf("status of %s: %v", viewer.name, err)
			return
		}
		before = st.path(peer.name)
		out, errOut, err := f.run(10*time.Second, "status", "--dir", viewer.dir)
		if err != nil {
			f.t.Errorf("custos status --dir %s: %v: %s", viewer.name, err, errOut)
			return
		}
		if !strings.Contains(out, "PATH") {
			f.t.Errorf("%s's `custos status` has no PATH column:\n%s", viewer.name, out)
			return
		}
		text = textPath(out, peer.name)
		if st, err = f.natStatusOf(viewer); err == nil {
			after = st.path(peer.name)
		}
		if before == after && text == before && before != "" {
			f.logf("%s's `custos status` shows PATH %q for %s, as --json does", viewer.name, text, peer.name)
			return
		}
		if before == after {
			f.t.Errorf("%s's `custos status` shows PATH %q for %s, --json %q:\n%s", viewer.name, text, peer.name, before, out)
			return
		}
	}
	f.t.Errorf("%s's path to %s kept changing: --json %q then %q, text %q", viewer.name, peer.name, before, after, text)
}

// textPath is the PATH column of peer's row in `custos status`'s peer
// table ("" when there is no PATH column or no such row). The table is
// aligned, so the column spans from its heading to the next one.
func textPath(out, peer string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		start := strings.Index(l, "PATH")
		if !strings.HasPrefix(strings.TrimSpace(l), "PEER") || start < 0 {
			continue
		}
		end := start + len("PATH")
		for end < len(l) && l[end] == ' ' {
			end++
		}
		if end == len(l) {
			end = -1 // the last column
		}
		for _, row := range lines[i+1:] {
			if f := strings.Fields(row); len(f) == 0 || f[0] != peer {
				continue
			}
			if len(row) <= start {
				return ""
			}
			if end < 0 || end > len(row) {
				return strings.TrimSpace(row[start:])
			}
			return strings.TrimSpace(row[start:end])
		}
	}
	return ""
}

// startLiveTo is startLive with an output file per case.
func (f *natFed) startLiveTo(tag string, d time.Duration) *liveView {
	f.t.Helper()
	v := &liveView{camera: natCamera, out: filepath.Join(f.tmp, "live-"+tag+".ts"), done: make(chan struct{})}
	v.cmd = exec.Command(f.bin, "live", "--dir", f.desk.dir, "--camera", natCamera, "--out", v.out, "--for", d.String())
	v.cmd.Stderr = &v.stderr
	if err := v.cmd.Start(); err != nil {
		f.t.Fatalf("custos live: %v", err)
	}
	f.t.Cleanup(func() { v.cmd.Process.Kill(); <-v.done })
	go func() { v.err = v.cmd.Wait(); close(v.done) }()
	f.logf("live view of %s on hq for %v", natCamera, d)
	return v
}

// liveAndReplicate runs a live view on hq for d, checking all along that
// hq's path to store-1 stays what the case expects, then that the viewer
// got frames and that the store replicated to dcs what it recorded since.
func (f *natFed) liveAndReplicate(since time.Time, d time.Duration, ok func(string) bool, what string, dcs ...*custosProc) {
	f.t.Helper()
	v := f.startLiveTo(strings.SplitN(f.t.Name(), "/", 2)[1], d)
	f.checkFlowing(v, 30*time.Second, "under this case's NAT")
	polls, bad := 0, 0
	for {
		select {
		case <-v.done:
		default:
			st, err := f.natStatusOf(f.desk)
			if err == nil {
				polls++
				if p := st.path(f.store.name); !ok(p) {
					if bad == 0 {
						f.t.Errorf("during live view, hq's path to store-1 is %q, want %s", p, what)
					}
					bad++
				}
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		break
	}
	if bad > 0 {
		f.t.Errorf("hq's path to store-1 was not %s in %d of %d looks during live view", what, bad, polls)
	}
	f.finishLive(v, int(d/time.Second)*10)
	f.waitProgress(since, 90*time.Second, dcs...)
}

// waitProgress waits until the store reports natCamera replicated to each
// of dcs up to at least since.
func (f *natFed) waitProgress(since time.Time, d time.Duration, dcs ...*custosProc) {
	f.t.Helper()
	for _, dc := range dcs {
		if f.poll(d, func() (bool, string) {
			st, err := f.netStatus(f.store)
			if err != nil {
				return false, err.Error()
			}
			for _, r := range st.Replication {
				if r.Camera == natCamera && r.Datacenter == dc.name {
					return !r.ReplicatedUpTo.Before(since), st.describeReplication()
				}
			}
			return false, st.describeReplication()
		}, fmt.Sprintf("store-1 replicating %s to %s up to %s", natCamera, dc.name, since.Format("15:04:05.000"))) {
			f.logf("store-1 replicated %s to %s past %s", natCamera, dc.name, since.Format("15:04:05"))
		}
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
