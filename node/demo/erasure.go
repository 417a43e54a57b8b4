package demo

import (
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// erasure: alice asks to erase a few seconds of praha-1/entrance after the
// exported minute, once the store and both datacenters hold them; bob and
// carol approve; every node that holds the footage deletes it and signs a
// receipt, which the desk collects and checks against each node's key.
func (r *keyRelease) erasure() error {
	from, to := r.to.Add(4*time.Second), r.to.Add(10*time.Second)
	r.say("\n== Erasure (GDPR art. 17): alice asks to erase %s – %s of %s; the quorum approves; every copy goes",
		from.Local().Format(time.TimeOnly), to.Local().Format(time.TimeOnly), releaseCam)
	store := r.nodes["store-praha-1"]
	if err := nodetest.WaitCond(r.ctx, time.Until(to)+60*time.Second, func() bool { return replicatedPast(store, to) }); err != nil {
		return fmt.Errorf("the datacenters never held the footage to erase: %w", err)
	}
	before, _ := store.HeldSegments(releaseCam, from, to)
	res, err := node.SubmitVia(r.ctx, r.deskDir, r.signAs(r.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "e-demo", Action: policy.ActionErase, Selector: releaseCam, From: from, To: to,
		Purpose: "the data subject's erasure request, reference DS-2026-031", Expires: time.Now().Add(time.Hour)}}))
	if err != nil || !res.Applied {
		return fmt.Errorf("erasure request: %+v %v", res, err)
	}
	if err := nodetest.WaitCond(r.ctx, 10*time.Second, func() bool { return r.desk.Policy().Requests["e-demo"] != nil }); err != nil {
		return err
	}
	digest := policy.RequestDigest(r.deskFID, r.desk.Policy().Requests["e-demo"])
	for _, name := range approverNames {
		res, err := node.SubmitVia(r.ctx, r.deskDir, r.signAs(r.approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: "e-demo", Digest: digest}}))
		if err != nil || !res.Applied {
			return fmt.Errorf("%s's approval of the erasure: %+v %v", name, res, err)
		}
	}
	approved := time.Now()
	var st struct {
		state string
		rows  []string
	}
	err = nodetest.WaitCond(r.ctx, 60*time.Second, func() bool {
		s, err := r.desk.ErasureStatus(r.ctx, "e-demo")
		if err != nil {
			return false
		}
		st.state, st.rows = s.State, nil
		for _, row := range s.Rows {
			st.rows = append(st.rows, fmt.Sprintf("   %-14s %-10s %-5s %3d segments, %7d bytes, %d epoch keys destroyed", row.Node, row.Role, row.State, row.Segments, row.Bytes, row.Epochs))
		}
		return s.State == keys.ErasureDone
	})
	if err != nil {
		return fmt.Errorf("erasure not done on every node: %s %v", st.state, st.rows)
	}
	r.say("   bob and carol approved; done on every node that held it %v later, each row a receipt signed with that node's key:",
		time.Since(approved).Round(time.Millisecond))
	for _, row := range st.rows {
		r.say("%s", row)
	}
	after, _ := store.HeldSegments(releaseCam, from, to)
	r.say("   the store held %d segments of the range before, %d after; segments that overlap an end went whole (segment granularity)", len(before), len(after))
	return nil
}

// replicatedPast: both datacenters acknowledged the store's footage of
// releaseCam up to t.
func replicatedPast(store *node.Node, t time.Time) bool {
	s, err := store.Status()
	if err != nil {
		return false
	}
	n := 0
	for _, r := range s.Replication {
		if r.Camera == releaseCam && !r.UpTo.Before(t) {
			n++
		}
	}
	return n >= 2
}
