package e2e

// The NAT lab: the fault harness's hub becomes a "public" network
// (198.51.100.0/24, TEST-NET-2) where the datacenters live, and sites sit
// behind Linux NAT routers on private LANs, as stores and head offices do.
//
//	public hub br0 198.51.100.0/24
//	 ├─ dc-a .10, dc-b .20, witness .30        (the lab's nodes)
//	 ├─ router-1 .101 ─ lan1 br0 10.1.0.0/24 ─ store-1 10.1.0.2
//	 └─ router-2 .102 ─ lan2 br0 10.2.0.0/24 ─ hq 10.2.0.2
//
// A router is a namespace of its own between the hub and its LAN's switch
// namespace, so it can be torn down and built again with another NAT
// behaviour (and an empty conntrack table) while the nodes on both sides
// keep running. Its interfaces keep fixed MAC addresses across rebuilds, so
// no neighbour's ARP cache points at a dead interface.
//
// NAT behaviour (RFC 4787 terms), all Linux netfilter:
//   - endpointIndependent: MASQUERADE keeps the source port when it is
//     free, and one mapping serves every destination; filtering is
//     address-and-port dependent (conntrack), so a peer gets in only after
//     the inside has sent to it: simultaneous probes open it.
//   - symmetric: MASQUERADE --random-fully picks a fresh random port for
//     each new flow, so the address a datacenter sees is useless to others.
//   - blockUDP: forwarded UDP is dropped both ways; TCP passes.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// natMode is how a router treats its LAN's traffic.
type natMode int

const (
	endpointIndependent natMode = iota
	symmetric
	blockUDP // endpoint-independent NAT for TCP; forwarded UDP dropped
)

func (m natMode) String() string {
	return [...]string{"endpoint-independent NAT", "symmetric NAT (--random-fully)", "NAT with forwarded UDP dropped"}[m]
}

// natLab is a lab whose hub is the public network, with NAT routers and
// their LANs beside it.
type natLab struct {
	*lab
	routers []*natRouter
	lans    map[string]*natLAN   // by name: "lan1"
	nodes   map[string]*labNode  // LAN nodes by name
	lanOf   map[*labNode]*natLAN // where each LAN node is plugged in now
	seq     int                  // names LAN ports
}

// natLAN is a private network: a bridge in a switch namespace.
type natLAN struct {
	name   string
	ns     string
	prefix netip.Prefix // 10.1.0.0/24
	router netip.Addr   // 10.1.0.1, the LAN's default gateway
}

// natRouter is a NAT router between the public hub and one LAN.
type natRouter struct {
	name string // router-1
	k    int    // 1, 2: names and MAC addresses
	ns   string
	pub  netip.Addr // its address on the public network
	lan  *natLAN
	mode natMode
	up   bool
}

func needIptables(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("the NAT lab needs iptables (.ci/run installs it)")
	}
}

// newNATLab makes the public hub and two sites: router-1 with lan1
// (10.1.0.0/24) and router-2 with lan2 (10.2.0.0/24), both routers with
// the given modes.
func newNATLab(t *testing.T, mode1, mode2 natMode) *natLab {
	t.Helper()
	needNetns(t)
	needIptables(t)
	nl := &natLab{lab: newLab(t), lans: map[string]*natLAN{}, nodes: map[string]*labNode{}, lanOf: map[*labNode]*natLAN{}}
	// Runs before the lab's own destroy (cleanups run last registered
	// first): LAN nodes, routers and switches are not the lab's nodes.
	t.Cleanup(nl.destroyNAT)
	for k, mode := range []natMode{mode1, mode2} {
		k++
		lan := &natLAN{
			name:   fmt.Sprintf("lan%d", k),
			ns:     fmt.Sprintf("%slan%d", nl.prefix, k),
			prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k), 0, 0}), 24),
			router: netip.AddrFrom4([4]byte{10, byte(k), 0, 1}),
		}
		nl.lans[lan.name] = lan
		nl.ip("netns", "add", lan.ns)
		nl.ip("-n", lan.ns, "link", "add", "name", "br0", "type", "bridge")
		nl.ip("-n", lan.ns, "link", "set", "br0", "up")
		r := &natRouter{
			name: fmt.Sprintf("router-%d", k), k: k,
			ns:  fmt.Sprintf("%sr%d", nl.prefix, k),
			pub: netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + k)}),
			lan: lan,
		}
		nl.routers = append(nl.routers, r)
		nl.buildRouter(r, mode)
	}
	return nl
}

