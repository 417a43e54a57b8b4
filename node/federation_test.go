package node

import (
	"bytes"
	"context"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

func signed(t testing.TB, k *keys.AdminKey, signer string, c *policy.Command) policy.Envelope {
	t.Helper()
	env, err := SignCommand(k, testFederation, signer, c)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// order signs an export order as its exporter, with k.
func order(t testing.TB, k *keys.AdminKey, req release.ExportRequest) release.ExportRequest {
	t.Helper()
	if err := release.SignExport(k, testFederation, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

// testFederation is the federation signed tests sign for: useFederation
// sets it after a test founds one (no test in this package runs in
// parallel).
var testFederation string

func useFederation(t testing.TB, dir string) {
	t.Helper()
	fid, err := FederationIDOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	testFederation = fid
}

// seal adds two approvers to f's federation and seals it with a quorum
// of two, so that footage requests are accepted; it returns the approvers'
// keys.
func (f acme) seal(t testing.TB, ctx context.Context) map[string]*keys.AdminKey {
	t.Helper()
	approvers := map[string]*keys.AdminKey{}
	for _, name := range []string{"bob", "carol"} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		approvers[name] = k
		if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddUser,
			User: &policy.User{Name: name, Role: policy.UserApprover, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}})); err != nil || !res.Applied {
			t.Fatalf("approver %s: %+v %v", name, res, err)
		}
	}
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}})); err != nil || !res.Applied {
		t.Fatalf("seal: %+v %v", res, err)
	}
	return approvers
}

