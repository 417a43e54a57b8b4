package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// Through a running datacenter: once sealed, one admin's governance change
// is refused by the replicated FSM; SubmitGoverned turns it into a proposal
// that executes with the approvals of two approvers besides the proposer.
// An invite for a datacenter is such a proposal too: its token names an
// invite that exists only once the quorum approved it.
func TestGovernanceThroughTheNode(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := foundAcme(t, ctx)
	approvers := f.seal(t, ctx)
	dir := f.dc.cfg.Dir
	m1, err := keys.NewAdminKey("m1", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	add := func() *policy.Command {
		return &policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: "m1", Role: policy.UserApprover, PublicKey: m1.PublicKey(), Fingerprint: m1.Fingerprint()}}
	}
	if res, err := SubmitVia(ctx, dir, signed(t, f.admin, "alice", add())); err != nil || res.Applied || !strings.Contains(res.Reason, "needs the quorum") {
		t.Fatalf("alice alone added an approver to a sealed federation: %+v %v", res, err)
	}
	res, id, err := SubmitGoverned(ctx, dir, f.dc.Policy(), f.admin, "alice", add())
	if err != nil || !res.Applied || id == "" {
		t.Fatalf("proposal: %+v %q %v", res, id, err)
	}
	approve := func(name, id string) {
		t.Helper()
		st := f.dc.Policy()
		env := signed(t, approvers[name], name, &policy.Command{Kind: policy.KindApproveProposal,
			Approval: &policy.Approval{Request: id, Digest: policy.ProposalDigest(st.FederationID, st.Proposals[id])}})
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			t.Fatalf("%s approving %s: %+v %v", name, id, res, err)
		}
	}
	approve("bob", id)
	if f.dc.Policy().Users["m1"] != nil {
		t.Fatal("one approval besides alice's added m1")
	}
	approve("carol", id)
	if u := f.dc.Policy().Users["m1"]; u == nil || u.Role != policy.UserApprover {
		t.Fatalf("the quorum's approval did not add m1: %+v", u)
	}

	inv, err := MakeInvite(ctx, dir, f.admin, "alice", InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b", Expires: time.Now().Add(time.Hour)}, time.Now())
	if err != nil || inv.Proposal == "" || inv.Token == "" {
		t.Fatalf("a datacenter's invite in a sealed federation: %+v %v", inv, err)
	}
	tok, err := DecodeToken(inv.Token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if f.dc.Policy().Invites[tok.Invite] != nil {
		t.Fatal("the datacenter's invite exists before the quorum approved it")
	}
	approve("bob", inv.Proposal)
	approve("carol", inv.Proposal)
	if i := f.dc.Policy().Invites[tok.Invite]; i == nil || i.Role != policy.RoleDatacenter {
		t.Fatalf("the approved invite: %+v", i)
	}
}
