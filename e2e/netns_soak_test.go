package e2e

// A Jepsen-style soak (make soak): the namespaces federation of
// netns_fed_test.go in its soak topology (three voters, three recording
// stores, two admin nodes) under a seeded nemesis — isolated nodes, splits
// of the nodes into two sides, kill -9 and restart, SIGSTOP/SIGCONT, loss
// and delay, clock skew on a store, a datacenter's disk filled — while
// clients submit policy commands through the CLI and read the policy back.
// The history is checked for linearizability (soak_model_test.go); after
// the run, with every fault healed, every replica must hold every
// acknowledged command, both datacenters every store's segments byte for
// byte, and every node's audit chain must verify.
//
// The nemesis's choices come from the seed (CUSTOS_SOAK_SEED, printed at the
// start); the clients' choices too, but their timing and the processes'
// do not, so a replay repeats the faults, not the interleaving.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// soakEvent is one line of the fault schedule.
type soakEvent struct {
	At     float64 `json:"at_s"` // since the run began
	Action string  `json:"action"`
	Fault  string  `json:"fault"`
	Target string  `json:"target"`
	Detail string  `json:"detail,omitempty"`
}

// soakRun is one campaign's record, written to its directory.
type soakRun struct {
	t      *testing.T
	f      *netFed
	seed   uint64
	dir    string // kept on failure
	began  time.Time
	mu     sync.Mutex
	events []soakEvent
	hist   []soakOp
}

func (r *soakRun) since() float64 { return time.Since(r.began).Seconds() }

func (r *soakRun) event(action, fault, target, detail string) {
	r.mu.Lock()
	e := soakEvent{At: math.Round(r.since()*10) / 10, Action: action, Fault: fault, Target: target, Detail: detail}
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.t.Logf("nemesis [%6.1fs] %s %s %s %s", e.At, action, fault, target, detail)
	// Appended as it happens too: a run killed by go test's -timeout runs
	// no cleanup, and its schedule is what replays it.
	if fd, err := os.OpenFile(filepath.Join(r.dir, "schedule.live.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		fmt.Fprintf(fd, "%8.1fs %-6s %-9s %-24s %s\n", e.At, action, fault, target, detail)
		fd.Close()
	}
}

func (r *soakRun) record(op soakOp) {
	r.mu.Lock()
	r.hist = append(r.hist, op)
	r.mu.Unlock()
}

// TestNetnsSoak runs for CUSTOS_SOAK (a duration) and skips without it, so
// make test and make e2e (-run Netns) never start it.
func TestNetnsSoak(t *testing.T) {
	d := os.Getenv("CUSTOS_SOAK")
	if d == "" {
		t.Skip("soak: run with make soak (sets CUSTOS_SOAK=duration and CUSTOS_NETNS=1)")
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur <= 0 {
		t.Fatalf("CUSTOS_SOAK=%q: want a duration such as 5m", d)
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < dur+20*time.Minute {
		t.Fatalf("soak of %v: go test's -timeout leaves %v, want the soak plus 20m (make soak SOAK_TIMEOUT=…)", dur, time.Until(dl).Round(time.Minute))
	}
	needNetns(t)
	seed := rand.Uint64()
	if s := os.Getenv("CUSTOS_SOAK_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CUSTOS_SOAK_SEED=%q: want an unsigned integer", s)
		}
	}
	t.Logf("soak: seed %d, %v (replay: make soak SOAK=%v SOAK_SEED=%d)", seed, dur, dur, seed)
	dir, err := os.MkdirTemp("", "custos-soak-")
	if err != nil {
		t.Fatal(err)
	}
	r := &soakRun{t: t, seed: seed, dir: dir}
	t.Logf("soak: run directory %s (kept on failure)", dir)
	os.WriteFile(filepath.Join(dir, "seed"), []byte(fmt.Sprintf("%d\n", seed)), 0o644)

	// The binary under the test clock: with it a node reads a wall-clock
	// offset from DIR/testclock-offset; a tree without that tag builds the
	// same binary and the skew fault changes nothing.
	bin := filepath.Join(t.TempDir(), "custos")
	if out, err := exec.Command("go", "build", "-tags", "custos_testclock", "-o", bin, module+"/cmd/custos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// Whether any product file is built under the tag (git grep exits 1
	// when none is).
	testClock := exec.Command("git", "grep", "-q", "custos_testclock", "--", ":(top)*.go", ":(top,exclude)e2e").Run() == nil
	t.Cleanup(func() { r.writeRecord(testClock) })

	r.f = newNetFedWith(t, bin, netFedOpts{soak: true, dcDisk: soakDCDisk(dur)})
	f := r.f
	acc := r.setupAccess()
	load := startLoadSampler(f)

	r.began = time.Now()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var grantN, siteN atomic.Int64
	// One client through an admin node, one through a store; desk is left
	// to the access workload's live views.
	for i, via := range []*custosProc{f.admins[1], f.stores[2]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, i, via, rand.New(rand.NewPCG(seed, uint64(i+1))), &grantN, &siteN)
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); acc.run(ctx, seed) }()
	r.nemesis(dur, rand.New(rand.NewPCG(seed, 0)), testClock)
	stop()
	wg.Wait()
	r.t.Logf("soak: workload stopped at %.1fs; checking", r.since())

	r.checkConverged()
	r.finalRead()
	r.checkLinearizable()
	r.checkAudit()
	acc.checkAccess()
	r.checkHealth()
	cutoff := time.Now()
	if f.waitReplicated(cutoff, 3*time.Minute, f.dcA, f.dcB) {
		f.compareReplica(f.dcA, cutoff)
		f.compareReplica(f.dcB, cutoff)
	}
	for _, s := range f.stores {
		if st, err := f.netStatus(s); err == nil {
			t.Logf("soak: %s's recorders dropped %d segments over the run (%s)", s.name, st.lost(), st.describeRecording())
		}
	}
	for _, dc := range []*custosProc{f.dcA, f.dcB} {
		var st unix.Statfs_t
		if err := unix.Statfs(dc.dir, &st); err == nil {
			t.Logf("soak: %s's tmpfs: %d MiB used of %d MiB", dc.name, int64(st.Blocks-st.Bfree)*st.Bsize>>20, int64(st.Blocks)*st.Bsize>>20)
		}
	}
	load.report(t)
	r.summary(testClock)
}

