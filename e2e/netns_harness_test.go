package e2e

// The network-namespace fault harness (DESIGN §9 "Faults"): nodes run as
// separate processes, each in a namespace of its own, so a test can cut a
// node off, add delay and loss to its link, or kill -9 it.
//
// Topology of one lab (every name starts with the run prefix cx<pid>-<k>-):
//
//	node ns            link ns                          hub ns
//	eth0 10.S.0.N  ⇄   in ─ br0 ─ out (or the impairer)  ⇄  pN ─ br0 (all nodes)
//
// The link namespace sits on the node's cable: normally a kernel bridge joins
// its two ends at no cost; partition takes both ends off that bridge (frames
// go nowhere, as when a WAN link dies upstream: the node's own link stays up),
// and impair puts netem, or our userspace impairer, between them.

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsHelperEnv, when set, makes the test binary run a helper (the
// impairer, a UDP echo server or prober) instead of the tests; the harness
// starts it inside a namespace with `ip netns exec`.
const netnsHelperEnv = "CUSTOS_NETNS_HELPER"

// binDir holds the custos binary built once for this test binary's run.
var binDir string

func TestMain(m *testing.M) {
	if h := os.Getenv(netnsHelperEnv); h != "" {
		os.Exit(runNetnsHelper(h))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needNetns skips unless the namespace tests were asked for and can run.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Getenv("CUSTOS_NETNS") != "1" {
		t.Skip("network-namespace fault test: run as root with `make e2e` (sets CUSTOS_NETNS=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("network-namespace fault test needs root (ip netns); run `make e2e` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network-namespace fault test needs iproute2's ip")
	}
}

var (
	buildOnce sync.Once
	buildErr  error
)

// custosBin builds ./cmd/custos once per test binary run.
func custosBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "custos-netns-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "custos"), module+"/cmd/custos").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "custos")
}

// netnsPrefix is every object's common prefix; runPrefix adds this
// process's pid, which is how a later run tells its leftovers from a live
// run's objects.
const netnsPrefix = "cx"

var (
	runPrefix = fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())
	labSeq    atomic.Int32
	sweepOnce sync.Once
	leftover  = regexp.MustCompile(`^` + netnsPrefix + `([0-9]+)-`)
)

// sweepLeftovers deletes the namespaces of earlier runs whose test process
// is dead (killed by -timeout or by hand, so their cleanups never ran),
// with whatever still runs inside them.
func sweepLeftovers(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := leftover.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue // ours, or its owner still runs
		}
		killNetnsPids(name)
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("netns: removed %s, left by dead run %d", name, pid)
		}
	}
}

