package join

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// verifyJoin decides only once the replica holds the node, and then checks
// the invite, its maker and the token's signer.
func TestVerifyJoin(t *testing.T) {
	st := &policy.State{Federation: "acme",
		Nodes:   map[string]*policy.Node{"store-1": {Name: "store-1", PublicKey: "nodekey:self", Role: policy.RoleStore}},
		Invites: map[string]*policy.Invite{"inv-1": {ID: "inv-1", Role: policy.RoleStore, Name: "store-1", CreatedBy: "alice", Spent: true}},
		Users: map[string]*policy.User{
			"alice": {Name: "alice", Role: policy.UserAdmin, Fingerprint: "aa11"},
			"bob":   {Name: "bob", Role: policy.UserApprover, Fingerprint: "bb22"},
		},
	}
	ji := func(invite, signer string) *Info {
		return &Info{Invite: invite, Signer: signer, Role: string(policy.RoleStore)}
	}
	if done, err := verifyJoin(&policy.State{}, "nodekey:self", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("no policy yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:other", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("the node not in the replica yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:self", ji("inv-1", "AA11")); !done || err != nil {
		t.Fatalf("the inviting admin's key: %v %v", done, err)
	}
	for want, j := range map[string]*Info{
		"holds no invite":          ji("inv-2", "aa11"),
		"not by admin \"alice\"":   ji("inv-1", "bb22"),
		"this node is \"store-1\"": {Invite: "inv-1", Signer: "aa11", Role: string(policy.RoleDatacenter)},
	} {
		if done, err := verifyJoin(st, "nodekey:self", j); !done || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v %v, want an error with %q", j, done, err, want)
		}
	}
	st.Users["alice"].Revoked = true
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "aa11")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by a revoked admin: %v", err)
	}
	st.Users["alice"].Revoked = false
	st.Invites["inv-1"].CreatedBy = "bob"
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "bb22")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by an approver: %v", err)
	}
}

// The join check against in-memory twins: a token signed by the inviting
// admin is recorded as checked; one signed by anyone else undoes the join
// (the directory is marked refused, its federation, join and last-peers
// files removed once the node stopped) and stops the node.
func TestJoinCheck(t *testing.T) {
	nodetest.CheckLeaks(t)
	st := &policy.State{Federation: "acme",
		Nodes:   map[string]*policy.Node{"store-1": {Name: "store-1", PublicKey: "nodekey:self", Role: policy.RoleStore}},
		Invites: map[string]*policy.Invite{"inv-1": {ID: "inv-1", Role: policy.RoleStore, Name: "store-1", CreatedBy: "alice", Spent: true}},
		Users:   map[string]*policy.User{"alice": {Name: "alice", Role: policy.UserAdmin, Fingerprint: "aa11"}},
	}
	run := func(signer string) (dir string, w *twin, failure error) {
		dir = t.TempDir()
		if err := writeInfo(dir, &Info{Invite: "inv-1", Signer: signer, Role: string(policy.RoleStore)}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"federation.json", LastPeersFile} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		w = &twin{st: st}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		err := StartCheck(CheckConfig{Dir: dir, Name: "store-1", Self: "nodekey:self", FederationFile: "federation.json",
			Policy: w, Audit: w, Logf: t.Logf, Stop: stop,
			Fail: func(err error, cleanup func()) { failure = err; cleanup() },
			Go:   func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }})
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait() // the replica holds the node: the check ends at once
		close(stop)
		return dir, w, failure
	}

	dir, w, failure := run("AA11")
	ji, err := ReadInfo(dir)
	if failure != nil || err != nil || !ji.Checked {
		t.Fatalf("a token by the inviting admin: failure %v, info %+v %v", failure, ji, err)
	}
	if ev := w.audited(); len(ev) != 1 || ev[0].Decision != audit.Allow || ev[0].Object != "invite inv-1" {
		t.Fatalf("audited %+v", ev)
	}
	if err := StartCheck(CheckConfig{Dir: dir, Go: func(func()) { t.Fatal("checked twice") }}); err != nil {
		t.Fatal(err)
	}

	dir, w, failure = run("bb22")
	if !errors.Is(failure, ErrRefused) || !strings.Contains(failure.Error(), "signed by key bb22") {
		t.Fatalf("a token by another key: %v", failure)
	}
	if ev := w.audited(); len(ev) != 1 || ev[0].Decision != audit.Deny || !strings.Contains(ev[0].Reason, "signed by key bb22") {
		t.Fatalf("audited %+v", ev)
	}
	for _, gone := range []string{"federation.json", InfoFile, LastPeersFile} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the join was undone: %v", gone, err)
		}
	}
	if err := WasRefused(dir); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "signed by key bb22") {
		t.Fatalf("the refused directory: %v", err)
	}
}