// soakDCDisk is the size of each datacenter's tmpfs for a soak of dur: the
// four synthetic cameras' replicas take about 30 MiB a minute, so 40 a
// minute over the soak, its founding and its checks leaves the disk room to
// spare until the nemesis fills it (which then costs that much memory).
func soakDCDisk(dur time.Duration) string {
	return fmt.Sprintf("%dm", max(1024, 40*int((dur+25*time.Minute).Minutes())))
}

// soakFaults are the nemesis's kinds, each as likely.
var soakFaults = []string{"partition", "split", "split-leader", "kill", "pause", "impair", "skew", "fill"}

// nemesis injects one fault at a time until dur has passed: a gap of 5–20
// s, a fault, its duration, its heal. It runs on the test's goroutine (it
// may fail the test: a restart that never answers).
func (r *soakRun) nemesis(dur time.Duration, rng *rand.Rand, testClock bool) {
	f := r.f
	sec := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Second }
	pick := func() *custosProc { return f.nodes[rng.IntN(len(f.nodes))] }
	end := r.began.Add(dur)
	for {
		gap := sec(5, 20)
		if time.Now().Add(gap).After(end) {
			time.Sleep(time.Until(end))
			return
		}
		time.Sleep(gap)
		switch kind := soakFaults[rng.IntN(len(soakFaults))]; kind {
		case "partition":
			// Each node cut off on its own (its link dies): two voters of
			// three lose the quorum.
			n := 1 + rng.IntN(2)
			perm := rng.Perm(len(f.nodes))[:n]
			var names []string
			for _, i := range perm {
				names = append(names, f.nodes[i].name)
			}
			hold := sec(5, 20)
			r.event("inject", kind, strings.Join(names, ","), "for "+hold.String())
			for _, i := range perm {
				f.lab.partition(f.ns[f.nodes[i]])
			}
			time.Sleep(hold)
			for _, i := range perm {
				f.lab.heal(f.ns[f.nodes[i]])
			}
			r.event("heal", kind, strings.Join(names, ","), "")
		case "split", "split-leader":
			var side []*custosProc
			if kind == "split" {
				// Any 2–4 nodes against the rest.
				for _, i := range rng.Perm(len(f.nodes))[:2+rng.IntN(3)] {
					side = append(side, f.nodes[i])
				}
			} else {
				side = r.leaderSplit(rng)
			}
			in := map[*custosProc]bool{}
			for _, p := range side {
				in[p] = true
			}
			var a, b []*labNode
			var an, bn []string
			for _, p := range f.nodes {
				if in[p] {
					a, an = append(a, f.ns[p]), append(an, p.name)
				} else {
					b, bn = append(b, f.ns[p]), append(bn, p.name)
				}
			}
			hold := sec(5, 20)
			sides := "{" + strings.Join(an, ",") + "} | {" + strings.Join(bn, ",") + "}"
			r.event("inject", kind, fmt.Sprintf("%d|%d nodes", len(a), len(b)), sides+" for "+hold.String())
			sp := f.lab.split(a, b)
			time.Sleep(hold)
			f.lab.healSplit(sp)
			r.event("heal", kind, fmt.Sprintf("%d|%d nodes", len(a), len(b)), "rules removed")
		case "kill":
			p, hold := pick(), sec(2, 15)
			r.event("inject", kind, p.name, "SIGKILL, restart after "+hold.String())
			f.kill(p)
			time.Sleep(hold)
			f.restart(p)
			r.event("heal", kind, p.name, "restarted")
		case "pause":
			p, hold := pick(), sec(2, 10)
			r.event("inject", kind, p.name, "SIGSTOP for "+hold.String())
			p.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(hold)
			p.cmd.Process.Signal(syscall.SIGCONT)
			r.event("heal", kind, p.name, "SIGCONT")
		case "impair":
			p, hold := pick(), sec(5, 20)
			delay, loss := time.Duration(20+rng.IntN(131))*time.Millisecond, float64(1+rng.IntN(10))
			r.event("inject", kind, p.name, fmt.Sprintf("delay %v loss %v%% each way for %v", delay, loss, hold))
			f.lab.impair(f.ns[p], delay, loss)
			time.Sleep(hold)
			f.lab.clearImpair(f.ns[p])
			r.event("heal", kind, p.name, "")
		case "skew":
			s := f.stores[rng.IntN(len(f.stores))]
			off := []string{"-1h", "-5m", "-30s", "30s", "5m", "1h"}[rng.IntN(6)]
			hold := sec(5, 20)
			detail := "offset " + off + " for " + hold.String()
			if !testClock {
				detail += " (needs the test clock: no effect in this build)"
			}
			r.event("inject", kind, s.name, detail)
			file := filepath.Join(s.dir, "testclock-offset")
			if err := os.WriteFile(file, []byte(off+"\n"), 0o644); err != nil {
				r.t.Fatal(err)
			}
			time.Sleep(hold)
			os.Remove(file)
			r.event("heal", kind, s.name, "offset removed")
		case "fill":
			dc := []*custosProc{f.dcA, f.dcB}[rng.IntN(2)]
			hold := sec(10, 40)
			// Half the time the datacenter is also killed and restarted
			// while its disk is full: it must come up and alarm.
			restart := rng.IntN(2) == 0
			filler, n, err := fillDisk(dc.dir)
			r.t.Cleanup(func() { os.Remove(filler) })
			if err != nil {
				r.t.Fatalf("filling %s's disk: %v", dc.name, err)
			}
			detail := fmt.Sprintf("tmpfs filled to 0 bytes free (%d MiB filler) for %v", n>>20, hold)
			if restart {
				detail += ", SIGKILL and restart halfway"
			}
			r.event("inject", kind, dc.name, detail)
			if restart {
				time.Sleep(hold / 2)
				f.kill(dc)
				f.restart(dc)
				r.event("note", kind, dc.name, "restarted on the full disk: "+r.describeHealth(dc))
				time.Sleep(hold - hold/2)
			} else {
				time.Sleep(hold)
			}
			seen := "while full: " + r.describeHealth(dc)
			if err := os.Remove(filler); err != nil {
				r.t.Fatalf("freeing %s's disk: %v", dc.name, err)
			}
			r.event("heal", kind, dc.name, "filler removed; "+seen)
		}
		r.checkAlive()
	}
}