func TestFirstDatacenterRunsThePolicy(t *testing.T) {
	checkLeaks(t)
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	mallory, _ := keys.NewAdminKey("mallory", time.Now().Add(-time.Hour))
	defer mallory.Close()
	// Named like every production directory, which says nothing of the
	// node: the name comes from what it was founded as.
	dir := filepath.Join(t.TempDir(), "custos")
	port, _ := nodetest.FreeUDPPort()
	cfg := Config{Dir: dir, Name: "dc-a", Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Logf: t.Logf}
	rk, err := keys.NewCustodianKey("recovery") // made offline, on the admin's machine
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	opt := InitOptions{Federation: "acme", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint()}
	// Init takes only the public half of the recovery key, and checks it.
	if err := Init(cfg, opt); err == nil || !strings.Contains(err.Error(), "--recovery") {
		t.Fatalf("init without a recovery key: %v", err)
	}
	for name, bad := range map[string][]byte{"junk": []byte("junk"), "an admin key": mallory.PublicKey()} {
		if err := Init(cfg, InitOptions{Federation: "acme", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint(), Recovery: bad}); err == nil || !strings.Contains(err.Error(), "recovery key") {
			t.Fatalf("init with %s as the recovery key: %v", name, err)
		}
	}
	if _, err := os.Stat(KeyPath(dir)); err == nil {
		t.Fatal("a refused init left a node key behind")
	}
	opt.Recovery = rk.Custodian().ArmoredPublicKey()
	if err := Init(cfg, opt); err != nil {
		t.Fatal(err)
	}
	useFederation(t, dir)
	custodian, err := keys.LoadCustodianKey(CustodianKeyPath(dir))
	if err != nil {
		t.Fatalf("dc-a's custodian key: %v", err)
	}
	defer custodian.Zero()
	// No private part of the recovery key is anywhere under the node's
	// directory: neither its armored form nor its raw secret.
	priv, err := rk.ArmoredRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(priv)
	assertNoFileContains(t, dir, priv[40:120])
	assertNoFileContains(t, dir, priv[len(priv)-200:len(priv)-120])
	if err := Init(cfg, opt); err == nil {
		t.Fatal("a second init of the same directory succeeded")
	}
	// Its own custodian key given as the recovery key: two shares on one host.
	other := filepath.Join(t.TempDir(), "dc-x")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	own, err := keys.NewCustodianKey("dc-x")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Zero()
	if err := keys.WriteCustodianKey(CustodianKeyPath(other), own); err != nil {
		t.Fatal(err)
	}
	ocfg := Config{Dir: other, Name: "dc-x", Listen: cfg.Listen}
	if err := Init(ocfg, InitOptions{Federation: "acme", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint(),
		Recovery: own.Custodian().PublicKey()}); err == nil || !strings.Contains(err.Error(), "own custodian key") {
		t.Fatalf("init with the datacenter's own custodian key as the recovery key: %v", err)
	}
	if _, err := New(Config{Dir: dir, Listen: cfg.Listen, PeersFile: "x.toml"}); err == nil || !strings.Contains(err.Error(), "drop --peers") {
		t.Fatalf("peers file on a federation node: %v", err)
	}
	if _, err := New(Config{Dir: dir, Name: "dc-z", Listen: cfg.Listen}); err == nil || !strings.Contains(err.Error(), `is node "dc-a"`) {
		t.Fatalf("started under another name than it was founded as: %v", err)
	}
	unnamed := cfg
	unnamed.Name = ""
	n, err := New(unnamed)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Name() != "dc-a" {
		t.Errorf("started without --name in %s, the node is %q, want dc-a (what it was founded as)", dir, n.Name())
	}
	st := n.Policy()
	if st.Federation != "acme" || st.Users["alice"] == nil || st.Nodes["dc-a"] == nil {
		t.Fatalf("after genesis: %+v", st)
	}
	if !bytes.Equal(st.Recovery, rk.Custodian().PublicKey()) || !bytes.Equal(st.Nodes["dc-a"].Custodian, custodian.Custodian().PublicKey()) {
		t.Fatal("the policy does not hold the recovery key and dc-a's custodian key that Init made")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := SubmitVia(ctx, dir, signed(t, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}}))
	if err != nil || !res.Applied {
		t.Fatalf("site add: %+v %v", res, err)
	}
	// A forged command is refused by the replica, with a reason, and audited.
	res, err = SubmitVia(ctx, dir, signed(t, mallory, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "evil", Jurisdiction: "EU"}}))
	if err != nil || res.Applied || !strings.Contains(res.Reason, "signature") {
		t.Fatalf("forged command: %+v %v", res, err)
	}
	got, err := FetchPolicy(ctx, dir)
	if err != nil || got.Sites["praha-1"] == nil || got.Sites["evil"] != nil {
		t.Fatalf("policy over the API: %+v %v", got, err)
	}
	ss, err := FetchStatus(ctx, dir)
	if err != nil || ss.Consensus == nil || ss.Consensus.LeaderID != n.Mesh().PublicKey().String() {
		t.Fatalf("status consensus: %+v %v", ss.Consensus, err)
	}
	allow, deny := auditDecisions(t, n, "policy-change")
	if allow < 2 || deny != 1 {
		t.Fatalf("audit policy-change events: %d allowed, %d denied", allow, deny)
	}
	// Restart: the policy comes back from the log.
	n.Close()
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	deadline := time.Now().Add(15 * time.Second)
	for n2.Policy().Sites["praha-1"] == nil {
		if time.Now().After(deadline) {
			t.Fatal("the policy did not come back after a restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Raft applied the log again; the journal records each command once.
	entries, err := n2.Audit(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	times := map[string]int{}
	for _, e := range entries {
		if e.Action == "policy-change" {
			times[e.Object]++
		}
	}
	for obj, k := range times {
		if k != 1 {
			t.Errorf("the journal records %q %d times after a restart", obj, k)
		}
	}
}

// assertNoFileContains fails if any file under dir holds needle.
// auditDecisions counts n's audit events of action by decision.
func auditDecisions(t testing.TB, n *Node, action string) (allow, deny int) {
	t.Helper()
	entries, err := n.Audit(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Action != action {
			continue
		}
		if e.Decision == "allow" {
			allow++
		} else {
			deny++
		}
	}
	return allow, deny
}

func assertNoFileContains(t testing.TB, dir string, needle []byte) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, needle) {
			t.Errorf("%s holds a secret it must never hold", path)
		}
		return nil
	})
}