func killNetnsPids(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// lab is one topology: a hub and its nodes.
type lab struct {
	t      *testing.T
	prefix string // cx<pid>-<k>-
	subnet int    // the x of 10.x.0.n/24
	hub    string
	nodes  []*labNode
	mu     sync.Mutex // guards the nodes' link state
}

// labNode is one node's namespace and its link.
type labNode struct {
	name   string
	n      int // host number and hub port number
	ns     string
	linkNS string
	addr   netip.Addr

	cut            bool          // partitioned
	delay          time.Duration // impairment, zero when none
	loss           float64       // percent
	mode           string        // "", "netem" or "userspace"
	impairer       *exec.Cmd     // the userspace impairer while it runs
	impairerStderr *bytes.Buffer
}

// newLab makes the hub; everything is removed when the test ends.
func newLab(t *testing.T) *lab {
	t.Helper()
	needNetns(t)
	sweepOnce.Do(func() { sweepLeftovers(t) })
	k := labSeq.Add(1)
	l := &lab{t: t, prefix: fmt.Sprintf("%s%d-", runPrefix, k), subnet: 100 + int(k)%100}
	l.hub = l.prefix + "hub"
	t.Cleanup(l.destroy)
	l.ip("netns", "add", l.hub)
	l.ip("-n", l.hub, "link", "add", "name", "br0", "type", "bridge")
	l.ip("-n", l.hub, "link", "set", "br0", "up")
	return l
}

// ip runs `ip args…` and fails the test if it fails.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// add makes a node's namespace and link; its address is 10.S.0.N.
func (l *lab) add(name string) *labNode {
	l.t.Helper()
	return l.addAt(name, netip.AddrFrom4([4]byte{10, byte(l.subnet), 0, byte(len(l.nodes) + 1)}))
}

// addAt is add with the address given (every node of a lab shares one
// /24 on the hub's bridge).
func (l *lab) addAt(name string, addr netip.Addr) *labNode {
	l.t.Helper()
	n := len(l.nodes) + 1
	nd := &labNode{
		name: name, n: n,
		ns:     fmt.Sprintf("%sn%d", l.prefix, n),
		linkNS: fmt.Sprintf("%sl%d", l.prefix, n),
		addr:   addr,
	}
	l.nodes = append(l.nodes, nd)
	port := fmt.Sprintf("p%d", n)
	l.ip("netns", "add", nd.ns)
	l.ip("netns", "add", nd.linkNS)
	l.ip("-n", nd.ns, "link", "set", "lo", "up")
	l.ip("-n", nd.linkNS, "link", "add", "name", "in", "type", "veth", "peer", "name", "eth0", "netns", nd.ns)
	l.ip("-n", nd.linkNS, "link", "add", "name", "out", "type", "veth", "peer", "name", port, "netns", l.hub)
	l.ip("-n", nd.linkNS, "link", "add", "name", "br0", "type", "bridge")
	// The node's TCP/UDP offloads would hand 64 KiB GSO frames to the link;
	// one segment per frame makes loss per packet, as on a real wire.
	l.ip("-n", nd.ns, "link", "set", "eth0", "gso_max_segs", "1")
	l.ip("-n", nd.ns, "addr", "add", nd.addr.String()+"/24", "dev", "eth0")
	for _, dev := range []string{"in", "out"} {
		l.ip("-n", nd.linkNS, "link", "set", dev, "master", "br0")
	}
	for _, dev := range []string{"br0", "in", "out"} {
		l.ip("-n", nd.linkNS, "link", "set", dev, "up")
	}
	l.ip("-n", l.hub, "link", "set", port, "master", "br0")
	l.ip("-n", l.hub, "link", "set", port, "up")
	l.ip("-n", nd.ns, "link", "set", "eth0", "up")
	return nd
}

// destroy stops impairers and deletes every namespace of the lab (their
// links go with them). Node processes are the federation's to kill.
func (l *lab) destroy() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, nd := range l.nodes {
		l.stopImpairer(nd)
	}
	for _, nd := range l.nodes {
		for _, ns := range []string{nd.ns, nd.linkNS} {
			killNetnsPids(ns)
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	exec.Command("ip", "netns", "del", l.hub).Run()
}

// command is a command run inside nd's namespace; `ip netns exec` execs it,
// so the process's pid is the command's own and kill -9 reaches it. It dies
// with the test process (Pdeathsig), and the next run sweeps its namespaces.
func (nd *labNode) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", nd.ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// partition cuts nd's link in both directions: its ends leave the link
// bridge (and any impairer stops), so frames go nowhere.
func (l *lab) partition(nd *labNode) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if nd.cut {
		return
	}
	nd.cut = true
	l.stopImpairer(nd)
	for _, dev := range []string{"in", "out"} {
		l.ip("-n", nd.linkNS, "link", "set", dev, "nomaster")
	}
	l.t.Logf("netns: %s partitioned", nd.name)
}

// heal restores nd's link as it was before partition, impairment included.
func (l *lab) heal(nd *labNode) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !nd.cut {
		return
	}
	nd.cut = false
	if nd.mode == "userspace" {
		l.startImpairer(nd)
	} else {
		for _, dev := range []string{"in", "out"} {
			l.ip("-n", nd.linkNS, "link", "set", dev, "master", "br0")
		}
	}
	l.t.Logf("netns: %s healed", nd.name)
}

// impair delays every frame on nd's link by delay in each direction (the
// round trip grows by twice that) and drops loss percent of them, each
// direction on its own.
//
// netem is the tool for this, but the CI kernel lacks CONFIG_NET_SCH_NETEM
// ("Specified qdisc kind is unknown"), so where tc refuses netem the frames
// are forwarded by our userspace impairer instead (netns_impair_test.go).
func (l *lab) impair(nd *labNode, delay time.Duration, loss float64) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearImpairLocked(nd)
	nd.delay, nd.loss = delay, loss
	netem := []string{"netem", "delay", fmt.Sprintf("%dus", delay.Microseconds()), "loss", strconv.FormatFloat(loss, 'f', -1, 64) + "%"}
	var tcErr error
	for _, dev := range []string{"in", "out"} {
		args := append([]string{"-n", nd.linkNS, "qdisc", "replace", "dev", dev, "root"}, netem...)
		if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
			tcErr = fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
			break
		}
	}
	if tcErr == nil {
		nd.mode = "netem"
		l.t.Logf("netns: %s impaired with netem: delay %v, loss %v%% each way", nd.name, delay, loss)
		return
	}
	exec.Command("tc", "-n", nd.linkNS, "qdisc", "del", "dev", "in", "root").Run()
	nd.mode = "userspace"
	if !nd.cut {
		l.startImpairer(nd)
	}
	l.t.Logf("netns: %s impaired by the userspace impairer (no netem here: %v): delay %v, loss %v%% each way", nd.name, tcErr, delay, loss)
}