// checkAlive fails the test for every node whose process ended without the
// nemesis killing it (a crash: on a full disk, say) and starts it again, so
// the run goes on and its checks still say what else went wrong.
func (r *soakRun) checkAlive() {
	for _, p := range r.f.nodes {
		if e := p.exited(); e != "" && !p.killed {
			r.t.Errorf("soak: %s\n--- stderr tail of %s ---\n%s", e, p.name, p.stderr)
			r.event("crash", "-", p.name, e)
			r.f.restart(p)
		}
	}
}

// soakHealth is the part of `custos status --json` that says whether a
// node's storage and audit journal are sound.
type soakHealth struct {
	ReplicaStorage *struct {
		DiskFull bool
		Reason   string
		Corrupt  uint64
	} `json:"replica_storage"`
	CorruptSegments uint64 `json:"corrupt_segments"`
	AuditFailure    string `json:"audit_failure"`
}

func (h soakHealth) problems() []string {
	var s []string
	if rs := h.ReplicaStorage; rs != nil && rs.DiskFull {
		s = append(s, "replica storage full: "+rs.Reason)
	}
	if rs := h.ReplicaStorage; rs != nil && rs.Corrupt > 0 {
		s = append(s, fmt.Sprintf("%d corrupt replica reads", rs.Corrupt))
	}
	if h.CorruptSegments > 0 {
		s = append(s, fmt.Sprintf("%d corrupt segments", h.CorruptSegments))
	}
	if h.AuditFailure != "" {
		s = append(s, "audit journal failing: "+h.AuditFailure)
	}
	return s
}

