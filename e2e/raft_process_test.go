package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKillLeaderProcess runs a real federation as separate `custos`
// processes on 127.0.0.1 — dc-a, dc-b and a witness voting, a store
// replicating — and kills the Raft leader's process with SIGKILL (DESIGN §4
// invariant 10, README "Consensus"). The survivors elect a leader and a
// command submitted through the store commits; every survivor holds every
// change committed before the kill; the store keeps its peers and its
// replica while the leader is dead; the killed node, restarted on the same
// directory, recovers its log, catches up, and its audit journal verifies.
func TestKillLeaderProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four nodes as processes")
	}
	began := time.Now()
	f := newProcFed(t)

	// 1. Found the federation on dc-a, then invite, join and start the others.
	dcA := f.node("dc-a", "datacenter", "")
	f.must(nil, "admin", "keygen", "--out", f.admin, "--name", "alice")
	recovery := filepath.Join(f.tmp, "recovery.key") // made apart from every node, as on the admin's machine
	f.must(nil, "recovery", "keygen", "--out", recovery)
	f.must(dcA, "init", "--dir", dcA.dir, "--name", "dc-a", "--listen", dcA.listen, "--federation", "acme", "--admin-key", f.admin+".pub", "--recovery", recovery+".pub")
	f.up(dcA)
	f.waitUntil(dcA, 60*time.Second, "dc-a to lead its one-node cluster", func() (bool, string) {
		st, err := f.status(dcA)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		return st.Consensus.Role == "leader", "role " + st.Consensus.Role
	})
	f.submit(dcA, 30*time.Second, "site", "add", "--name", "praha-1")
	t.Logf("dc-a founded and leading at %v", time.Since(began).Round(time.Millisecond))
	for _, n := range []struct{ name, role, site string }{
		{"dc-b", "datacenter", ""},
		{"witness", "witness", ""},
		{"store-praha-1", "store", "praha-1"},
	} {
		p := f.node(n.name, n.role, n.site)
		args := []string{"invite", "--role", n.role, "--name", n.name, "--expires", "1h", "--dir", dcA.dir, "--as", f.admin}
		if n.site != "" {
			args = append(args, "--site", n.site)
		}
		token := strings.TrimSpace(f.must(dcA, args...))
		if !strings.HasPrefix(token, "custos1.") {
			f.fatalf(dcA, "invite %s printed no token: %q", n.name, token)
		}
		f.must(dcA, "join", "--dir", p.dir, "--token", token, "--listen", p.listen)
		f.up(p)
		t.Logf("%s joined and started at %v", n.name, time.Since(began).Round(time.Millisecond))
	}
	store := f.byName("store-praha-1")
	voters := []*custosProc{dcA, f.byName("dc-b"), f.byName("witness")}
	for _, p := range f.nodes {
		f.waitUntil(p, 60*time.Second, p.name+"'s API and key", func() (bool, string) {
			st, err := f.status(p)
			if err != nil {
				return false, err.Error()
			}
			p.key = st.PublicKey
			return p.key != "", "no public key"
		})
	}
	f.waitUntil(dcA, 60*time.Second, "dc-a's configuration: dc-a, dc-b, witness voting, the store not", func() (bool, string) {
		st, err := f.status(dcA)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		want := map[string]bool{}
		for _, p := range f.nodes {
			want[p.key] = p.role != "store"
		}
		got := map[string]bool{}
		for _, m := range st.Consensus.Members {
			got[m.ID] = m.Voter
		}
		return maps.Equal(got, want), f.describeMembers(st.Consensus.Members)
	})
	t.Logf("three voters and a non-voter at %v", time.Since(began).Round(time.Millisecond))
	f.waitUntil(store, 60*time.Second, "the store: a non-voting member with the policy applied", func() (bool, string) {
		st, err := f.status(store)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		c := st.Consensus
		if !c.Member || c.Voter || c.LeaderID == "" {
			return false, fmt.Sprintf("member %v voter %v leader %q", c.Member, c.Voter, c.LeaderID)
		}
		pol, err := f.policy(store)
		if err != nil {
			return false, err.Error()
		}
		return pol.hasSites("praha-1") && len(pol.Nodes) == 4, pol.String()
	})
	t.Logf("federation of four processes ready after %v", time.Since(began).Round(time.Millisecond))

	// 2. A few committed changes, each through a different node (forwarded
	// to the leader), then SIGKILL to the leader.
	var before []string
	for _, c := range []struct{ site, via string }{
		{"brno-1", "dc-a"},
		{"ostrava-1", "dc-b"},
		{"plzen-1", "witness"},
	} {
		f.submit(f.byName(c.via), 30*time.Second, "site", "add", "--name", c.site)
		before = append(before, c.site)
	}
	leader := f.leader(voters)
	lst, err := f.status(leader)
	if err != nil || lst.Consensus == nil {
		f.fatalf(leader, "status of the leader %s: %v", leader.name, err)
	}
	committed := lst.Consensus.CommitIndex
	var survivors []*custosProc // the other voters and the store
	for _, p := range f.nodes {
		if p != leader {
			survivors = append(survivors, p)
		}
	}
	storeBefore, err := f.policy(store)
	if err != nil {
		f.fatalf(store, "store policy before the kill: %v", err)
	}
	t.Logf("leader %s at commit index %d; killing it with SIGKILL", leader.name, committed)

	killed := f.kill(leader)
	obs := f.observe(store, storeBefore, survivors, leader, killed.Add(20*time.Second))
	took, how := f.submitTimed(store, killed, 30*time.Second, "site", "add", "--name", "after-kill")
	firstLeader, samples := obs.stop()
	if firstLeader.at.IsZero() {
		f.fatalf(store, "no survivor was seen leading after the kill (%d samples)", len(samples))
	}
	election := firstLeader.at.Sub(killed)
	t.Logf("failover: %s seen leading %v after the kill; the command through the store committed %v after it (%s)",
		firstLeader.who, election.Round(time.Millisecond), took.Round(time.Millisecond), how)
	if election > 15*time.Second {
		f.fatalf(firstLeader.proc, "a new leader only %v after the kill, want within 15 s", election)
	}

	// 4. The store, while the leader was dead, kept its peers and replica.
	if len(samples) == 0 {
		f.fatalf(store, "the store was never sampled while the leader was dead")
	}
	for _, s := range samples {
		if s.problem != "" {
			f.fatalf(store, "while %s was dead (%v after the kill) the store %s", leader.name, s.at.Sub(killed).Round(time.Millisecond), s.problem)
		}
	}
	t.Logf("the store kept %d peers and its replica in all %d samples while %s was dead", len(storeBefore.Nodes)-1, len(samples), leader.name)

	// Every survivor holds every change committed before the kill, and the
	// new one.
	all := append([]string{"praha-1", "after-kill"}, before...)
	for _, p := range survivors {
		f.waitReplica(p, 30*time.Second, committed, all)
	}

	// 3. Restart the killed node on the same directory: it recovers its
	// log, rejoins and catches up. Its audit journal verifies, first on the
	// files the kill left, then through the running node.
	out, errOut, err := f.run(60*time.Second, "audit", "verify", "--dir", leader.dir)
	if err != nil {
		f.fatalf(leader, "audit verify on the files SIGKILL left: %v\n%s%s", err, out, errOut)
	}
	t.Logf("%s's journal after SIGKILL: %s", leader.name, strings.TrimSpace(out))
	newSt, err := f.status(firstLeader.proc)
	if err != nil || newSt.Consensus == nil {
		f.fatalf(firstLeader.proc, "status of the new leader: %v", err)
	}
	restarted := time.Now()
	f.up(leader)
	var firstLast uint64
	f.waitUntil(leader, 60*time.Second, leader.name+" back, answering", func() (bool, string) {
		st, err := f.status(leader)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		firstLast = st.Consensus.LastIndex
		return true, ""
	})
	// The API answers only once Raft has opened its log, and catching up
	// takes seconds more: an index below what was committed here means
	// raft-wal lost entries to the kill.
	if firstLast < committed {
		f.fatalf(leader, "%s restarted with last log index %d, below the %d committed before the kill", leader.name, firstLast, committed)
	}
	t.Logf("%s restarted: its recovered log ends at index %d (%d committed before the kill)", leader.name, firstLast, committed)
	f.waitReplica(leader, 30*time.Second, newSt.Consensus.CommitIndex, all)
	f.waitUntil(leader, 60*time.Second, leader.name+" a voter again, following a leader", func() (bool, string) {
		st, err := f.status(leader)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		c := st.Consensus
		return c.Voter && c.LeaderID != "", fmt.Sprintf("role %s voter %v leader %q", c.Role, c.Voter, c.LeaderID)
	})
	t.Logf("%s caught up %v after its restart", leader.name, time.Since(restarted).Round(time.Millisecond))
	out, errOut, err = f.run(60*time.Second, "audit", "verify", "--dir", leader.dir)
	if err != nil {
		f.fatalf(leader, "audit verify through the restarted node: %v\n%s%s", err, out, errOut)
	}
	t.Logf("%s's journal after the restart: %s", leader.name, strings.TrimSpace(out))
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}

