package policystore

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// cmdEnvelopes makes a genesis and n signed site commands that apply in
// order to an empty state.
func cmdEnvelopes(t *testing.T, n int) []policy.Envelope {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	admin, err := keys.NewAdminKey("alice", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	genesis := &policy.Command{ID: "genesis", Time: now, Kind: policy.KindGenesis, Genesis: &policy.Genesis{
		Federation: "acme",
		Admin:      policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
		Node:       policy.Node{Name: "dc-a", PublicKey: keys.NewNodePrivate().Public().String(), Role: policy.RoleDatacenter, Jurisdiction: "EU"},
	}}
	body, _ := policy.EncodeCommand(genesis)
	envs := []policy.Envelope{{Body: body}}
	scratch := New(nil)
	applyAll(t, scratch, envs)
	for i := range n {
		c := &policy.Command{ID: fmt.Sprintf("site-%d", i), Time: now, Signer: "alice", Kind: policy.KindAddSite,
			Site: &policy.Site{Name: fmt.Sprintf("site-%d", i), Jurisdiction: "EU"}}
		body, _ := policy.EncodeCommand(c)
		sig, err := admin.Sign(policy.SignedBytes(scratch.State().FederationID, body), now)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, policy.Envelope{Body: body, Sig: sig})
	}
	return envs
}

func applyAll(t *testing.T, ps *Store, envs []policy.Envelope) {
	t.Helper()
	for _, env := range envs {
		if r := applyResult(t, ps, env); !r.Applied {
			t.Fatalf("%s %s refused: %s", r.Kind, r.ID, r.Reason)
		}
	}
}

// journaledCmds counts the policy-change entries per command ID.
func journaledCmds(t *testing.T, j *audit.Journal) map[string]int {
	t.Helper()
	es, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range es {
		if _, id, ok := strings.Cut(e.Object, " "); ok && e.Action == "policy-change" {
			got[id]++
		}
	}
	return got
}

// auditedStore is a policy store journaling through a CmdAudit, as a node
// runs it.
func auditedStore(t *testing.T, j *audit.Journal, q *Queue) (*Store, *CmdAudit) {
	t.Helper()
	ca, err := NewCmdAudit(j, q)
	if err != nil {
		t.Fatal(err)
	}
	ps := New(nil)
	ps.OnApply, ps.OnRestore = ca.Record, ca.Restored
	return ps, ca
}

// A follower that receives commands only in a snapshot journals each of
// them once, and a second snapshot journals nothing twice.
func TestSnapshotCommandsJournaled(t *testing.T) {
	leader := New(nil)
	applyAll(t, leader, cmdEnvelopes(t, 3))
	snap, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	j, err := audit.Open(t.TempDir(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := NewQueue(j, t.Logf)
	defer q.Close()
	follower, _ := auditedStore(t, j, q)
	for range 2 {
		if err := follower.Restore(snap); err != nil {
			t.Fatal(err)
		}
	}
	q.Flush()
	got := journaledCmds(t, j)
	for _, id := range []string{"genesis", "site-0", "site-1", "site-2"} {
		if got[id] != 1 {
			t.Errorf("command %s journaled %d times on the follower, want once (journal: %v)", id, got[id], got)
		}
	}
}

const crashDirEnv = "CUSTOS_TEST_CMDAUDIT_CRASH_DIR"

// TestCmdAuditCrashHelper is the process TestCrashBetweenApplyAndJournal
// kills: it applies and journals two commands, applies three more whose
// journal lines are still queued, persists a snapshot (what Raft does
// before it compacts its log, so the three are never replayed from it),
// says so, and waits for kill -9.
func TestCmdAuditCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the helper process of TestCrashBetweenApplyAndJournal")
	}
	envs := cmdEnvelopes(t, 4)
	j, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue(j, t.Logf)
	ps, ca := auditedStore(t, j, q)
	applyAll(t, ps, envs[:2])
	q.Flush()
	// A writer that never gets to write: the lines stay queued.
	stalled := &Queue{j: j, logf: t.Logf, wake: make(chan struct{}, 1), done: make(chan struct{})}
	stalled.cond = sync.NewCond(&stalled.mu)
	ca.q = stalled
	applyAll(t, ps, envs[2:])
	snap, err := ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "snapshot"))
	if err == nil {
		_, err = f.Write(snap)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fmt.Println("ready")
	time.Sleep(time.Minute) // killed long before
	t.Fatal("not killed")
}

