package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// The leader's feature gate: a command of a newer protocol enters the log
// only once every Raft member has said it knows that protocol. A member
// of an older release, or one that does not answer, keeps it out, with a
// refusal naming the member; first-protocol commands go on meanwhile.
// Members' releases are shown by the version op.
func TestProtocolGate(t *testing.T) {
	if policy.Protocol < 2 {
		t.Skip("a protocol-1 build has no gated kind of its own")
	}
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := foundAcme(t, ctx)
	store := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	store.protocolSaid.Store(1) // the store plays the previous release
	waitTrue(t, 30*time.Second, "dc-a to reach both", func() bool { return hasPeer(f.dc, "store") && hasPeer(f.dc, "desk") })

	// A node that just joined answers once its replica has caught up.
	var vs []NodeVersion
	waitTrue(t, 60*time.Second, "every member to answer op version", func() bool {
		var err error
		vs, err = FetchVersions(ctx, f.dc.cfg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Error != "" {
				time.Sleep(200 * time.Millisecond)
				return false
			}
		}
		return true
	})
	got := map[string]int{}
	for _, v := range vs {
		got[v.Node] = v.Protocol
		if v.Version != Version {
			t.Errorf("%s: %+v", v.Node, v)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(map[string]int{"dc-a": policy.Protocol, "desk": policy.Protocol, "store": 1}) {
		t.Errorf("versions: %v", got)
	}

	// passkey.require of no role: a protocol-2 command that changes
	// nothing else, so the gate is all that stands in its way.
	lastID := ""
	require := func() (ApplyResult, error) {
		c := &policy.Command{Kind: policy.KindRequirePasskeys, PasskeyRequirement: &policy.PasskeyRequirement{}}
		env := signed(t, f.admin, "alice", c)
		lastID = c.ID
		return SubmitVia(ctx, f.dc.cfg.Dir, env)
	}
	refusedFor := func(what string, want ...string) {
		t.Helper()
		res, err := require()
		text := fmt.Sprint(err) + res.Reason
		if res.Applied {
			t.Fatalf("%s: passkey.require applied", what)
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: refusal %q does not say %q", what, text, w)
			}
		}
		if _, seen := f.dc.Policy().Seen[lastID]; seen {
			t.Fatalf("%s: the refused command is in the policy", what)
		}
	}
	refusedFor("a store of the previous release", "needs protocol 2", "store runs", "(protocol 1)", "upgrade them first")
	// The first protocol's commands still commit.
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite,
		Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}})); err != nil || !res.Applied {
		t.Fatalf("a site while the gate is shut: %+v %v", res, err)
	}

	// The store is upgraded; then the desk stops answering.
	store.protocolSaid.Store(0)
	deskCfg := desk.cfg
	if err := desk.Close(); err != nil {
		t.Fatal(err)
	}
	// The leader trusts an answer for versionKeep; as once it has passed:
	f.dc.gate.mu.Lock()
	f.dc.gate.known = nil
	f.dc.gate.mu.Unlock()
	refusedFor("a member that does not answer", "desk did not answer")

	again, err := New(deskCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	waitTrue(t, 60*time.Second, "the gate to open once every member answers", func() bool {
		res, err := require()
		if err == nil && res.Applied {
			return true
		}
		t.Logf("not yet: %v %s", err, res.Reason)
		time.Sleep(time.Second)
		return false
	})
	waitTrue(t, 30*time.Second, "the store to apply it", func() bool {
		_, seen := store.Policy().Seen[lastID]
		return seen
	})
	if s, _ := store.Status(); s.Protocol != policy.Protocol || s.Stalled != "" {
		t.Errorf("store status: protocol %d, stalled %q", s.Protocol, s.Stalled)
	}
}