const e2ePassphrase = "a long enough e2e passphrase"

// procFed is a federation of `custos up` processes in one temp directory.
type procFed struct {
	t     *testing.T
	bin   string
	tmp   string
	admin string // the admin's private key file (alice.key)
	nodes []*custosProc
}

// custosProc is one node: its data directory, its underlay address, and
// its `custos up` process while one runs.
type custosProc struct {
	name, role, site string
	dir, listen      string
	key              string // public key text, the node's Raft ID
	stderr           *tailBuffer
	bin              string // the custos binary it runs ("": the federation's)

	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait's answer, set before done closes
	killed bool          // the test killed it on purpose
}

func newProcFed(t *testing.T) *procFed {
	t.Helper()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "custos")
	if out, err := exec.Command("go", "build", "-o", bin, module+"/cmd/custos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f := &procFed{t: t, bin: bin, tmp: tmp, admin: filepath.Join(tmp, "alice.key")}
	// Runs after every process is killed and reaped (cleanups run last
	// registered first): on failure, what each node said last.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range f.nodes {
			t.Logf("--- stderr tail of %s ---\n%s", p.name, p.stderr)
		}
	})
	return f
}

// node declares a node with its own directory (named after it: `custos up`
// takes the node's name from it) and a free UDP port.
func (f *procFed) node(name, role, site string) *custosProc {
	p := &custosProc{
		name: name, role: role, site: site,
		dir:    filepath.Join(f.tmp, name),
		listen: fmt.Sprintf("127.0.0.1:%d", freePort(f.t)),
		stderr: newTailBuffer(60),
	}
	f.nodes = append(f.nodes, p)
	return p
}