// describeHealth is p's storage and audit alarms, for the schedule.
func (r *soakRun) describeHealth(p *custosProc) string {
	var h soakHealth
	if _, err := r.f.statusInto(p, &h); err != nil {
		return "no status: " + err.Error()
	}
	if pr := h.problems(); len(pr) > 0 {
		s := strings.Join(pr, "; ")
		if len(s) > 300 {
			s = s[:300] + "…"
		}
		return s
	}
	return "no alarm"
}

// checkHealth waits until no node reports its replica storage full,
// corrupt data, or a failing audit journal: a disk that filled and was freed
// must leave nothing behind.
func (r *soakRun) checkHealth() {
	deadline := time.Now().Add(time.Minute)
	for {
		var bad []string
		for _, p := range r.f.nodes {
			var h soakHealth
			if _, err := r.f.statusInto(p, &h); err != nil {
				bad = append(bad, p.name+": "+err.Error())
				continue
			}
			for _, pr := range h.problems() {
				bad = append(bad, p.name+": "+pr)
			}
		}
		if len(bad) == 0 {
			r.t.Logf("soak: no node reports full or corrupt storage or a failing audit journal")
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("soak: after the heal:\n%s", strings.Join(bad, "\n"))
			return
		}
		time.Sleep(2 * time.Second)
	}
}

// leaderSplit is one side of a split around the leader: half the time the
// leader with a majority of voters against one other voter (a minority that
// must not commit), half the time the leader alone among the voters (it
// must step down while the other two elect). Each non-voter falls on either
// side at random. Without a leader it is a random voter instead.
func (r *soakRun) leaderSplit(rng *rand.Rand) []*custosProc {
	f := r.f
	voters := f.voters()
	// As many draws whoever leads, so the faults after it replay alike.
	fallback, withOther, other := voters[rng.IntN(len(voters))], rng.IntN(2) == 0, rng.IntN(len(voters)-1)
	lead := r.currentLeader()
	if lead == nil {
		lead = fallback
	}
	var others []*custosProc
	for _, v := range voters {
		if v != lead {
			others = append(others, v)
		}
	}
	side := []*custosProc{lead}
	if withOther {
		side = append(side, others[other])
	}
	for _, p := range f.nodes {
		if !slices.Contains(voters, p) && rng.IntN(2) == 0 {
			side = append(side, p)
		}
	}
	return side
}

