package node

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	live := func(installer string) policy.Decision {
		return policy.Authorize(store.Policy(), policy.Subject{Kind: "node", Name: installer}, policy.ActLive, "praha-1/entrance", time.Now())
	}
	// The window must outlast the join and leave time to cut the store off
	// before it ends. A loaded machine can spend a short window on the join:
	// then a new installer gets a window twice as long, and the test goes
	// on (it never skips; it fails only if even a 2-minute window is spent).
	var name string
	var end time.Time
	for window := 15 * time.Second; ; window *= 2 {
		if window > 2*time.Minute {
			t.Fatal("an installer's join took longer than a 2-minute window")
		}
		name = fmt.Sprintf("installer-%d", int(window.Seconds()))
		end = time.Now().Add(window)
		installer := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleInstaller, Name: name, Site: "praha-1",
			Window: policy.Window{From: time.Now().Add(-time.Minute), Until: end}})
		for !(hasPeer(store, name) && hasPeer(installer, "store")) && time.Until(end) > 6*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if time.Until(end) > 6*time.Second {
			break
		}
		t.Logf("the join of %s left %v of its %v window; trying a longer one", name, time.Until(end).Round(time.Millisecond), window)
	}
	if d := live(name); !d.Allow {
		t.Fatalf("installer's live view inside its window: %+v", d)
	}

	// All voters at once, so that the cut takes one close, not three.
	var wg sync.WaitGroup
	for _, v := range voters {
		wg.Add(1)
		go func() { defer wg.Done(); v.Close() }()
	}
	wg.Wait()
	cutAt := time.Now()
	if !cutAt.Before(end) {
		t.Fatalf("closing the voters took until %v after the window's end", cutAt.Sub(end))
	}
	// Cut off, the store keeps its last policy: the installer stays a peer
	// until its window ends.
	if !hasPeer(store, name) || !live(name).Allow {
		t.Fatal("the store dropped the installer before its window ended")
	}
	for _, name := range []string{"dc-a", "dc-b", "witness"} {
		if !hasPeer(store, name) {
			t.Errorf("the cut-off store dropped voter %s from its peers; it should keep trying to reach it", name)
		}
	}
	waitTrue(t, time.Until(end)+10*time.Second, "the installer to leave the cut-off store's peers", func() bool {
		return !hasPeer(store, name)
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
	if d := live(name); d.Allow {
		t.Errorf("installer's live view after its window, on the cut-off store: %+v", d)
	}
	if st := store.raft.Status(); st.LeaderID != "" && st.Role.String() == "leader" {
		t.Errorf("the store became a leader: %+v", st)
	}
}
