package consensus_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/consensus/consensustest"
)

var _ consensus.Network = (*consensustest.Host)(nil)

const raftPort = 7100

// testFSM records the commands it applies. Commands starting with "reject:"
// are refused.
type testFSM struct {
	mu       sync.Mutex
	entries  [][]byte // guarded by mu
	restores int      // guarded by mu
}

var _ consensus.StateMachine = (*testFSM)(nil)

func (f *testFSM) Apply(cmd []byte, index uint64) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(cmd, []byte("reject:")); ok {
		return nil, fmt.Errorf("refused %q", rest)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, bytes.Clone(cmd))
	return fmt.Appendf(nil, "ok %s", cmd), nil
}

func (f *testFSM) Snapshot() ([]byte, error) { return f.State(), nil }

func (f *testFSM) Restore(b []byte) error {
	var entries [][]byte
	for len(b) > 0 {
		if len(b) < 4 || int(binary.BigEndian.Uint32(b)) > len(b)-4 {
			return errors.New("testFSM: corrupt snapshot")
		}
		n := binary.BigEndian.Uint32(b)
		entries = append(entries, bytes.Clone(b[4:4+n]))
		b = b[4+n:]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

// State is the FSM's whole state, comparable byte for byte.
func (f *testFSM) State() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	for _, e := range f.entries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

func (f *testFSM) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

func (f *testFSM) Restores() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

// cluster is a set of nodes on one consensustest.Net. The "policy" is the
// set of admitted mesh addresses, the same on every member.
type cluster struct {
	t       testing.TB
	net     *consensustest.Net
	tweak   func(*consensus.Config)
	quiet   bool // no logs (benchmarks print every log line)
	logMu   sync.RWMutex
	logDone bool // guarded by logMu

	mu      sync.Mutex
	allowed map[netip.Addr]bool // guarded by mu
	members []*member           // guarded by mu

	hung atomic.Bool // a member's Close did not return: later ones get less time
}

type member struct {
	c      *cluster
	i      int
	id     string
	addr   netip.AddrPort
	dir    string
	fsm    *testFSM
	node   *consensus.Node
	admit  consensus.Admit // nil: the cluster's policy
	mu     sync.Mutex
	denied map[netip.Addr]int // guarded by mu: Admit refusals by remote
}

// fastTimeouts shortens Raft's timeouts for tests.
func fastTimeouts(cfg *consensus.Config) {
	cfg.HeartbeatTimeout = 500 * time.Millisecond
	cfg.ElectionTimeout = 500 * time.Millisecond
	cfg.LeaderLeaseTimeout = 250 * time.Millisecond
	cfg.CommitTimeout = 20 * time.Millisecond
	cfg.IOTimeout = 2 * time.Second
}

func newCluster(t testing.TB, tweak func(*consensus.Config)) *cluster {
	_, quiet := t.(*testing.B)
	c := &cluster{t: t, net: consensustest.New(), tweak: tweak, quiet: quiet, allowed: make(map[netip.Addr]bool)}
	// Registered first, so it runs after every member's Close.
	t.Cleanup(func() {
		c.logMu.Lock()
		c.logDone = true
		c.logMu.Unlock()
	})
	return c
}

func (c *cluster) logf(format string, args ...any) {
	c.logMu.RLock()
	defer c.logMu.RUnlock()
	if !c.logDone && !c.quiet {
		c.t.Logf(format, args...)
	}
}

// add makes member i, admitted by the cluster's policy if allowed, without
// starting it.
func (c *cluster) add(i int, allowed bool) *member {
	c.t.Helper()
	addr := consensustest.Addr(i)
	m := &member{c: c, i: i, id: fmt.Sprintf("nodekey:%02d", i), addr: netip.AddrPortFrom(addr, raftPort), dir: c.t.TempDir(), denied: make(map[netip.Addr]int)}
	c.mu.Lock()
	c.allowed[addr] = allowed
	c.members = append(c.members, m)
	c.mu.Unlock()
	return m
}

func (c *cluster) policy(remote netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.allowed[remote] {
		return fmt.Errorf("%v is not a member in the policy", remote)
	}
	return nil
}

func (m *member) server() consensus.Server { return consensus.Server{ID: m.id, Addr: m.addr} }

func (m *member) config() consensus.Config {
	admit := m.admit
	if admit == nil {
		admit = m.c.policy
	}
	cfg := consensus.Config{
		Dir:     m.dir,
		ID:      m.id,
		Addr:    m.addr,
		Network: m.c.net.Host(m.addr.Addr()),
		FSM:     m.fsm,
		Logf:    func(f string, a ...any) { m.c.logf("n%d: "+f, append([]any{m.i}, a...)...) },
		Admit: func(remote netip.Addr) error {
			err := admit(remote)
			if err != nil {
				m.mu.Lock()
				m.denied[remote]++
				m.mu.Unlock()
			}
			return err
		},
	}
	if m.c.tweak != nil {
		m.c.tweak(&cfg)
	}
	return cfg
}

// start opens the member's node with a fresh FSM on its Dir.
func (m *member) start() {
	m.c.t.Helper()
	m.fsm = &testFSM{}
	var n *consensus.Node
	var err error
	if !within(m.c.t, hangTimeout, fmt.Sprintf("Open n%d", m.i), func() { n, err = consensus.Open(m.config()) }) {
		m.c.t.FailNow()
	}
	if err != nil {
		m.c.t.Fatalf("Open n%d: %v", m.i, err)
	}
	m.node = n
	m.c.t.Cleanup(func() { m.c.close(m.i, n) })
}

// stop closes the member's node.
func (m *member) stop() {
	m.c.t.Helper()
	if !m.c.close(m.i, m.node) {
		m.c.t.FailNow()
	}
}

// close closes member i's node n, failing the test if Close returns an
// error or does not return: it reports false then. Once a Close has hung,
// the next ones are given a few seconds only, so that the Cleanups of a
// test that found a hang do not add one hangTimeout per member.
func (c *cluster) close(i int, n *consensus.Node) bool {
	c.t.Helper()
	timeout := hangTimeout
	if c.hung.Load() {
		timeout = 5 * time.Second
	}
	var err error
	if !within(c.t, timeout, fmt.Sprintf("Close n%d", i), func() { err = n.Close() }) {
		c.hung.Store(true)
		return false
	}
	if err != nil {
		c.t.Errorf("Close n%d: %v", i, err)
	}
	return true
}

func (m *member) deniedCount(remote netip.Addr) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.denied[remote]
}

// startVoters starts n voters, bootstraps them from the first and waits for
// a leader.
func (c *cluster) startVoters(n int) []*member {
	c.t.Helper()
	var ms []*member
	var servers []consensus.Server
	for i := range n {
		m := c.add(i, true)
		m.start()
		ms = append(ms, m)
		servers = append(servers, m.server())
	}
	var err error
	if !within(c.t, hangTimeout, "Bootstrap", func() { err = ms[0].node.Bootstrap(servers) }) {
		c.t.FailNow()
	}
	if err != nil {
		c.t.Fatalf("Bootstrap: %v", err)
	}
	c.leader(ms, 10*time.Second)
	return ms
}

// addNonvoter starts member i and has the leader add it as a non-voter.
func (c *cluster) addNonvoter(i int, voters []*member) *member {
	c.t.Helper()
	m := c.add(i, true)
	m.start()
	l := c.leader(voters, 10*time.Second)
	if err := l.node.AddNonvoter(ctx(c.t, 10*time.Second), m.server()); err != nil {
		c.t.Fatalf("AddNonvoter n%d: %v", i, err)
	}
	return m
}

// leader waits until one of ms leads and every other running member of ms
// knows it, and returns it.
func (c *cluster) leader(ms []*member, timeout time.Duration) *member {
	c.t.Helper()
	var l *member
	waitFor(c.t, timeout, "a leader that all members know", func() bool {
		l = nil
		for _, m := range ms {
			if m.node.Status().Role == consensus.Leader {
				l = m
			}
		}
		if l == nil {
			return false
		}
		for _, m := range ms {
			if m.node.Status().Role != consensus.Shutdown && m.node.Status().LeaderID != l.id {
				return false
			}
		}
		return true
	})
	return l
}

// waitSame waits until every member's FSM holds want entries and all states
// are byte-for-byte equal.
func waitSame(t testing.TB, ms []*member, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d entries on every replica", want), func() bool {
		for _, m := range ms {
			if m.fsm.Len() != want {
				return false
			}
		}
		return true
	})
	ref := ms[0].fsm.State()
	for _, m := range ms[1:] {
		if got := m.fsm.State(); !bytes.Equal(got, ref) {
			t.Fatalf("n%d state differs from n%d's (%d vs %d bytes)", m.i, ms[0].i, len(got), len(ref))
		}
	}
}