// currentLeader is the voter that says it leads, or nil.
func (r *soakRun) currentLeader() *custosProc {
	for _, v := range r.f.voters() {
		if st, err := r.f.status(v); err == nil && st.Consensus != nil && st.Consensus.Role == "leader" {
			return v
		}
	}
	return nil
}

// fillDisk fills the file system of dir to zero bytes free with a filler
// file and returns its path and size. Zero, not a few KiB: then every
// allocation fails, the small ones too (a Raft log append, an audit line, a
// database page), which a margin would let through.
func fillDisk(dir string) (string, int64, error) {
	path := filepath.Join(dir, "soak-filler")
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return path, 0, err
	}
	defer fd.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return path, 0, err
	}
	// Most of it at once, then page by page to the brim (the node writes
	// meanwhile).
	if free := int64(st.Bavail) * st.Bsize; free > 1<<20 {
		if err := unix.Fallocate(int(fd.Fd()), 0, 0, free-1<<20); err != nil && !errors.Is(err, unix.ENOSPC) {
			return path, 0, fmt.Errorf("fallocate: %w", err)
		}
	}
	if _, err := fd.Seek(0, io.SeekEnd); err != nil {
		return path, 0, err
	}
	page := make([]byte, 4096)
	for {
		if _, err := fd.Write(page); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				return path, 0, err
			}
			break
		}
	}
	fi, err := fd.Stat()
	if err != nil {
		return path, 0, err
	}
	return path, fi.Size(), nil
}

// client runs policy operations through via until ctx ends: grants for
// desk2 added and revoked and sites added, on small pools of names so the
// two clients collide, and linearizable reads of the policy.
func (r *soakRun) client(ctx context.Context, id int, via *custosProc, rng *rand.Rand, grantN, siteN *atomic.Int64) {
	f := r.f
	// key picks one of the last few objects of a pool, or a new one.
	key := func(n *atomic.Int64, fresh bool) int64 {
		if cur := n.Load(); !fresh && cur > 0 {
			return max(0, cur-1-int64(rng.IntN(3)))
		}
		return n.Add(1) - 1
	}
	for ctx.Err() == nil {
		var op soakOp
		var args []string
		switch x := rng.IntN(100); {
		case x < 35:
			g := fmt.Sprintf("g-soak-%d", key(grantN, rng.IntN(2) == 0))
			op = soakOp{Kind: opGrantAdd, Key: "grant:" + g}
			args = []string{"grant", "--id", g, "--to", "node:desk2", "--action", "live", "--cameras", "praha-1/*", "--until", "2h", "--purpose", "soak"}
		case x < 60:
			g := fmt.Sprintf("g-soak-%d", key(grantN, false))
			op = soakOp{Kind: opGrantRevoke, Key: "grant:" + g}
			args = []string{"revoke", "grant", g}
		case x < 75:
			s := fmt.Sprintf("s-soak-%d", key(siteN, rng.IntN(2) == 0))
			op = soakOp{Kind: opSiteAdd, Key: "site:" + s}
			args = []string{"site", "add", "--name", s}
		default:
			op = soakOp{Kind: opRead}
		}
		op.Client, op.Via = id, via.name
		op.Call = time.Since(r.began).Nanoseconds()
		if op.Kind == opRead {
			read, stale, err := r.readPolicy(via, false)
			op.Return = time.Since(r.began).Nanoseconds()
			// A read the node could not confirm is current says nothing
			// about linearizability: it is recorded and left out.
			switch {
			case err != nil:
				op.Result, op.Reason = outUnknown, err.Error()
			case stale != "":
				op.Result, op.Reason = "stale", stale
			default:
				op.Result, op.Read = outOK, read.objects()
			}
		} else {
			args = append(args, "--dir", via.dir, "--as", f.admin)
			out, errOut, err := f.run(20*time.Second, args...)
			op.Return = time.Since(r.began).Nanoseconds()
			op.Result, op.Reason = classify(op.Kind, out, errOut, err)
			if op.Result == outUnknown {
				op.Return = math.MaxInt64
			}
		}
		r.record(op)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
	}
}

