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
// submitted on the store commits, and nothing committed before is lost;
// a new node joins through dc-b.
func TestLeaderLossKeepsPolicyWritable(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	admin, a, tmp := f.admin, f.dc, f.tmp
	nodes := map[string]*Node{
		"dc-b":    joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"}),
		"witness": joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleWitness, Name: "witness"}),
		"store":   joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}),
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
	// With dc-a gone, a new store still joins: its token names both
	// datacenters, dc-a first (stopped, it refuses the connection at once),
	// and dc-b, which itself joined by token, takes it. The
	// witness leads meanwhile: the token names it too, or the new node
	// would refuse the log from a leader it was never told of.
	wid := nodes["witness"].raft.Status().ID
	if st := nodes["dc-b"].raft.Status(); st.Role.String() == "leader" {
		if err := nodes["dc-b"].raft.TransferLeadership(ctx, wid); err != nil {
			t.Fatal(err)
		}
	}
	waitTrue(t, 10*time.Second, "the witness to lead", func() bool { return nodes["witness"].raft.Status().Role.String() == "leader" })
	viaB := f
	viaB.dc = nodes["dc-b"]
	late := joinAcme(t, ctx, viaB, InviteSpec{Role: policy.RoleStore, Name: "store-brno-1", Site: "brno-1"})
	waitTrue(t, 30*time.Second, "the store that joined through dc-b to hold the policy", func() bool {
		st := late.Policy()
		return st != nil && st.Nodes["store-brno-1"] != nil
	})
}
