package policy

// The ledger: evidence a verifier can check without trusting any node.
//
// The state keeps, in order, the signed envelopes of genesis and of every
// command that decides who may approve, administer, vote or hold key
// shares (IsGovernance, the seal, proposals and their approvals and
// rescues, and redeemed invites of datacenters and witnesses), and each
// request keeps the signed envelopes of its approvals (Request.Evidence).
// Replayed through Apply from an empty state, the ledger rebuilds exactly
// the users, their roles and keys, the trusted nodes, the threshold, the
// recovery key and the audit retention — every signature checked again, anchored in the genesis
// whose FederationID the verifier knows. VerifyRelease then counts a
// request's approvals against that state. The recovery key's holder uses
// it so that a compromised node cannot feed them a forged policy.
//
// What a node can still do is withhold: serve a ledger cut short (hiding a
// later revocation) or hide a denial. The ledger is small — governance
// changes are rare — and is never pruned.

import (
	"errors"
	"fmt"
	"time"
)

// keepsEnvelope reports whether c's envelope belongs in the ledger; it is
// asked before c changes the state (a revocation's subject is looked up).
func (s *State) keepsEnvelope(c *Command) bool {
	switch c.Kind {
	case KindGenesis, KindSeal, KindPropose, KindApproveProposal, KindRescueProposal:
		return true
	case KindRedeemInvite:
		inv := s.Invites[c.Redeem.Invite]
		return inv != nil && trustedNode(inv.Role)
	case KindAddPasskey, KindRemovePasskey:
		// An approver's passkeys decide which of their approvals count:
		// the replayed ledger must hold them to check the assertions.
		u := s.passkeyUser(c)
		return u != nil && powerful(u.Role)
	}
	return s.IsGovernance(c)
}

// keepEnvelope records env after c was applied: in the ledger if kept, and
// as evidence in the request an approval approves.
func (s *State) keepEnvelope(c *Command, env Envelope, kept bool) {
	if kept {
		s.Ledger = append(s.Ledger, env)
	}
	if c.Kind == KindApproveRequest {
		if r := s.Requests[c.Approval.Request]; r != nil {
			r.Evidence = append(r.Evidence, env)
		}
	}
}

// ErrUnverified wraps every VerifyRelease failure.
var ErrUnverified = errors.New("policy: release not proven")

// VerifyRelease checks, trusting nothing but the federation ID fid, that r
// is approved at now: ledger replays from a genesis of federation fid into
// a sealed state, and r's evidence holds valid signatures of at least the
// threshold of approvers current in that state, other than r's requester,
// over r's digest. It returns the replayed state (users, trusted nodes,
// threshold, recovery key), whose every entry was verified.
func VerifyRelease(fid string, ledger []Envelope, r *Request, now time.Time) (*State, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no request", ErrUnverified)
	}
	if r.Action != ActionView {
		return nil, fmt.Errorf("%w: request %q is %s: it releases no keys", ErrUnverified, r.ID, actionNoun(r.Action))
	}
	var v State
	for i, env := range ledger {
		if _, err := v.Apply(env); err != nil {
			return nil, fmt.Errorf("%w: ledger entry %d does not replay: %v", ErrUnverified, i+1, err)
		}
	}
	switch {
	case v.FederationID != fid:
		return nil, fmt.Errorf("%w: the ledger founds federation %q, not %q", ErrUnverified, v.FederationID, fid)
	case !v.Sealed():
		return nil, fmt.Errorf("%w: the federation's ledger is not sealed", ErrUnverified)
	case !now.Before(r.Expires):
		return nil, fmt.Errorf("%w: request %q expired at %s", ErrUnverified, r.ID, stamp(r.Expires))
	}
	digest := RequestDigest(fid, r)
	var approvals []Approval
	for i, env := range r.Evidence {
		a, err := v.checkEvidence(fid, env, r, digest)
		if err != nil {
			return nil, fmt.Errorf("%w: approval %d of request %q: %v", ErrUnverified, i+1, r.ID, err)
		}
		approvals = append(approvals, a)
	}
	if n := v.CountApprovals(approvals, now, r.Requester); n < v.ApprovalThreshold() {
		return nil, fmt.Errorf("%w: request %q has %d valid approvals of current approvers besides its requester; it needs %d",
			ErrUnverified, r.ID, n, v.ApprovalThreshold())
	}
	return &v, nil
}

// checkEvidence verifies one approval envelope of r against the replayed
// state's keys.
func (s *State) checkEvidence(fid string, env Envelope, r *Request, digest string) (Approval, error) {
	c, err := DecodeCommand(env.Body)
	if err != nil {
		return Approval{}, err
	}
	if c.Kind != KindApproveRequest || c.Approval == nil || c.Approval.Request != r.ID || c.Approval.Digest != digest {
		return Approval{}, errors.New("it is not an approval of this request's digest")
	}
	u := s.Users[c.Signer]
	if u == nil {
		return Approval{}, fmt.Errorf("its signer %q is not in the ledger", c.Signer)
	}
	fp, err := VerifySignature(u.PublicKey, SignedBytes(fid, env.Body), env.Sig, c.Time)
	if err != nil || fp != u.Fingerprint {
		return Approval{}, fmt.Errorf("signature of %q does not verify: %v", c.Signer, err)
	}
	a := Approval{Request: r.ID, Digest: digest, User: c.Signer, Time: c.Time, Key: fp}
	if as := c.Approval.Assertion; as != nil {
		// The counter was checked in the log's order by Apply; evidence
		// is checked on its own.
		i, _, err := s.verifyAssertion(u, as, ApprovalChallenge(fid, c), false)
		if err != nil {
			return Approval{}, fmt.Errorf("passkey assertion of %q: %v", c.Signer, err)
		}
		a.Passkey = PasskeyIDText(u.Passkeys[i].ID)
	}
	return a, nil
}
