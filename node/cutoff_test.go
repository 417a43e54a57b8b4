package node

import (
	"context"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// joinAcme invites and joins one node to the federation f founded, starts
// it, and stops it at the end of the test.
func joinAcme(t testing.TB, ctx context.Context, f acme, spec InviteSpec) *Node {
	t.Helper()
	return joinAcmeWith(t, ctx, f, spec, nil)
}

// joinAcmeWith is joinAcme with a say in the node's Config.
func joinAcmeWith(t testing.TB, ctx context.Context, f acme, spec InviteSpec, tweak func(*Config)) *Node {
	t.Helper()
	if spec.Expires.IsZero() {
		spec.Expires = time.Now().Add(time.Hour)
	}
	inv, err := MakeInvite(ctx, f.dc.cfg.Dir, f.admin, "alice", spec, time.Now())
	token := inv.Token
	if err != nil {
		t.Fatalf("invite %s: %v", spec.Name, err)
	}
	tok, err := DecodeToken(token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: filepath.Join(f.tmp, spec.Name), Name: spec.Name, Listen: f.listen(), Logf: testLogf(t, spec.Name)}
	if res, err := PrepareJoin(ctx, cfg, tok); err != nil || !res.Applied {
		t.Fatalf("join %s: %+v %v", spec.Name, res, err)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// testLogf sends a node's log to the test log, or with CUSTOS_TEST_LOG set
// (benchmarks, whose logs print even when they pass) to that file.
func testLogf(t testing.TB, name string) func(string, ...any) {
	if path := os.Getenv("CUSTOS_TEST_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		l := log.New(f, name+": ", log.Lmicroseconds)
		return l.Printf
	}
	if _, bench := t.(*testing.B); bench {
		return nil
	}
	return func(s string, a ...any) { t.Logf(name+": "+s, a...) }
}

func hasPeer(n *Node, name string) bool {
	for _, p := range n.Mesh().PeerList() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// DESIGN invariant 6: a store cut off from every voter keeps enforcing the
// last policy it holds, by its own clock — an installer's window that ends
// while the store hears nothing from consensus still ends on the store: the
// installer leaves its mesh peers and loses live view, on time.
func TestCutOffStoreEnforcesWindowsByItsOwnClock(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	voters := []*Node{f.dc,
		joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"}),
		joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleWitness, Name: "witness"})}
	store := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	// The window must outlast the joins on a slow machine; it ends only
	// after every voter is gone.
	end := time.Now().Add(15 * time.Second)
	installer := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleInstaller, Name: "installer", Site: "praha-1",
		Window: policy.Window{From: time.Now().Add(-time.Minute), Until: end}})
	// A loaded machine (a busy CI run, say) can spend the window on the
	// joins; then there is nothing left to test, which is no failure.
	for !(hasPeer(store, "installer") && hasPeer(installer, "store")) {
		if time.Until(end) < 4*time.Second {
			t.Skipf("the machine is too slow: the installer's window ends in %v and the store has not peered with it yet", time.Until(end).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	live := func() policy.Decision {
		return policy.Authorize(store.Policy(), policy.Subject{Kind: "node", Name: "installer"}, policy.ActLive, "praha-1/entrance", time.Now())
	}
	if d := live(); !d.Allow {
		t.Fatalf("installer's live view inside its window: %+v", d)
	}

	for _, v := range voters {
		v.Close()
	}
	cutAt := time.Now()
	if time.Until(end) < 2*time.Second {
		t.Skipf("the machine is too slow: the installer's window ended %v after the voters stopped", time.Until(end))
	}
	// Cut off, the store keeps its last policy: the installer stays a peer
	// until its window ends.
	if !hasPeer(store, "installer") || !live().Allow {
		t.Fatal("the store dropped the installer before its window ended")
	}
	for _, name := range []string{"dc-a", "dc-b", "witness"} {
		if !hasPeer(store, name) {
			t.Errorf("the cut-off store dropped voter %s from its peers; it should keep trying to reach it", name)
		}
	}
	waitTrue(t, time.Until(end)+10*time.Second, "the installer to leave the cut-off store's peers", func() bool {
		return !hasPeer(store, "installer")
	})
	late := time.Since(end)
	t.Logf("voters stopped %v before the window's end; the store dropped the installer %v after it",
		end.Sub(cutAt).Round(time.Millisecond), late.Round(time.Millisecond))
	if late < 0 {
		t.Fatalf("the installer was dropped %v before its window ended", -late)
	}
	if late > 2*time.Second {
		t.Errorf("the installer was dropped %v after its window ended, want within 2s (DESIGN invariant 7)", late)
	}
	if d := live(); d.Allow {
		t.Errorf("installer's live view after its window, on the cut-off store: %+v", d)
	}
	if st := store.raft.Status(); st.LeaderID != "" && st.Role.String() == "leader" {
		t.Errorf("the store became a leader: %+v", st)
	}
}
