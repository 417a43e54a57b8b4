package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Read-your-write through the local API: a request filed through one node
// is listed by that node at once, and approved at once through another
// node, without waiting for either replica to catch up. The writer's
// Submit returns once its own replica applied the command; the other
// node's policy read is linearizable (it asks the leader how far the log
// is committed and waits to apply that far). Both nodes are non-voters,
// whose replicas learn a commit one append after the leader.
func TestRequestReadYourWrite(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	approvers := f.seal(t, ctx)
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	other := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk-2"})
	waitTrue(t, 20*time.Second, "both desks to hold the camera", func() bool {
		return desk.Policy().Cameras["praha-1/entrance"] != nil && other.Policy().Cameras["praha-1/entrance"] != nil
	})
	from := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	// Several rounds: one lucky round proves little when the lag is a
	// few milliseconds.
	for i := range 5 {
		id := fmt.Sprintf("r%d", i)
		pub, err := desk.NewReleaseKey()
		if err != nil {
			t.Fatal(err)
		}
		if res, err := SubmitVia(ctx, desk.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
			ID: id, Node: "desk", Selector: "praha-1/entrance", From: from, To: from.Add(time.Minute), Purpose: "theft at the entrance",
			Basis: "art. 6(1)(f)", Key: pub, Expires: time.Now().Add(time.Hour)}})); err != nil || !res.Applied {
			t.Fatalf("request %s: %+v %v", id, res, err)
		}
		// custos requests on the node that wrote it.
		if desk.Policy().Requests[id] == nil {
			t.Fatalf("round %d: desk's replica lacks %s right after its own Submit returned", i, id)
		}
		if st, err := FetchPolicy(ctx, desk.cfg.Dir); err != nil || st.Requests[id] == nil {
			t.Fatalf("round %d: custos requests on desk right after the request does not list %s (%v)", i, id, err)
		}
		// custos approve on another node, at once.
		st, err := FetchPolicy(ctx, other.cfg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		r := st.Requests[id]
		if r == nil {
			t.Fatalf("round %d: desk-2's policy read right after the request has no %s", i, id)
		}
		res, err := SubmitVia(ctx, other.cfg.Dir, signed(t, approvers["bob"], "bob", &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: id, Digest: policy.RequestDigest(st.FederationID, r)}}))
		if err != nil || !res.Applied {
			t.Fatalf("round %d: bob's approval of %s through desk-2: %+v %v", i, id, res, err)
		}
		if len(other.Policy().Requests[id].Approvals) != 1 {
			t.Fatalf("round %d: desk-2's replica lacks bob's approval right after its own Submit returned", i)
		}
	}
}