// hangTimeout bounds the waits of these tests that have no deadline of their
// own: a call into a node that takes no context (Open, Bootstrap, Close),
// or the end of a goroutine the test started. It is far beyond what the
// slowest machine needs. It is there so that a hang fails the test that
// hung, naming what it waited for and with every goroutine's stack,
// instead of holding the package until go test's -timeout kills it.
const hangTimeout = time.Minute

// within runs f and waits at most timeout for it to return. When f does not,
// within reports it, with every goroutine's stack, and returns false,
// leaving f running. It fails the test with Errorf, as it may run in a
// Cleanup; a caller on the test's goroutine follows with FailNow.
func within(t testing.TB, timeout time.Duration, what string, f func()) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		t.Errorf("%s did not return within %v: it hangs. Goroutines:\n%s", what, timeout, stacks())
		return false
	}
}

// await returns the value a goroutine of the test sends on ch, failing the
// test if none comes within timeout plus hangTimeout. Call it on the test's
// goroutine; timeout is the deadline the goroutine's own work has.
func await[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout + hangTimeout):
		t.Fatalf("%s: no result within %v although its deadline was %v: it hangs. Goroutines:\n%s", what, timeout+hangTimeout, timeout, stacks())
		panic("unreachable")
	}
}

// stacks is every goroutine's stack, cut at 4 MB.
func stacks() string {
	buf := make([]byte, 4<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// submit submits cmd on m and fails the test unless it commits. Call it on
// the test's goroutine; other goroutines call trySubmit.
func submit(t testing.TB, m *member, cmd string) {
	t.Helper()
	if err := trySubmit(m, cmd); err != nil {
		t.Fatal(err)
	}
}

// trySubmit submits cmd on m and reports whether it committed with the
// result testFSM gives.
func trySubmit(m *member, cmd string) error {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := m.node.Submit(c, []byte(cmd))
	if err != nil {
		return fmt.Errorf("Submit %q on n%d: %w", cmd, m.i, err)
	}
	if got, want := string(res), "ok "+cmd; got != want {
		return fmt.Errorf("Submit %q on n%d = %q, want %q", cmd, m.i, got, want)
	}
	return nil
}