func (f *procFed) byName(name string) *custosProc {
	for _, p := range f.nodes {
		if p.name == name {
			return p
		}
	}
	f.t.Fatalf("no node %q", name)
	return nil
}

// up starts `custos up` in p's directory on p's address; the process is
// killed and reaped when the test ends.
func (f *procFed) up(p *custosProc) {
	f.t.Helper()
	if p.running() {
		f.t.Fatalf("%s already runs", p.name)
	}
	fmt.Fprintf(p.stderr, "=== custos up --dir %s --listen %s\n", p.dir, p.listen)
	f.start(p, exec.Command(f.bin, "up", "--dir", p.dir, "--listen", p.listen))
}

// start runs cmd as p's process, reaped in the background, and killed when
// the test ends.
func (f *procFed) start(p *custosProc, cmd *exec.Cmd) {
	f.t.Helper()
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start %s: %v", p.name, err)
	}
	first := p.cmd == nil
	p.cmd, p.done, p.killed = cmd, make(chan struct{}), false
	done := p.done
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
	if first {
		f.t.Cleanup(func() { f.stop(p) })
	}
}

// kill sends SIGKILL to p's process, reaps it and returns when it was sent.
func (f *procFed) kill(p *custosProc) time.Time {
	f.t.Helper()
	at := time.Now()
	p.killed = true
	if err := p.cmd.Process.Kill(); err != nil {
		f.fatalf(p, "kill %s: %v", p.name, err)
	}
	<-p.done
	return at
}

