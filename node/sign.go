package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// FederationIDOf returns the policy.FederationID of the federation the node
// in dir belongs to, from its anchor (the genesis it accepted): what every
// command signed for it names.
func FederationIDOf(dir string) (string, error) {
	a, err := readAnchor(dir)
	if err != nil {
		return "", err
	}
	if a == nil {
		return "", fmt.Errorf("node: %s belongs to no federation yet (run custos init or custos join)", dir)
	}
	return a.FederationID(), nil
}

// SignCommand gives c a fresh ID, the current time and signer, and signs it
// with k for the federation fid.
func SignCommand(k *keys.AdminKey, fid, signer string, c *policy.Command) (policy.Envelope, error) {
	PrepareCommand(c, signer)
	return SignPrepared(k, fid, c)
}

// PrepareCommand gives c a fresh ID, the current time and signer: what a
// passkey assertion over the command (policy.ApprovalChallenge) covers
// before the command is signed with SignPrepared.
func PrepareCommand(c *policy.Command, signer string) {
	c.ID, c.Time, c.Signer = policy.NewCommandID(), time.Now().UTC(), signer
}

// SignPrepared signs c, whose ID, time and signer PrepareCommand set, with k
// for the federation fid, keeping them.
func SignPrepared(k *keys.AdminKey, fid string, c *policy.Command) (policy.Envelope, error) {
	if fid == "" {
		return policy.Envelope{}, errors.New("node: sign: no federation ID")
	}
	if c.ID == "" || c.Time.IsZero() || c.Signer == "" {
		return policy.Envelope{}, errors.New("node: sign: the command has no ID, time or signer (PrepareCommand)")
	}
	body, err := policy.EncodeCommand(c)
	if err != nil {
		return policy.Envelope{}, err
	}
	sig, err := k.Sign(policy.SignedBytes(fid, body), c.Time)
	if err != nil {
		return policy.Envelope{}, err
	}
	return policy.Envelope{Body: body, Sig: sig}, nil
}

// ProposalLife is how long a proposal made by SubmitGoverned waits for its
// quorum.
const ProposalLife = 72 * time.Hour

// SubmitGoverned signs c as signer and submits it through the node in dir.
// In a sealed federation (st, the node's current policy) a governance change
// cannot be applied by one signature: it is submitted as a proposal that
// carries c, and the proposal's ID is returned for approvers to approve
// (custos approve ID).
func SubmitGoverned(ctx context.Context, dir string, st *policy.State, k *keys.AdminKey, signer string, c *policy.Command) (ApplyResult, string, error) {
	fid := st.FederationID
	if fid == "" {
		return ApplyResult{}, "", errors.New("node: the node has no federation state yet")
	}
	if st.Sealed() && st.IsGovernance(c) {
		proposal := "p-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
		env, err := signProposal(k, fid, signer, proposal, c)
		if err != nil {
			return ApplyResult{}, "", err
		}
		res, err := SubmitVia(ctx, dir, env)
		return res, proposal, err
	}
	env, err := SignCommand(k, fid, signer, c)
	if err != nil {
		return ApplyResult{}, "", err
	}
	res, err := SubmitVia(ctx, dir, env)
	return res, "", err
}

// signProposal signs proposal id carrying inner; the inner command gets an
// ID of its own and the proposal's signer and time, as the FSM requires.
func signProposal(k *keys.AdminKey, fid, signer, id string, inner *policy.Command) (policy.Envelope, error) {
	p := &policy.Command{ID: policy.NewCommandID(), Time: time.Now().UTC(), Signer: signer, Kind: policy.KindPropose}
	inner.ID, inner.Time, inner.Signer = policy.NewCommandID(), p.Time, signer
	innerBody, err := policy.EncodeCommand(inner)
	if err != nil {
		return policy.Envelope{}, err
	}
	p.Proposal = &policy.Proposal{ID: id, Body: innerBody, Expires: p.Time.Add(ProposalLife)}
	body, err := policy.EncodeCommand(p)
	if err != nil {
		return policy.Envelope{}, err
	}
	sig, err := k.Sign(policy.SignedBytes(fid, body), p.Time)
	if err != nil {
		return policy.Envelope{}, err
	}
	return policy.Envelope{Body: body, Sig: sig}, nil
}
