package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// TestLeaderLossKeepsPolicyWritable: dc-a (the leader), dc-b and a witness
// vote; dc-a is stopped; dc-b and the witness elect a leader and a command
// submitted on the store commits, and nothing committed before is lost.
func TestLeaderLossKeepsPolicyWritable(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	admin, a, tmp, listen := f.admin, f.dc, f.tmp, f.listen
	dcA := a.cfg
	nodes := map[string]*Node{}
	for _, j := range []struct {
		name string
		role policy.NodeRole
		site string
	}{{"dc-b", policy.RoleDatacenter, ""}, {"witness", policy.RoleWitness, ""}, {"store", policy.RoleStore, "praha-1"}} {
		token, err := MakeInvite(ctx, dcA.Dir, admin, "alice", InviteSpec{Role: j.role, Name: j.name, Site: j.site, Expires: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := DecodeToken(token, time.Now())
		cfg := Config{Dir: filepath.Join(tmp, j.name), Name: j.name, Listen: listen()}
		if res, err := PrepareJoin(ctx, cfg, tok); err != nil || !res.Applied {
			t.Fatalf("join %s: %+v %v", j.name, res, err)
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		nodes[j.name] = n
	}
	waitTrue(t, 30*time.Second, "three voters", func() bool {
		v := 0
		for _, m := range a.raft.Status().Members {
			if m.Voter {
				v++
			}
		}
		return v == 3
	})
	waitTrue(t, 20*time.Second, "every replica to hold the site", func() bool {
		for _, n := range nodes {
			if st := n.Policy(); st == nil || st.Sites["praha-1"] == nil {
				return false
			}
		}
		return true
	})
	a.Close()
	stopped := time.Now()
	// A client retries while the survivors elect a leader.
	var res ApplyResult
	var err error
	for {
		res, err = SubmitVia(ctx, filepath.Join(tmp, "store"), signed(t, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}}))
		if err == nil || time.Since(stopped) > 30*time.Second {
			break
		}
	}
	if err != nil || !res.Applied {
		t.Fatalf("submit after the leader stopped: %+v %v", res, err)
	}
	for _, name := range []string{"dc-b", "witness"} {
		if st := nodes[name].raft.Status(); st.Role.String() == "leader" {
			t.Logf("new leader: %s", name)
		}
	}
	t.Logf("first commit %v after the leader stopped", time.Since(stopped).Round(time.Millisecond))
	waitTrue(t, 10*time.Second, "the new site on the surviving replicas", func() bool {
		for _, n := range nodes {
			st := n.Policy()
			if st.Sites["brno-1"] == nil || st.Sites["praha-1"] == nil {
				return false
			}
		}
		return true
	})
}