// stop kills p's process if it runs and waits for it.
func (f *procFed) stop(p *custosProc) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (p *custosProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exited describes how p's process ended, or is empty while it runs.
func (p *custosProc) exited() string {
	if p.cmd == nil || p.running() {
		return ""
	}
	return fmt.Sprintf("%s's process exited: %v", p.name, p.err)
}

// fatalf fails the test with p's stderr tail (p may be nil).
func (f *procFed) fatalf(p *custosProc, format string, args ...any) {
	f.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if p != nil {
		msg += fmt.Sprintf("\n--- stderr tail of %s ---\n%s", p.name, p.stderr)
	}
	f.t.Fatal(msg)
}

// run runs one CLI command with the admin's passphrase in its environment
// (never in the test's) and a deadline of its own.
func (f *procFed) run(timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	return runCLI(timeout, func(ctx context.Context) *exec.Cmd { return exec.CommandContext(ctx, f.bin, args...) })
}

// runCLI runs the command mk makes under a deadline, with the admin's
// passphrase in its environment (never in the test's).
func runCLI(timeout time.Duration, mk func(context.Context) *exec.Cmd) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := mk(ctx)
	cmd.Env = append(os.Environ(), "CUSTOS_PASSPHRASE="+e2ePassphrase)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within %v: %w", timeout, err)
	}
	return out.String(), errOut.String(), err
}