// classify says what a CLI call's exit means for the model: exit 4 is the
// policy's refusal (it did not apply it); any other failure — a timeout,
// a node that is down or cut off — may have committed it.
func classify(kind, out, errOut string, err error) (result, reason string) {
	msg := strings.TrimSpace(errOut + " " + out)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return outOK, ""
	case errors.As(err, &ee) && ee.ExitCode() == 4:
		want := "exists"
		if kind == opGrantRevoke {
			want = "no active grant"
		}
		if strings.Contains(msg, want) {
			return outRefused, msg
		}
		return outOther, msg
	}
	return outUnknown, strings.TrimSpace(err.Error() + ": " + msg)
}

// soakPolicy is the part of the policy the soak reads.
type soakPolicy struct {
	Applied uint64                     `json:"applied"`
	Sites   map[string]json.RawMessage `json:"sites"`
	Grants  map[string]struct {
		Revoked bool `json:"revoked"`
	} `json:"grants"`
}

// objects is the state of every object of the soak in p.
func (p soakPolicy) objects() map[string]int {
	m := map[string]int{}
	for name := range p.Sites {
		if strings.HasPrefix(name, "s-soak-") {
			m["site:"+name] = objActive
		}
	}
	for id, g := range p.Grants {
		if strings.HasPrefix(id, "g-soak-") {
			m["grant:"+id] = map[bool]int{false: objActive, true: objRevoked}[g.Revoked]
		}
	}
	return m
}

// readPolicy is GET /v1/policy on p's socket: linearizable unless local,
// and then stale says why the node could not confirm it was current.
func (r *soakRun) readPolicy(p *custosProc, local bool) (pol soakPolicy, stale string, err error) {
	sock := filepath.Join(p.dir, "custos.sock")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	url := "http://custos/v1/policy"
	if local {
		url += "?local=1"
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return pol, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return pol, "", fmt.Errorf("%s's policy: %s", p.name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&pol); err != nil {
		return pol, "", err
	}
	return pol, resp.Header.Get("Custos-Stale-Policy"), nil
}

// checkConverged waits until every replica has applied the same number of
// commands and holds every acknowledged command's effect.
func (r *soakRun) checkConverged() {
	f := r.f
	// What each acknowledged write leaves at least: an object only moves
	// forward (absent, active, revoked), and an unknown revoke may have
	// followed an acknowledged add.
	want := map[string]int{}
	for _, op := range r.hist {
		if op.Result != outOK || op.Kind == opRead {
			continue
		}
		if op.Kind == opGrantRevoke {
			want[op.Key] = objRevoked
		} else if want[op.Key] != objRevoked {
			want[op.Key] = objActive
		}
	}
	var last string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var problems []string
		applied := map[uint64][]string{}
		for _, p := range f.nodes {
			pol, _, err := r.readPolicy(p, true)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", p.name, err))
				continue
			}
			applied[pol.Applied] = append(applied[pol.Applied], p.name)
			got := pol.objects()
			for k, w := range want {
				if got[k] < w {
					problems = append(problems, fmt.Sprintf("%s: %s is %s, an acknowledged command left it %s", p.name, k, stateName(got[k]), stateName(w)))
				}
			}
		}
		if len(applied) > 1 {
			problems = append(problems, fmt.Sprintf("replicas at different points: %v", applied))
		}
		if len(problems) == 0 {
			r.t.Logf("soak: all %d replicas converged (%v) and hold the effect of every acknowledged write (%d objects)", len(f.nodes), applied, len(want))
			return
		}
		last = strings.Join(problems, "\n")
		if time.Now().After(deadline) {
			r.t.Errorf("soak: replicas did not converge on every acknowledged command within 2m:\n%s", last)
			return
		}
		time.Sleep(time.Second)
	}
}

