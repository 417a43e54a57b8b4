package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// demoGovernance: with bob and carol as approvers alice seals the
// federation; then, alone, she tries to add an approver with a key she made
// herself and is refused; as a proposal it needs two approvals besides
// hers, and bob's alone changes nothing.
func demoGovernance(ctx context.Context, w io.Writer, desk *node.Node, deskDir string, alice *keys.AdminKey, approvers map[string]*keys.AdminKey,
	submit func(*policy.Command) error) error {
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	say("\n== Governance: once sealed, no one admin changes who may approve")
	if err := submit(&policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}}); err != nil {
		return err
	}
	say("   alice sealed the federation: quorum 2 of approvers alice, bob, carol (custos quorum seal)")
	m1, err := keys.NewAdminKey("m1", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	defer m1.Close()
	add := func() *policy.Command {
		return &policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: "m1", Role: policy.UserApprover, PublicKey: m1.PublicKey(), Fingerprint: m1.Fingerprint()}}
	}
	if err := submit(add()); err == nil {
		return fmt.Errorf("alice alone added an approver to a sealed federation")
	} else {
		say("   alice adding approver m1 (a key she made) alone: refused (%s)", lastClause(err.Error()))
	}
	if err := nodetest.WaitCond(ctx, 10*time.Second, func() bool { st := desk.Policy(); return st != nil && st.Sealed() }); err != nil {
		return err
	}
	res, id, err := node.SubmitGoverned(ctx, deskDir, desk.Policy(), alice, "alice", add())
	if err != nil || !res.Applied {
		return fmt.Errorf("proposal: %+v %v", res, err)
	}
	say("   as a proposal (%s) it waits for 2 approvals of approvers other than alice", id)
	if err := nodetest.WaitCond(ctx, 10*time.Second, func() bool { return desk.Policy().Proposals[id] != nil }); err != nil {
		return err
	}
	st := desk.Policy()
	env, err := node.SignCommand(approvers["bob"], st.FederationID, "bob", &policy.Command{Kind: policy.KindApproveProposal,
		Approval: &policy.Approval{Request: id, Digest: policy.ProposalDigest(st.FederationID, st.Proposals[id])}})
	if err != nil {
		return err
	}
	if res, err := node.SubmitVia(ctx, deskDir, env); err != nil || !res.Applied {
		return fmt.Errorf("bob's approval: %+v %v", res, err)
	}
	if err := nodetest.WaitCond(ctx, 10*time.Second, func() bool { return len(desk.Policy().Proposals[id].Approvals) == 1 }); err != nil {
		return err
	}
	if desk.Policy().Users["m1"] != nil {
		return fmt.Errorf("one approval besides the proposer added an approver")
	}
	say("   bob approved: 1 of 2, so m1 is still no user; without carol the proposal expires unexecuted")
	return nil
}

// signedOrder is req signed by its exporter k; a failure to sign shows as
// the node's refusal of an unsigned order.
func signedOrder(k *keys.AdminKey, fid string, req release.ExportRequest) release.ExportRequest {
	release.SignExport(k, fid, &req)
	return req
}