// must runs a CLI command that has to succeed at once; p is the node it
// concerns, whose stderr a failure shows.
func (f *procFed) must(p *custosProc, args ...string) string {
	f.t.Helper()
	out, errOut, err := f.run(60*time.Second, args...)
	if err != nil {
		f.fatalf(p, "custos %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// submit signs a policy command as alice and submits it through via,
// retrying until it commits or d passes.
func (f *procFed) submit(via *custosProc, d time.Duration, args ...string) {
	f.t.Helper()
	f.submitTimed(via, time.Now(), d, args...)
}

// submitTimed is submit measured from since. A retry refused because the
// object exists means an earlier attempt committed after its client gave up
// waiting; how says which.
func (f *procFed) submitTimed(via *custosProc, since time.Time, d time.Duration, args ...string) (took time.Duration, how string) {
	f.t.Helper()
	args = append(args, "--dir", via.dir, "--as", f.admin)
	deadline := time.Now().Add(d)
	for attempt := 1; ; attempt++ {
		out, errOut, err := f.run(15*time.Second, args...)
		var ee *exec.ExitError
		switch {
		case err == nil:
			return time.Since(since), fmt.Sprintf("attempt %d: %s", attempt, strings.TrimSpace(out))
		case errors.As(err, &ee) && ee.ExitCode() == 4 && attempt > 1 && strings.Contains(errOut, "exists"):
			return time.Since(since), fmt.Sprintf("attempt %d found it committed by an earlier one", attempt)
		case errors.As(err, &ee) && (ee.ExitCode() == 2 || ee.ExitCode() == 4):
			f.fatalf(via, "custos %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		if time.Now().After(deadline) {
			f.fatalf(via, "custos %s through %s did not commit within %v (%d attempts); last: %v\n%s",
				strings.Join(args, " "), via.name, d, attempt, err, errOut)
		}
		if e := via.exited(); e != "" {
			f.fatalf(via, "%s", e)
		}
		time.Sleep(100 * time.Millisecond) // back off between attempts
	}
}

// waitUntil polls cond until it holds; a failure shows cond's last
// description and p's stderr. A process of the federation that exits
// fails the wait at once.
func (f *procFed) waitUntil(p *custosProc, d time.Duration, what string, cond func() (bool, string)) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		for _, q := range f.nodes {
			if e := q.exited(); e != "" && !q.killed {
				f.fatalf(q, "waiting for %s: %s", what, e)
			}
		}
		if time.Now().After(deadline) {
			f.fatalf(p, "timed out after %v waiting for %s; last seen: %s", d, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReplica waits until p's replica has applied index idx and holds
// every site in sites and all four nodes.
func (f *procFed) waitReplica(p *custosProc, d time.Duration, idx uint64, sites []string) {
	f.t.Helper()
	f.waitUntil(p, d, fmt.Sprintf("%s to apply index %d and hold sites %v", p.name, idx, sites), func() (bool, string) {
		st, err := f.status(p)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		pol, err := f.policy(p)
		if err != nil {
			return false, err.Error()
		}
		// idx is a commit index: linearizable reads add barrier entries, which
		// only raft's own applied index counts.
		return st.Consensus.RaftApplied >= idx && pol.hasSites(sites...) && len(pol.Nodes) == len(f.nodes),
			fmt.Sprintf("applied index %d; %s", st.Consensus.RaftApplied, pol)
	})
}

// leader finds the voter that leads, as the voters themselves report it.
func (f *procFed) leader(voters []*custosProc) *custosProc {
	f.t.Helper()
	var found *custosProc
	f.waitUntil(voters[0], 30*time.Second, "a leader all voters agree on", func() (bool, string) {
		ids := map[string]bool{}
		var views []string
		for _, p := range voters {
			st, err := f.status(p)
			if err != nil || st.Consensus == nil {
				return false, fmt.Sprint(err)
			}
			ids[st.Consensus.LeaderID] = true
			views = append(views, p.name+": "+f.nameOf(st.Consensus.LeaderID))
		}
		found = nil
		for _, p := range voters {
			if len(ids) == 1 && ids[p.key] {
				found = p
			}
		}
		return found != nil, strings.Join(views, ", ")
	})
	return found
}

func (f *procFed) nameOf(key string) string {
	for _, p := range f.nodes {
		if p.key == key && key != "" {
			return p.name
		}
	}
	if key == "" {
		return "none"
	}
	return key
}

func (f *procFed) describeMembers(ms []raftMember) string {
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("%s(voter %v)", f.nameOf(m.ID), m.Voter))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// nodeStatus is the part of `custos status --json` (node.Status) read here.
type nodeStatus struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Peers     []struct {
		Name     string `json:"name"`
		Liveness string `json:"liveness"`
	} `json:"peers"`
	Consensus *raftStatus `json:"consensus"`
}

// raftStatus is consensus.Status as JSON.
type raftStatus struct {
	ID           string       `json:"id"`
	Role         string       `json:"role"`
	Member       bool         `json:"member"`
	Voter        bool         `json:"voter"`
	LeaderID     string       `json:"leader_id"`
	Term         uint64       `json:"term"`
	LastIndex    uint64       `json:"last_index"`
	CommitIndex  uint64       `json:"commit_index"`
	AppliedIndex uint64       `json:"applied_index"`
	RaftApplied  uint64       `json:"raft_applied_index"` // barriers and configuration entries too
	Members      []raftMember `json:"members"`
}

type raftMember struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
}

func (f *procFed) status(p *custosProc) (nodeStatus, error) {
	var st nodeStatus
	_, err := f.statusInto(p, &st)
	return st, err
}

// statusInto decodes `custos status --json` of p into v and returns the
// raw JSON.
func (f *procFed) statusInto(p *custosProc, v any) ([]byte, error) {
	out, errOut, err := f.run(10*time.Second, "status", "--dir", p.dir, "--json")
	if err != nil {
		return nil, fmt.Errorf("custos status --dir %s: %v: %s", p.name, err, strings.TrimSpace(errOut))
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return nil, fmt.Errorf("custos status --dir %s: %v", p.name, err)
	}
	return []byte(out), nil
}

// policyView is the part of a replica's policy.State read here.
type policyView struct {
	Sites map[string]json.RawMessage `json:"sites"`
	Nodes map[string]struct {
		Role    string `json:"role"`
		Revoked bool   `json:"revoked"`
	} `json:"nodes"`
	Applied uint64 `json:"applied"`
}

func (v policyView) hasSites(sites ...string) bool {
	for _, s := range sites {
		if _, ok := v.Sites[s]; !ok {
			return false
		}
	}
	return true
}

func (v policyView) String() string {
	var sites, nodes []string
	for s := range v.Sites {
		sites = append(sites, s)
	}
	for n := range v.Nodes {
		nodes = append(nodes, n)
	}
	slices.Sort(sites)
	slices.Sort(nodes)
	return fmt.Sprintf("%d commands applied, sites %v, nodes %v", v.Applied, sites, nodes)
}

// policy reads p's replica of the policy from its local API, the unix
// socket in its directory that `custos members` and `custos grants` read.
func (f *procFed) policy(p *custosProc) (policyView, error) {
	var v policyView
	sock := filepath.Join(p.dir, "custos.sock")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://custos/v1/policy")
	if err != nil {
		return v, fmt.Errorf("%s's policy: %v", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("%s's policy: %s", p.name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("%s's policy: %v", p.name, err)
	}
	return v, nil
}

// observer watches the cluster while the leader is dead: each surviving
// voter is polled by a goroutine of its own until one of them reports that
// it leads (or the deadline passes), and the store is sampled until stop:
// does it still answer with its peers and its replica?
type observer struct {
	stopc chan struct{}
	found chan struct{} // closed when first is set
	wg    sync.WaitGroup

	mu    sync.Mutex
	first leaderSeen    // guarded by mu
	samp  []storeSample // written by the store sampler only; read after wg.Wait
}

type leaderSeen struct {
	at   time.Time
	who  string
	proc *custosProc
}

type storeSample struct {
	at      time.Time
	problem string // empty when the store was fine
}

func (f *procFed) observe(store *custosProc, before policyView, survivors []*custosProc, dead *custosProc, deadline time.Time) *observer {
	o := &observer{stopc: make(chan struct{}), found: make(chan struct{})}
	for _, p := range survivors {
		if p.role == "store" {
			continue
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for time.Now().Before(deadline) {
				st, err := f.status(p)
				at := time.Now()
				if err == nil && st.Consensus != nil && st.Consensus.Role == "leader" {
					o.mu.Lock()
					if o.first.at.IsZero() {
						o.first = leaderSeen{at: at, who: p.name, proc: p}
						close(o.found)
					}
					o.mu.Unlock()
					return
				}
				select {
				case <-o.found:
					return
				case <-time.After(50 * time.Millisecond): // poll interval
				}
			}
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			o.samp = append(o.samp, storeSample{at: time.Now(), problem: f.storeProblem(store, before, dead)})
			select {
			case <-o.stopc:
				return
			case <-time.After(100 * time.Millisecond): // sampling interval
			}
		}
	}()
	return o
}

// stop ends the store's sampling, waits for the leader watchers to end
// (they do when one saw a leader, or at their deadline) and returns what
// they saw.
func (o *observer) stop() (leaderSeen, []storeSample) {
	close(o.stopc)
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.first, o.samp
}

// storeProblem says what is wrong with the store now, compared with its
// replica before the kill: it must answer, still be a Raft member, hold
// every node and site it held, and keep a mesh peer for every other node —
// the dead one included (its membership did not change).
func (f *procFed) storeProblem(store *custosProc, before policyView, dead *custosProc) string {
	st, err := f.status(store)
	if err != nil {
		return "did not answer: " + err.Error()
	}
	if st.Consensus == nil || !st.Consensus.Member {
		return "left the Raft configuration"
	}
	pol, err := f.policy(store)
	if err != nil {
		return "lost its policy: " + err.Error()
	}
	for n := range before.Nodes {
		if _, ok := pol.Nodes[n]; !ok {
			return fmt.Sprintf("lost node %s from its replica (%s)", n, pol)
		}
	}
	for s := range before.Sites {
		if !pol.hasSites(s) {
			return fmt.Sprintf("lost site %s from its replica (%s)", s, pol)
		}
	}
	if pol.Applied < before.Applied {
		return fmt.Sprintf("went back from %d to %d applied commands", before.Applied, pol.Applied)
	}
	peers := map[string]bool{}
	for _, ps := range st.Peers {
		peers[ps.Name] = true
	}
	for _, p := range f.nodes {
		if p != store && !peers[p.name] {
			return fmt.Sprintf("lost its mesh peer %s (dead: %s); peers %v", p.name, dead.name, st.Peers)
		}
	}
	return ""
}

// tailBuffer keeps the last lines a process wrote; safe for the exec
// package's copying goroutine and the test's reads at once.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial string
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.partial + string(p)
	parts := strings.Split(s, "\n")
	b.partial = parts[len(parts)-1]
	b.lines = append(b.lines, parts[:len(parts)-1]...)
	if over := len(b.lines) - b.max; over > 0 {
		b.lines = append(b.lines[:0], b.lines[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.lines, "\n")
	if b.partial != "" {
		s += "\n" + b.partial
	}
	return s
}
