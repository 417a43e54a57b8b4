package demo

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// governance: with bob and carol as approvers alice seals the
// federation; then, alone, she tries to add an approver with a key she made
// herself and is refused; as a proposal it needs two approvals besides
// hers, and bob's alone changes nothing.
func (f *federation) governance(approvers map[string]*keys.AdminKey) error {
	f.say("\n== Governance: once sealed, no one admin changes who may approve")
	if err := f.submit(&policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}}); err != nil {
		return err
	}
	f.say("   alice sealed the federation: quorum 2 of approvers alice, bob, carol (custos quorum seal)")
	m1, err := keys.NewAdminKey("m1", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	defer m1.Close()
	add := func() *policy.Command {
		return &policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: "m1", Role: policy.UserApprover, PublicKey: m1.PublicKey(), Fingerprint: m1.Fingerprint()}}
	}
	if err := f.submit(add()); err == nil {
		return fmt.Errorf("alice alone added an approver to a sealed federation")
	} else {
		f.say("   alice adding approver m1 (a key she made) alone: refused (%s)", lastClause(err.Error()))
	}
	return f.proposal(add(), approvers["bob"])
}

// proposal files add as alice's proposal at her admin node and has bob
// approve it: one approval besides the proposer's must change nothing.
func (f *federation) proposal(add *policy.Command, bob *keys.AdminKey) error {
	desk, deskDir := f.nodes["admin-alice"], filepath.Join(f.dir, "admin-alice")
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { st := desk.Policy(); return st != nil && st.Sealed() }); err != nil {
		return err
	}
	res, id, err := node.SubmitGoverned(f.ctx, deskDir, desk.Policy(), f.admin, "alice", add)
	if err != nil || !res.Applied {
		return fmt.Errorf("proposal: %+v %v", res, err)
	}
	f.say("   as a proposal (%s) it waits for 2 approvals of approvers other than alice", id)
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { return desk.Policy().Proposals[id] != nil }); err != nil {
		return err
	}
	st := desk.Policy()
	env, err := node.SignCommand(bob, st.FederationID, "bob", &policy.Command{Kind: policy.KindApproveProposal,
		Approval: &policy.Approval{Request: id, Digest: policy.ProposalDigest(st.FederationID, st.Proposals[id])}})
	if err != nil {
		return err
	}
	if res, err := node.SubmitVia(f.ctx, deskDir, env); err != nil || !res.Applied {
		return fmt.Errorf("bob's approval: %+v %v", res, err)
	}
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { return len(desk.Policy().Proposals[id].Approvals) == 1 }); err != nil {
		return err
	}
	if desk.Policy().Users["m1"] != nil {
		return fmt.Errorf("one approval besides the proposer added an approver")
	}
	f.say("   bob approved: 1 of 2, so m1 is still no user; without carol the proposal expires unexecuted")
	return nil
}