// clearImpair removes nd's impairment.
func (l *lab) clearImpair(nd *labNode) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearImpairLocked(nd)
	l.t.Logf("netns: %s's impairment cleared", nd.name)
}

func (l *lab) clearImpairLocked(nd *labNode) {
	l.t.Helper()
	switch nd.mode {
	case "netem":
		for _, dev := range []string{"in", "out"} {
			exec.Command("tc", "-n", nd.linkNS, "qdisc", "del", "dev", dev, "root").Run()
		}
	case "userspace":
		l.stopImpairer(nd)
		if !nd.cut {
			for _, dev := range []string{"in", "out"} {
				l.ip("-n", nd.linkNS, "link", "set", dev, "master", "br0")
			}
		}
	}
	nd.mode, nd.delay, nd.loss = "", 0, 0
}

// startImpairer takes the link's ends off its bridge and starts the
// impairer (this test binary as a helper) between them.
func (l *lab) startImpairer(nd *labNode) {
	l.t.Helper()
	for _, dev := range []string{"in", "out"} {
		l.ip("-n", nd.linkNS, "link", "set", dev, "nomaster")
	}
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", nd.linkNS, self)
	cmd.Env = append(os.Environ(), netnsHelperEnv+"=impair",
		"IMPAIR_A=in", "IMPAIR_B=out",
		"IMPAIR_DELAY="+nd.delay.String(),
		"IMPAIR_LOSS="+strconv.FormatFloat(nd.loss, 'f', -1, 64))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	nd.impairerStderr = new(bytes.Buffer)
	cmd.Stderr = nd.impairerStderr
	ready, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start the impairer for %s: %v", nd.name, err)
	}
	nd.impairer = cmd
	// It prints a line once its sockets are bound, so no frame is missed
	// between here and the test's next step.
	buf := make([]byte, 64)
	if n, err := ready.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "ready") {
		cmd.Process.Kill()
		cmd.Wait()
		nd.impairer = nil
		l.t.Fatalf("the impairer for %s did not start: %v %q\n%s", nd.name, err, buf[:n], nd.impairerStderr)
	}
}

func (l *lab) stopImpairer(nd *labNode) {
	if nd.impairer == nil {
		return
	}
	nd.impairer.Process.Kill()
	nd.impairer.Wait()
	nd.impairer = nil
}

// labSplit is a partition of the lab's nodes into two sides by iptables
// DROP rules inside each node's namespace: the rules that lab.split added,
// so heal removes exactly those.
type labSplit struct {
	rules [][]string // ip netns exec NS iptables -A … arguments, for -D
}

// split cuts every node of a off from every node of b (and b from a), in
// both directions, with INPUT -s and OUTPUT -d DROP rules in each node's own
// namespace. Unlike partition, the links stay up and each side still
// reaches itself; nodes in neither side are untouched.
func (l *lab) split(a, b []*labNode) *labSplit {
	l.t.Helper()
	s := &labSplit{}
	add := func(nd *labNode, others []*labNode) {
		for _, o := range others {
			for _, r := range [][]string{
				{"INPUT", "-s", o.addr.String(), "-j", "DROP"},
				{"OUTPUT", "-d", o.addr.String(), "-j", "DROP"},
			} {
				l.iptables(nd, "-A", r)
				s.rules = append(s.rules, append([]string{nd.ns}, r...))
			}
		}
	}
	for _, nd := range a {
		add(nd, b)
	}
	for _, nd := range b {
		add(nd, a)
	}
	return s
}

// healSplit deletes the split's rules, one for one.
func (l *lab) healSplit(s *labSplit) {
	l.t.Helper()
	for _, r := range s.rules {
		args := append([]string{"netns", "exec", r[0], "iptables", "-D"}, r[1:]...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	s.rules = nil
}

func (l *lab) iptables(nd *labNode, op string, rule []string) {
	l.t.Helper()
	args := append([]string{"netns", "exec", nd.ns, "iptables", op}, rule...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}