// finalRead adds a linearizable read through dc-a after the heal, so the
// check sees where every unknown write ended.
func (r *soakRun) finalRead() {
	for range 30 {
		call := time.Since(r.began).Nanoseconds()
		pol, stale, err := r.readPolicy(r.f.dcA, false)
		if err == nil && stale == "" {
			r.record(soakOp{Client: 2, Kind: opRead, Via: r.f.dcA.name, Call: call, Return: time.Since(r.began).Nanoseconds(), Result: outOK, Read: pol.objects()})
			return
		}
		time.Sleep(2 * time.Second)
	}
	r.t.Errorf("soak: no linearizable read through dc-a after the heal")
}

func (r *soakRun) checkLinearizable() {
	var ops []soakOp
	for _, op := range r.hist {
		if op.Kind != opRead || op.Result == outOK {
			ops = append(ops, op)
		}
	}
	bad, undecided := checkSoakHistory(ops, time.Minute)
	for _, k := range bad {
		r.t.Errorf("soak: the history of %s is not linearizable:\n%s", k, describeObject(ops, k))
	}
	if len(undecided) > 0 {
		r.t.Logf("soak: porcupine gave up (1 min) on %v: not checked", undecided)
	}
	r.t.Logf("soak: linearizability checked on %d objects: %d violations, %d undecided", len(bad)+len(undecided)+r.objectsOK(ops, bad, undecided), len(bad), len(undecided))
}

func (r *soakRun) objectsOK(ops []soakOp, bad, undecided []string) int {
	keys, _ := soakPartitions(ops)
	return len(keys) - len(bad) - len(undecided)
}

// checkAudit runs custos audit verify on every node: exit 3 is a broken chain.
func (r *soakRun) checkAudit() {
	for _, p := range r.f.nodes {
		out, errOut, err := r.f.run(60*time.Second, "audit", "verify", "--dir", p.dir)
		if err != nil {
			r.t.Errorf("soak: audit verify on %s: %v\n%s%s", p.name, err, out, errOut)
			continue
		}
		r.t.Logf("soak: audit verify on %s: %s", p.name, strings.TrimSpace(out))
	}
}

