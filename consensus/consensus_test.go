package consensus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/custos-cctv/custos/consensus"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// 3 voters + 2 non-voters: commands submitted anywhere, most on non-voters,
// are applied on every replica in the same order.
func TestSubmitForwardedAppliesEverywhereInOrder(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	voters := c.startVoters(3)
	nv1 := c.addNonvoter(3, voters)
	nv2 := c.addNonvoter(4, voters)
	all := append(voters[:3:3], nv1, nv2)
	l := c.leader(voters, 5*time.Second)
	var follower *member
	for _, v := range voters {
		if v != l {
			follower = v
		}
	}

	var wg sync.WaitGroup
	jobs := []struct {
		m *member
		n int
	}{{nv1, 25}, {nv2, 25}, {follower, 10}, {l, 10}}
	for _, job := range jobs {
		wg.Go(func() {
			for k := range job.n {
				if err := trySubmit(job.m, fmt.Sprintf("n%d-cmd%d", job.m.i, k)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// Each Submit has 15 s; a job gives up at its first failure.
	await(t, done, 25*15*time.Second, "the submitting goroutines")
	if t.Failed() {
		t.FailNow()
	}
	waitSame(t, all, 70, 10*time.Second)

	st := nv1.node.Status()
	if st.Role != consensus.Follower || !st.Member || st.Voter || st.LeaderID != l.id || st.LeaderAddr != l.addr {
		t.Errorf("non-voter status = %+v, want a non-voting follower member that knows leader %s at %v", st, l.id, l.addr)
	}
	if got := len(st.Members); got != 5 {
		t.Errorf("non-voter sees %d members, want 5", got)
	}
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"role":"follower"`) {
		t.Errorf("status JSON = %s, %v; want role follower", js, err)
	}
	if ls := l.node.Status(); ls.Role != consensus.Leader || !ls.Voter || ls.CommitIndex < 70 || ls.AppliedIndex < 70 {
		t.Errorf("leader status = %+v", ls)
	}
	// Every command was timed once, by the voter that led its commit.
	var commits uint64
	for _, m := range all {
		h := m.node.Status().Commits
		if !m.node.Status().Voter && h.Count != 0 {
			t.Errorf("non-voter %s timed %d commits", m.id, h.Count)
		}
		if len(h.Buckets) != len(consensus.CommitBuckets()) || h.Count > 0 && h.SumSeconds <= 0 {
			t.Errorf("%s: commit histogram %+v", m.id, h)
		}
		for i := 1; i < len(h.Buckets); i++ {
			if h.Buckets[i] < h.Buckets[i-1] || h.Buckets[i] > h.Count {
				t.Errorf("%s: buckets not cumulative: %v (count %d)", m.id, h.Buckets, h.Count)
			}
		}
		commits += h.Count
	}
	if commits != 70 {
		t.Errorf("the voters timed %d commits, want the 70 submitted", commits)
	}
}

// Refusals by the state machine and by the leader's Vet reach the
// submitter with the same text whether it leads or not.
func TestSubmitRejected(t *testing.T) {
	c := newCluster(t, func(cfg *consensus.Config) {
		fastTimeouts(cfg)
		cfg.Vet = func(cmd []byte) error {
			if strings.HasPrefix(string(cmd), "veto:") {
				return errors.New("vetoed by the leader")
			}
			return nil
		}
	})
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	l := c.leader(voters, 5*time.Second)

	for _, tc := range []struct{ cmd, want string }{
		{"reject:x", `consensus: command rejected: refused "x"`},
		{"veto:y", "consensus: command rejected: vetoed by the leader"},
	} {
		for _, m := range []*member{l, nv} {
			_, err := m.node.Submit(ctx(t, 10*time.Second), []byte(tc.cmd))
			if !errors.Is(err, consensus.ErrRejected) || err.Error() != tc.want {
				t.Errorf("Submit(%q) on n%d = %v, want %q (ErrRejected)", tc.cmd, m.i, err, tc.want)
			}
		}
	}
	_, err := nv.node.Submit(ctx(t, 10*time.Second), make([]byte, consensus.MaxCommand+1))
	if !errors.Is(err, consensus.ErrTooLarge) {
		t.Errorf("Submit(too large) = %v, want ErrTooLarge", err)
	}
	submit(t, nv, "after")
	if err := nv.node.Sync(ctx(t, 10*time.Second)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := nv.fsm.Len(); got != 1 {
		t.Errorf("after Sync the non-voter has %d entries, want 1", got)
	}
	if err := nv.node.AddVoter(ctx(t, time.Second), nv.server()); !errors.Is(err, consensus.ErrNotLeader) {
		t.Errorf("AddVoter on a non-voter = %v, want ErrNotLeader", err)
	}
	if err := nv.node.Barrier(ctx(t, time.Second)); !errors.Is(err, consensus.ErrNotLeader) {
		t.Errorf("Barrier on a non-voter = %v, want ErrNotLeader", err)
	}
	if err := l.node.VerifyLeader(ctx(t, 5*time.Second)); err != nil {
		t.Errorf("VerifyLeader on the leader: %v", err)
	}
	if err := l.node.Barrier(ctx(t, 5*time.Second)); err != nil {
		t.Errorf("Barrier on the leader: %v", err)
	}
	if err := voters[0].node.Bootstrap([]consensus.Server{voters[0].server()}); !errors.Is(err, consensus.ErrAlreadyBootstrapped) {
		t.Errorf("second Bootstrap = %v, want ErrAlreadyBootstrapped", err)
	}
}

// Killing the leader (default timeouts): a new one within seconds, Submit
// resumes, nothing committed is lost, and two voters of three keep the
// cluster writable.
func TestLeaderFailover(t *testing.T) {
	c := newCluster(t, nil)
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	for k := range 20 {
		submit(t, nv, fmt.Sprintf("before%d", k))
	}
	old := c.leader(voters, 5*time.Second)
	var rest []*member
	for _, v := range voters {
		if v != old {
			rest = append(rest, v)
		}
	}

	start := time.Now()
	old.stop()
	// Submit from the non-voter while the voters elect.
	type result struct {
		err error
		at  time.Duration
	}
	done := make(chan result, 1)
	during := ctx(t, 20*time.Second)
	go func() {
		_, err := nv.node.Submit(during, []byte("during"))
		done <- result{err, time.Since(start)}
	}()
	l := c.leader(rest, 15*time.Second)
	elected := time.Since(start)
	r := await(t, done, 20*time.Second, "Submit during the failover")
	if r.err != nil {
		t.Fatalf("Submit during failover: %v", r.err)
	}
	t.Logf("failover: new leader %s after %v; first Submit through after %v", l.id, elected.Round(time.Millisecond), r.at.Round(time.Millisecond))
	// Typically 3–5 s with the default timeouts; a split vote adds an
	// election timeout (2–4 s). The bound is loose: tests must not fail
	// on a slow machine, only when no leader comes at all.
	if elected > 20*time.Second {
		t.Errorf("new leader after %v, want under 20s", elected)
	}
	for k := range 10 {
		submit(t, nv, fmt.Sprintf("after%d", k))
	}
	survivors := append(rest, nv)
	waitSame(t, survivors, 31, 10*time.Second)
	st := string(nv.fsm.State())
	for k := range 20 {
		if !strings.Contains(st, fmt.Sprintf("before%d", k)) {
			t.Errorf("committed entry before%d lost", k)
		}
	}
}

// A leader that vanishes without closing anything (power lost, packets
// blackholed): a non-voter's request in flight to it is abandoned as soon
// as raft names another leader, and goes through the new one, instead of
// waiting out its deadline on a conn that will never answer.
func TestSilentLeaderFailover(t *testing.T) {
	c := newCluster(t, nil)
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	for k := range 5 {
		submit(t, nv, fmt.Sprintf("before%d", k)) // leaves a pooled conn to the leader
	}
	old := c.leader(voters, 5*time.Second)
	c.net.Silence(old.addr.Addr())
	defer c.net.Unsilence(old.addr.Addr())
	start := time.Now()
	// The deadline is long; before the fix the request waited all of it
	// on the silent conn and failed with ErrOutcomeUnknown.
	res, err := nv.node.Submit(ctx(t, 60*time.Second), []byte("during"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Submit through a non-voter while the leader is silent: %v (after %v)", err, took.Round(time.Millisecond))
	}
	t.Logf("silent leader: Submit through the non-voter committed after %v (%s)", took.Round(time.Millisecond), res)
	if took > 30*time.Second {
		t.Errorf("Submit took %v: it waited on the silent leader", took)
	}
}

// A linearizable read on a leader that loses its leadership under it (its
// barrier fails with "leadership lost") is asked again, of the next leader,
// instead of failing as if it were a command of unknown outcome.
func TestSyncAcrossLeaderLoss(t *testing.T) {
	c := newCluster(t, nil)
	voters := c.startVoters(3)
	submit(t, voters[0], "before")
	old := c.leader(voters, 5*time.Second)
	var rest []*member
	for _, v := range voters {
		if v != old {
			rest = append(rest, v)
		}
	}
	c.net.Silence(old.addr.Addr())
	// Registered after the members' Close, so it runs before them even
	// when the test fails before it unsilences.
	t.Cleanup(func() { c.net.Unsilence(old.addr.Addr()) })
	done := make(chan error, 1)
	syncCtx := ctx(t, 60*time.Second)
	go func() { done <- old.node.Sync(syncCtx) }()
	c.leader(rest, 20*time.Second)
	// The old leader's barrier has failed by now or soon will (it cannot
	// reach a quorum); let it hear the new leader.
	time.Sleep(2 * time.Second)
	c.net.Unsilence(old.addr.Addr())
	if err := await(t, done, 60*time.Second, "Sync on the old leader"); err != nil {
		t.Fatalf("Sync on a leader that lost its leadership: %v", err)
	}
}

// A peer that the policy does not admit: the others refuse its conns before
// reading a byte and never dial it; it gets no state, never leads, and its
// Submit fails with ErrNoLeader.
func TestAdmitRefusesPeer(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	voters := c.startVoters(3)
	l := c.leader(voters, 5*time.Second)
	termBefore := l.node.Status().Term

	// The rogue admits everyone and claims to be a voter of the cluster.
	rogue := c.add(9, false)
	rogue.admit = func(netip.Addr) error { return nil }
	rogue.start()
	servers := []consensus.Server{rogue.server()}
	for _, v := range voters {
		servers = append(servers, v.server())
	}
	if err := rogue.node.Bootstrap(servers); err != nil {
		t.Fatalf("rogue Bootstrap: %v", err)
	}
	// The leader is told to add it (a policy lag, say): it must still
	// not dial a peer that Admit refuses.
	if err := l.node.AddNonvoter(ctx(t, 10*time.Second), rogue.server()); err != nil {
		t.Fatalf("AddNonvoter(rogue): %v", err)
	}
	for k := range 5 {
		submit(t, voters[k%3], fmt.Sprintf("cmd%d", k))
	}
	ra := rogue.addr.Addr()
	waitFor(t, 10*time.Second, "the rogue's conns to be refused by every voter", func() bool {
		for _, v := range voters {
			if v.deniedCount(ra) == 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "the leader to refuse dialing the rogue", func() bool {
		return l.deniedCount(ra) >= 2
	})

	_, err := rogue.node.Submit(ctx(t, 2*time.Second), []byte("rogue-cmd"))
	if !errors.Is(err, consensus.ErrNoLeader) {
		t.Errorf("rogue Submit = %v, want ErrNoLeader", err)
	}
	t.Logf("rogue Submit: %v", err)
	for _, v := range voters {
		if got := c.net.Dials(v.addr.Addr(), ra); got != 0 {
			t.Errorf("n%d dialed the rogue %d times, want 0", v.i, got)
		}
		if c.net.Accepts(ra, v.addr.Addr()) == 0 {
			t.Errorf("the rogue never reached n%d: the accept-side refusal was not exercised", v.i)
		}
	}
	if st := rogue.node.Status(); st.LeaderID != "" || st.AppliedIndex != 0 || rogue.fsm.Len() != 0 || st.Role == consensus.Leader {
		t.Errorf("rogue status = %+v, %d entries; want no leader and no state", st, rogue.fsm.Len())
	}
	if st := l.node.Status(); st.Role != consensus.Leader || st.Term != termBefore {
		t.Errorf("leader status after the rogue's campaign = %+v, want leader in term %d", st, termBefore)
	}
	waitSame(t, voters, 5, 5*time.Second)
	if err := l.node.Remove(ctx(t, 10*time.Second), rogue.id); err != nil {
		t.Errorf("Remove(rogue): %v", err)
	}
}

// With no Admit, a node refuses everyone, both ways: fail closed.
func TestNilAdmitRefusesAll(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	a, b := c.add(0, true), c.add(1, true)
	for _, m := range []*member{a, b} {
		m.fsm = &testFSM{}
		cfg := m.config()
		cfg.Admit = nil
		n, err := consensus.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.node = n
		t.Cleanup(func() { n.Close() })
	}
	if err := a.node.Bootstrap([]consensus.Server{a.server(), b.server()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // several election timeouts
	for _, m := range []*member{a, b} {
		if st := m.node.Status(); st.Role == consensus.Leader || st.LeaderID != "" {
			t.Errorf("n%d status = %+v, want no leader", m.i, st)
		}
	}
	if d := c.net.Dials(a.addr.Addr(), b.addr.Addr()) + c.net.Dials(b.addr.Addr(), a.addr.Addr()); d != 0 {
		t.Errorf("%d dials made with a nil Admit, want 0", d)
	}
}

// A node restarted from its Dir recovers its snapshot and log and catches
// up, by log or by snapshot from the leader.
func TestRestartRecoversAndCatchesUp(t *testing.T) {
	c := newCluster(t, func(cfg *consensus.Config) {
		fastTimeouts(cfg)
		cfg.SnapshotThreshold = 8
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 50 * time.Millisecond
	})
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	all := append(voters[:3:3], nv)
	for k := range 30 {
		submit(t, nv, fmt.Sprintf("a%d", k))
	}
	waitSame(t, all, 30, 10*time.Second)
	l := c.leader(voters, 5*time.Second)
	var follower *member
	for _, v := range voters {
		if v != l {
			follower = v
		}
	}
	// Let both take a snapshot of their own.
	time.Sleep(500 * time.Millisecond)
	follower.stop()
	nv.stop()
	for k := range 30 {
		submit(t, l, fmt.Sprintf("b%d", k))
	}
	follower.start()
	nv.start()
	if follower.fsm.Restores() == 0 || nv.fsm.Restores() == 0 {
		t.Errorf("restores at start: follower %d, non-voter %d; want each to load its own snapshot", follower.fsm.Restores(), nv.fsm.Restores())
	}
	submit(t, nv, "c0")
	waitSame(t, all, 61, 15*time.Second)
	if st := nv.node.Status(); !st.Member || st.Voter || st.LeaderID != l.id {
		t.Errorf("restarted non-voter status = %+v", st)
	}
}

// consensus imports nothing of the project.
func TestDeps(t *testing.T) {
	// Bounded: go list may wait on the module cache's locks while the
	// rest of the repository's packages build.
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(c, "go", "list", "-deps", "github.com/custos-cctv/custos/consensus", "github.com/custos-cctv/custos/consensus/consensustest").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/custos-cctv/custos/") && !strings.HasPrefix(dep, "github.com/custos-cctv/custos/consensus") {
			t.Errorf("consensus depends on %s; it must import nothing of the project (never mesh, media or node)", dep)
		}
	}
}

// Admission is checked on dial and accept; a peer revoked while its conns
// are open loses them on Readmit, so the log stops reaching it although the
// leader had a working conn to it.
func TestReadmitClosesRevokedPeersConns(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	submit(t, voters[0], "before")
	all := append(append([]*member{}, voters...), nv)
	waitSame(t, all, 1, 10*time.Second)

	c.mu.Lock()
	c.allowed[nv.addr.Addr()] = false
	c.mu.Unlock()
	closed := 0
	for _, m := range all {
		closed += m.node.Readmit()
	}
	if closed == 0 {
		t.Fatal("Readmit closed no conn, but the leader replicates to the revoked non-voter over one")
	}
	submit(t, voters[0], "after")
	waitSame(t, voters, 2, 10*time.Second)
	// Give the log every chance to reach it: heartbeats run every few ms.
	time.Sleep(time.Second)
	if got := nv.fsm.Len(); got != 1 {
		t.Fatalf("the revoked non-voter applied %d entries, want 1 (it kept a conn)", got)
	}
	l := c.leader(voters, 5*time.Second)
	if l.deniedCount(nv.addr.Addr()) == 0 && nv.deniedCount(l.addr.Addr()) == 0 {
		t.Error("no admission refusal recorded for the revoked peer after Readmit")
	}
}

// A node that forwarded a command learns it is committed from the leader
// at once, not at the next idle append: here that comes only after
// CommitTimeout, set to a minute, so without the leader's barrier the
// forwarder would apply nothing within the test.
func TestForwarderAppliesWithoutWaitingForIdleAppend(t *testing.T) {
	c := newCluster(t, func(cfg *consensus.Config) {
		fastTimeouts(cfg)
		cfg.CommitTimeout = time.Minute
	})
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	c.leader(voters, 5*time.Second)
	for k := range 5 {
		before := nv.fsm.Len()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := nv.node.Submit(ctx, fmt.Appendf(nil, "fwd-%d", k))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("command %d applied on the forwarder", k), func() bool { return nv.fsm.Len() > before })
	}
}