// TestCrashBetweenApplyAndJournal kills (-9) a process that applied
// commands whose journal lines were still queued when its snapshot was
// taken; the restarted replica restores that snapshot and journals every
// applied command exactly once.
func TestCrashBetweenApplyAndJournal(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCmdAuditCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				break
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatal("the helper ended without getting ready")
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the helper did not get ready within 2 minutes")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper ended with %v, want killed", err)
	}

	snap, err := os.ReadFile(filepath.Join(dir, "snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := audit.Open(dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	before := journaledCmds(t, j)
	if len(before) != 2 {
		t.Fatalf("before the restart the journal holds %v, want the first two commands", before)
	}
	q := NewQueue(j, t.Logf)
	defer q.Close()
	ps, _ := auditedStore(t, j, q)
	if err := ps.Restore(snap); err != nil {
		t.Fatal(err)
	}
	q.Flush()
	got := journaledCmds(t, j)
	var snapIDs []string
	var sv snapshotV1
	if err := json.Unmarshal(snap, &sv); err != nil {
		t.Fatal(err)
	}
	for _, raw := range sv.Log {
		env, _ := policy.DecodeEnvelope(raw)
		c, _ := policy.DecodeCommand(env.Body)
		snapIDs = append(snapIDs, c.ID)
	}
	if len(snapIDs) != 5 {
		t.Fatalf("snapshot holds %v, want 5 commands", snapIDs)
	}
	for _, id := range snapIDs {
		if got[id] != 1 {
			t.Errorf("after the crash command %s is journaled %d times, want once (journal: %v)", id, got[id], got)
		}
	}
	if rep, err := j.Verify(); err != nil || !rep.OK {
		t.Errorf("Verify after the crash: %v, %v", rep, err)
	}
}

// After a restart Raft replays commands the journal already holds: each
// is journaled once (applied or refused), and a command older than the
// journal keeps entries is not journaled at all.
func TestCmdAuditJournalsReplayOnce(t *testing.T) {
	dir := t.TempDir()
	j, err := audit.Open(dir, audit.Options{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	now := time.Now().UTC()
	applied := &policy.Command{ID: "c-1", Kind: policy.KindAddSite, Signer: "alice", Time: now}
	refused := &policy.Command{ID: "c-2", Kind: policy.KindAddSite, Signer: "alice", Time: now}
	old := &policy.Command{ID: "c-old", Kind: policy.KindAddSite, Signer: "alice", Time: now.Add(-48 * time.Hour)}
	no := errors.New("not allowed")

	run := func() {
		q := NewQueue(j, t.Logf)
		defer q.Close()
		a, err := NewCmdAudit(j, q)
		if err != nil {
			t.Fatal(err)
		}
		a.Record(applied, nil)
		a.Record(refused, no)
		a.Record(old, nil)
		a.Record(nil, no) // not even a command: journaled every time
		q.Flush()
	}
	run()
	run() // the restart's replay

	es, err := j.Since(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range es {
		if e.Action != "policy-change" {
			continue
		}
		count[e.Object+" "+e.Decision]++
		if e.Object == "site.add c-1" && e.Actor != "alice" {
			t.Errorf("actor %q, want the signer", e.Actor)
		}
		if e.Object == "site.add c-2" && e.Reason != "not allowed" {
			t.Errorf("refusal's reason %q", e.Reason)
		}
	}
	want := map[string]int{
		"site.add c-1 " + audit.Allow: 1,
		"site.add c-2 " + audit.Deny:  1,
		" " + audit.Deny:              2,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%q journaled %d times, want %d (all: %v)", k, count[k], n, count)
		}
	}
	for k := range count {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected entry %q (all: %v)", k, count)
		}
	}
}