// counts are the run's numbers for the log and the README.
func (r *soakRun) summary(testClock bool) {
	faults := map[string]int{}
	for _, e := range r.events {
		if e.Action == "inject" {
			faults[e.Fault]++
		}
	}
	ops := map[string]int{}
	for _, op := range r.hist {
		ops[op.Kind+" "+op.Result]++
	}
	r.t.Logf("soak: seed %d; test clock in the build: %v; faults injected: %v", r.seed, testClock, faults)
	r.t.Logf("soak: operations by kind and outcome: %v", ops)
	// How responsive the federation stayed: the latency of acknowledged
	// operations.
	var lat []time.Duration
	for _, op := range r.hist {
		if op.Result == outOK && op.Return != math.MaxInt64 {
			lat = append(lat, time.Duration(op.Return-op.Call))
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.t.Logf("soak: acknowledged operations' latency: median %v, p90 %v, p99 %v, max %v", lat[len(lat)/2].Round(time.Millisecond),
			lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
	for _, e := range r.events {
		r.t.Logf("soak: schedule %8.1fs %-6s %-9s %-24s %s", e.At, e.Action, e.Fault, e.Target, e.Detail)
	}
	for _, op := range r.hist {
		if op.Result == outOther {
			r.t.Logf("soak: refused for another reason: %s %s via %s: %s", op.Kind, op.Key, op.Via, op.Reason)
		}
	}
}

// writeRecord writes the seed, the schedule, the history and every node's
// stderr tail to the run's directory; the directory stays on failure (or
// with CUSTOS_SOAK_KEEP set) and is removed otherwise.
func (r *soakRun) writeRecord(testClock bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(r.dir, name), b, 0o644); err != nil {
			r.t.Logf("soak: %v", err)
		}
	}
	write("seed", []byte(fmt.Sprintf("%d\n", r.seed)))
	var sched strings.Builder
	fmt.Fprintf(&sched, "# seed %d; test clock in the build: %v\n", r.seed, testClock)
	for _, e := range r.events {
		fmt.Fprintf(&sched, "%8.1fs %-6s %-9s %-24s %s\n", e.At, e.Action, e.Fault, e.Target, e.Detail)
	}
	write("schedule.txt", []byte(sched.String()))
	h, _ := json.MarshalIndent(r.hist, "", " ")
	write("history.json", h)
	if r.f != nil {
		for _, p := range r.f.nodes {
			write("stderr-"+p.name+".txt", []byte(p.stderr.String()))
		}
	}
	if r.t.Failed() || os.Getenv("CUSTOS_SOAK_KEEP") != "" {
		r.t.Logf("soak: seed, schedule, history and stderr tails kept in %s", r.dir)
		return
	}
	os.RemoveAll(r.dir)
}

// loadSampler records, every 5 s while the soak runs, the host's load
// average and CPU use and each node's CPU time, to say whether the
// topology's processes fit the machine.
type loadSampler struct {
	f     *netFed
	stop  chan struct{}
	done  chan struct{}
	load  []float64         // 1-minute load average
	busy  []float64         // host CPU busy fraction over each interval
	ticks map[string]uint64 // per node, summed over its processes
	last  map[int]uint64    // per pid, the ticks already counted
}

func startLoadSampler(f *netFed) *loadSampler {
	s := &loadSampler{f: f, stop: make(chan struct{}), done: make(chan struct{}), ticks: map[string]uint64{}, last: map[int]uint64{}}
	f.t.Cleanup(s.halt)
	for _, p := range f.nodes { // founding's CPU is not the run's
		if t, ok := procTicks(p.cmd.Process.Pid); ok {
			s.last[p.cmd.Process.Pid] = t
		}
	}
	go func() {
		defer close(s.done)
		prevBusy, prevAll := hostCPU()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Second):
			}
			if b, err := os.ReadFile("/proc/loadavg"); err == nil {
				var l float64
				fmt.Sscan(string(b), &l)
				s.load = append(s.load, l)
			}
			busy, all := hostCPU()
			if all > prevAll {
				s.busy = append(s.busy, float64(busy-prevBusy)/float64(all-prevAll))
			}
			prevBusy, prevAll = busy, all
			for _, p := range f.nodes {
				if p.cmd == nil || p.cmd.Process == nil {
					continue
				}
				pid := p.cmd.Process.Pid
				if t, ok := procTicks(pid); ok && t >= s.last[pid] {
					s.ticks[p.name] += t - s.last[pid]
					s.last[pid] = t
				}
			}
		}
	}()
	return s
}

func (s *loadSampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// report logs the figures: load average and host CPU (mean and max), and
// each node's share of one core over the run.
func (s *loadSampler) report(t *testing.T) {
	s.halt()
	stat := func(v []float64) (mean, hi float64) {
		for _, x := range v {
			mean += x
			hi = max(hi, x)
		}
		if len(v) > 0 {
			mean /= float64(len(v))
		}
		return mean, hi
	}
	lm, lx := stat(s.load)
	bm, bx := stat(s.busy)
	secs := 5 * float64(len(s.load))
	var per []string
	for _, p := range s.f.nodes {
		per = append(per, fmt.Sprintf("%s %.0f%%", p.name, 100*float64(s.ticks[p.name])/100/max(secs, 1)))
	}
	t.Logf("soak: load over %d cores: 1-min load average mean %.2f max %.2f; host CPU busy mean %.0f%% max %.0f%%; nodes' CPU (of one core): %s",
		runtime.NumCPU(), lm, lx, 100*bm, 100*bx, strings.Join(per, ", "))
}

// hostCPU is /proc/stat's cpu line: busy and total ticks.
func hostCPU() (busy, all uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all
}

// procTicks is a process's user plus system CPU time in clock ticks (USER_HZ, 100).
func procTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, true
}