// public adds a node on the public network at 198.51.100.host.
func (nl *natLab) public(name string, host byte) *labNode {
	nl.t.Helper()
	return nl.addAt(name, netip.AddrFrom4([4]byte{198, 51, 100, host}))
}

// router is router-k (1 or 2).
func (nl *natLab) router(k int) *natRouter { return nl.routers[k-1] }

// buildRouter makes r's namespace, its two interfaces and its netfilter
// rules for mode; a fresh namespace has an empty conntrack table, so no
// mapping of an earlier mode survives.
func (nl *natLab) buildRouter(r *natRouter, mode natMode) {
	nl.t.Helper()
	hubPort, lanPort := fmt.Sprintf("r%d", r.k), "gw"
	nl.ip("netns", "add", r.ns)
	nl.ip("-n", r.ns, "link", "set", "lo", "up")
	nl.ip("-n", r.ns, "link", "add", "name", "pub", "address", fmt.Sprintf("02:00:5e:00:%02x:01", r.k), "type", "veth", "peer", "name", hubPort, "netns", nl.hub)
	nl.ip("-n", r.ns, "link", "add", "name", "lan", "address", fmt.Sprintf("02:00:5e:00:%02x:02", r.k), "type", "veth", "peer", "name", lanPort, "netns", r.lan.ns)
	nl.ip("-n", r.ns, "addr", "add", r.pub.String()+"/24", "dev", "pub")
	nl.ip("-n", r.ns, "addr", "add", netip.PrefixFrom(r.lan.router, r.lan.prefix.Bits()).String(), "dev", "lan")
	nl.ip("-n", nl.hub, "link", "set", hubPort, "master", "br0")
	nl.ip("-n", r.lan.ns, "link", "set", lanPort, "master", "br0")
	for _, x := range [][2]string{{r.ns, "pub"}, {r.ns, "lan"}, {nl.hub, hubPort}, {r.lan.ns, lanPort}} {
		nl.ip("-n", x[0], "link", "set", x[1], "up")
	}
	nl.in(r.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	masq := []string{"-t", "nat", "-A", "POSTROUTING", "-o", "pub", "-j", "MASQUERADE"}
	if mode == symmetric {
		masq = append(masq, "--random-fully")
	}
	nl.in(r.ns, "iptables", masq...)
	// The router's own WAN firewall, as on any office router: nothing
	// unsolicited reaches the router itself. It matters for hole punching:
	// a peer's probe that arrives before this side has sent to that peer
	// would otherwise leave a conntrack entry (to the router, no socket)
	// holding the very tuple this side's outgoing flow needs, and MASQUERADE
	// then maps that flow to another port: two such routers never open
	// (seen in this lab). Dropped in filter INPUT, the entry is never
	// confirmed.
	nl.in(r.ns, "iptables", "-A", "INPUT", "-i", "pub", "-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP")
	if mode == blockUDP {
		nl.in(r.ns, "iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP")
	}
	r.mode, r.up = mode, true
	nl.t.Logf("netns: %s up (%s): public %s, LAN %s", r.name, mode, r.pub, r.lan.prefix)
}

// rebuildRouter replaces r with a fresh router of another mode: every
// mapping and flow it held is gone, as after a router's reboot.
func (nl *natLab) rebuildRouter(r *natRouter, mode natMode) {
	nl.t.Helper()
	nl.teardownRouter(r)
	nl.buildRouter(r, mode)
}

func (nl *natLab) teardownRouter(r *natRouter) {
	if !r.up {
		return
	}
	r.up = false
	// Deleting one end of a veth deletes both at once; a deleted
	// namespace's devices would otherwise go later, in the background,
	// and the next build's names could still be taken.
	exec.Command("ip", "-n", nl.hub, "link", "del", fmt.Sprintf("r%d", r.k)).Run()
	exec.Command("ip", "-n", r.lan.ns, "link", "del", "gw").Run()
	exec.Command("ip", "netns", "del", r.ns).Run()
}

// lanNode makes a node's namespace on lan at the given host number, with
// its default route through the LAN's router.
func (nl *natLab) lanNode(name, lan string, host byte) *labNode {
	nl.t.Helper()
	nl.seq++
	nd := &labNode{name: name, n: 100 + nl.seq, ns: fmt.Sprintf("%ss%d", nl.prefix, nl.seq)}
	nl.ip("netns", "add", nd.ns)
	nl.ip("-n", nd.ns, "link", "set", "lo", "up")
	nl.nodes[name] = nd
	nl.plug(nd, nl.lans[lan], host)
	return nd
}

// plug connects nd's eth0 to lan as host number host (and unplugs it from
// wherever it was): its address and default route follow the LAN.
func (nl *natLab) plug(nd *labNode, lan *natLAN, host byte) {
	nl.t.Helper()
	if old := nl.lanOf[nd]; old != nil {
		nl.ip("-n", old.ns, "link", "del", "p-"+nd.ns[len(nl.prefix):])
	}
	port := "p-" + nd.ns[len(nl.prefix):]
	b := lan.prefix.Addr().As4()
	b[3] = host
	nd.addr = netip.AddrFrom4(b)
	nl.ip("-n", nd.ns, "link", "add", "name", "eth0", "type", "veth", "peer", "name", port, "netns", lan.ns)
	nl.ip("-n", nd.ns, "addr", "add", netip.PrefixFrom(nd.addr, lan.prefix.Bits()).String(), "dev", "eth0")
	nl.ip("-n", lan.ns, "link", "set", port, "master", "br0")
	nl.ip("-n", lan.ns, "link", "set", port, "up")
	nl.ip("-n", nd.ns, "link", "set", "eth0", "up")
	nl.ip("-n", nd.ns, "route", "add", "default", "via", lan.router.String())
	nl.lanOf[nd] = lan
	nl.t.Logf("netns: %s on %s at %s", nd.name, lan.name, nd.addr)
}

// in runs a command inside namespace ns and fails the test if it fails.
func (nl *natLab) in(ns, name string, args ...string) {
	nl.t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput(); err != nil {
		nl.t.Fatalf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (nl *natLab) destroyNAT() {
	for _, nd := range nl.nodes {
		killNetnsPids(nd.ns)
		exec.Command("ip", "netns", "del", nd.ns).Run()
	}
	for _, r := range nl.routers {
		nl.teardownRouter(r)
	}
	for _, lan := range nl.lans {
		exec.Command("ip", "netns", "del", lan.ns).Run()
	}
}

// inNetns runs fn on an OS thread that has entered namespace ns; sockets
// fn opens stay in ns for their lifetime, wherever they are used later.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return // the thread goes with the goroutine (still locked)
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		// A thread that cannot return home stays locked and dies with
		// this goroutine, so no other goroutine runs in ns by accident.
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// listenUDPIn opens a UDP socket on addr inside namespace ns.
func listenUDPIn(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNetns(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err != nil {
		t.Fatalf("listen on UDP %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveWhoami answers every datagram on c with the sender's address as c
// sees it: what a STUN server tells a client behind NAT.
func serveWhoami(c *net.UDPConn) {
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort([]byte(from.String()), from)
		}
	}()
}

// mappedAddr asks the whoami server at to, from c, which address it sees
// c's datagrams come from; it is invalid when nothing comes back in d.
func mappedAddr(c *net.UDPConn, to netip.AddrPort, d time.Duration) netip.AddrPort {
	deadline := time.Now().Add(d)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		c.WriteToUDPAddrPort([]byte("?"), to)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if from != to {
				continue
			}
			if ap, err := netip.ParseAddrPort(string(buf[:n])); err == nil {
				c.SetReadDeadline(time.Time{})
				return ap
			}
		}
	}
	c.SetReadDeadline(time.Time{})
	return netip.AddrPort{}
}

// punch has a and b send to each other's addresses (as a datacenter saw
// them) at the same time for up to d, and reports whether each received a
// datagram from the other: the hole punching the mesh does.
func punch(a, b *net.UDPConn, aAddr, bAddr netip.AddrPort, d time.Duration) (aGot, bGot bool) {
	recv := func(c *net.UDPConn, got *bool, done chan<- struct{}) {
		defer close(done)
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(d))
		defer c.SetReadDeadline(time.Time{})
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "punch" {
				*got = true
				return
			}
		}
	}
	da, db := make(chan struct{}), make(chan struct{})
	go recv(a, &aGot, da)
	go recv(b, &bGot, db)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		a.WriteToUDPAddrPort([]byte("punch"), bAddr)
		b.WriteToUDPAddrPort([]byte("punch"), aAddr)
		time.Sleep(50 * time.Millisecond)
		select {
		case <-da:
			select {
			case <-db:
				return aGot, bGot
			default:
			}
		default:
		}
	}
	<-da
	<-db
	return aGot, bGot
}

// dialTCPIn connects from namespace ns to addr over TCP.
func dialTCPIn(ns string, addr netip.AddrPort, d time.Duration) error {
	return inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), d)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// listenTCPIn opens a TCP listener on addr inside namespace ns.
func listenTCPIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on TCP %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
