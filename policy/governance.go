package policy

// Governance under the quorum (DESIGN §4 invariant 11). A federation has two
// phases:
//
//   - Bootstrap, from genesis until quorum.seal: the founding admin is alone
//     and sets the federation up with single signatures — users, sites,
//     datacenters, the witness. Nothing recorded opens in this phase:
//     request.create is refused until the seal, because approvers chosen by
//     one person are one person.
//   - Sealed, from quorum.seal on: every change to who can approve,
//     administer, vote in Raft or hold key shares is a Proposal. It carries
//     the exact command, approvers sign its ProposalDigest (which names the
//     federation), and it executes when ApprovalThreshold approvals of
//     current approvers other than the proposer (and other than a user it
//     revokes) count at that moment — each checked by every replica, like a
//     footage request. The direct command is refused with a pointer to the
//     proposal.
//
// Sealing needs ApprovalThreshold+1 users who can approve (the proposer of
// any later change plus a quorum besides them), and sets the threshold
// (at least MinThreshold). It cannot be undone.
//
// Lock-out: when revocations or lost keys leave fewer than the threshold
// of approvers besides a proposer, a proposal may instead execute with the
// approval of every remaining approver (at least one) plus one rescue code:
// a random secret the sealing admin printed once and the controller keeps
// offline, of which only the SHA-256 is in the policy. A code works once
// (proposal.rescue reveals it, so it is spent), only while the lock-out
// lasts, and never alone: one rescue code and one approver are two people,
// as many as a quorum of one and never fewer than the rule it stands in for.
//
// Which changes are governance (IsGovernance): adding or revoking an admin
// or approver; adding or revoking a datacenter or witness (custodians and
// Raft voters) or any node with a custodian key; invites for datacenters or
// witnesses; changing the threshold; replacing the recovery key; setting
// how long audit entries are kept (auditretention.go); setting the alert
// rules (alerts.go); closing a breach without notifying the supervisory
// authority (breach.go); which roles approve with a passkey, enrolling an
// admin's or approver's passkey, and removing a passkey of one whose role
// requires it (passkey.go). Sites, cameras, stores, admin nodes, installers,
// grants and viewer, auditor or helpdesk users stay single-admin: none of
// them changes who can open footage or hold its keys (a grant gives live
// view or a right to request, and every request still needs the quorum).

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Governance command kinds.
const (
	KindSeal            = "quorum.seal"      // Seal: ends the bootstrap
	KindSetThreshold    = "quorum.set"       // Threshold: a new M (a proposal once sealed)
	KindSetRecovery     = "recovery.set"     // Recovery: a new recovery key (a proposal once sealed)
	KindPropose         = "proposal.create"  // Proposal: a governance command awaiting the quorum
	KindApproveProposal = "proposal.approve" // Approval of a proposal (Approval.Request is its ID)
	KindRescueProposal  = "proposal.rescue"  // Rescue: execute a proposal during a lock-out
)

const (
	// MinThreshold is the smallest quorum a federation may seal with.
	MinThreshold = 2
	// MaxThreshold bounds the quorum (and so the approvals kept).
	MaxThreshold = 16
	// MaxRescueCodes bounds the rescue codes a seal may register.
	MaxRescueCodes = 16
	// MaxProposalLife bounds how long a proposal waits for its quorum.
	MaxProposalLife = 7 * 24 * time.Hour
)

// Seal is the payload of quorum.seal.
type Seal struct {
	Threshold int `json:"threshold"`
	// Rescue are hex SHA-256 digests of the rescue codes (see the package
	// doc of governance); the codes themselves never enter the policy
	// until one is spent.
	Rescue []string `json:"rescue"`
}

// Proposal is a governance change waiting for its quorum. The caller fills
// ID, Body and Expires; Apply sets the rest.
type Proposal struct {
	ID string `json:"id"`
	// Body is the JSON of the Command to execute; its Signer and Time are
	// the proposal's own.
	Body     []byte    `json:"body"`
	Expires  time.Time `json:"expires"`
	Proposer string    `json:"proposer,omitempty"`
	Created  time.Time `json:"created,omitzero"`

	Approvals []Approval `json:"approvals,omitempty"`
	Executed  time.Time  `json:"executed,omitzero"`
	Rescued   bool       `json:"rescued,omitempty"` // executed with a rescue code
}

// Rescue is the payload of proposal.rescue.
type Rescue struct {
	Proposal string `json:"proposal"`
	Digest   string `json:"digest"`
	Code     string `json:"code"` // 64 hex digits; its SHA-256 is one of Seal.Rescue
}

// Proposal statuses.
const (
	ProposalPending  = "pending"
	ProposalExecuted = "executed"
	ProposalExpired  = "expired"
)

// ErrNeedsQuorum is wrapped in the refusal of a governance command sent
// directly to a sealed federation.
var ErrNeedsQuorum = errors.New("needs the quorum's approval")

// ApprovalFor is the approval of exactly what s holds under id, a proposal
// or a request, without ID, time or signer: the one definition of what an
// approver signs, shared by the CLI and the console.
func (s *State) ApprovalFor(id string) (*Command, error) {
	if p := s.Proposals[id]; p != nil {
		return &Command{Kind: KindApproveProposal, Approval: &Approval{Request: id, Digest: ProposalDigest(s.FederationID, p)}}, nil
	}
	if r := s.Requests[id]; r != nil {
		return &Command{Kind: KindApproveRequest, Approval: &Approval{Request: id, Digest: RequestDigest(s.FederationID, r)}}, nil
	}
	return nil, fmt.Errorf("no request or proposal %q", id)
}

const proposalDomain = "custos/proposal/v1\x00"

// ProposalDigest is what approvers sign: the federation, the proposal's ID,
// proposer, creation and expiry, and the exact command bytes.
func ProposalDigest(federation string, p *Proposal) string {
	h := sha256.New()
	h.Write([]byte(proposalDomain))
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	tm := func(t time.Time) {
		b := binary.BigEndian.AppendUint64(nil, uint64(t.Unix()))
		h.Write(binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond())))
	}
	field([]byte(federation))
	field([]byte(p.ID))
	field([]byte(p.Proposer))
	field(p.Body)
	tm(p.Created)
	tm(p.Expires)
	return hex.EncodeToString(h.Sum(nil))
}

// RescueDigest is the hex SHA-256 of a rescue code's bytes, as Seal keeps it.
func RescueDigest(code []byte) string {
	h := sha256.Sum256(append([]byte("custos/rescue/v1\x00"), code...))
	return hex.EncodeToString(h[:])
}

// Sealed reports whether the bootstrap is over.
func (s *State) Sealed() bool { return !s.SealedAt.IsZero() }

// IsGovernance reports whether c changes who can approve, administer, vote
// or hold key shares — or how long the audit trail of what they did is kept,
// or the alarms that watch it (auditretention.go and alerts.go say why) —
// and so needs the quorum once the federation is sealed.
func (s *State) IsGovernance(c *Command) bool {
	switch c.Kind {
	case KindSetThreshold, KindSetRecovery, KindSetAuditRetention, KindSetAlertRules, KindRequirePasskeys:
		return true
	case KindAddPasskey:
		// A passkey approves: a stolen key file must not enrol its
		// thief's (passkey.go).
		u := s.passkeyUser(c)
		return u != nil && powerful(u.Role)
	case KindRemovePasskey:
		// While the role requires passkeys, an approval counts only with
		// a passkey still enrolled: removing any of them withdraws
		// approvals, which a stolen key file must not do alone.
		u := s.passkeyUser(c)
		return u != nil && powerful(u.Role) && s.PasskeyRequired(u.Role)
	case KindAddUser:
		return c.User != nil && powerful(c.User.Role)
	case KindRevokeUser:
		u := s.Users[c.Name]
		return u != nil && powerful(u.Role)
	case KindAddNode:
		return c.Node != nil && (trustedNode(c.Node.Role) || c.Node.Custodian != nil)
	case KindRevokeNode:
		n := s.Nodes[c.Name]
		return n != nil && (trustedNode(n.Role) || n.Custodian != nil)
	case KindCreateInvite:
		return c.Invite != nil && trustedNode(c.Invite.Role)
	case KindCloseBreach:
		// Closing a breach the authority was never told of stops its
		// 72-hour clock for good: one admin must not be able to bury a
		// breach alone. (A reason not to notify is refused on a breach
		// that was notified, so the payload says which case it is.)
		return c.BreachClosure != nil && c.BreachClosure.NotNotifiedReason != ""
	}
	return false
}

// powerful roles approve footage requests and governance changes.
func powerful(r UserRole) bool { return r == UserAdmin || r == UserApprover }

// trustedNode roles vote in Raft and hold key shares and replicas.
func trustedNode(r NodeRole) bool { return r == RoleDatacenter || r == RoleWitness }

// approvers returns the current users who may approve at now, sorted: a
// user whose role approves with a passkey only once they have one.
func (s *State) approvers(now time.Time) []string { return s.approversUnder(s.PasskeyRoles, now) }

// approversUnder is approvers as if the roles in required approved with a
// passkey.
func (s *State) approversUnder(required []UserRole, now time.Time) []string {
	var out []string
	for name, u := range s.Users {
		if Authorize(s, Subject{Kind: "user", Name: name}, ActApprove, "", now).Allow && canApprove(u, required) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Approvers returns the users who may approve requests and proposals at now.
func (s *State) Approvers(now time.Time) []string { return s.approvers(now) }

func (s *State) planSeal(p *Seal, c *Command) (func(), error) {
	if p == nil {
		return nil, errors.New("no seal payload")
	}
	if s.Sealed() {
		return nil, fmt.Errorf("the federation was sealed at %s; governance changes are proposals now", stamp(s.SealedAt))
	}
	m := p.Threshold
	if m == 0 {
		m = s.ApprovalThreshold()
	}
	if m < MinThreshold || m > MaxThreshold {
		return nil, fmt.Errorf("threshold %d: want %d to %d approvals", m, MinThreshold, MaxThreshold)
	}
	if n := len(s.approvers(c.Time)); n < m+1 {
		return nil, fmt.Errorf("sealing with a quorum of %d needs at least %d users who can approve (admins or approvers: a proposer and %d others); the federation has %d",
			m, m+1, m, n)
	}
	if len(p.Rescue) > MaxRescueCodes {
		return nil, fmt.Errorf("%d rescue codes: at most %d", len(p.Rescue), MaxRescueCodes)
	}
	for i, d := range p.Rescue {
		if b, err := hex.DecodeString(d); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != d {
			return nil, fmt.Errorf("rescue digest %d: want 64 lower-case hex digits", i+1)
		}
		if slices.Contains(p.Rescue[:i], d) {
			return nil, fmt.Errorf("rescue digest %d repeats another", i+1)
		}
	}
	rescue := slices.Clone(p.Rescue)
	return func() {
		s.SealedAt, s.Threshold, s.Rescue = c.Time, m, rescue
	}, nil
}

func (s *State) planPropose(p *Proposal, c *Command) (func(), error) {
	if p == nil {
		return nil, errors.New("no proposal")
	}
	if !s.Sealed() {
		return nil, errors.New("the federation is not sealed yet: make the change directly (proposals start at quorum.seal)")
	}
	if err := validName(p.ID); err != nil {
		return nil, fmt.Errorf("proposal id: %w", err)
	}
	if s.Proposals[p.ID] != nil {
		return nil, fmt.Errorf("proposal %q exists", p.ID)
	}
	if p.Proposer != "" || !p.Created.IsZero() || len(p.Approvals) > 0 || !p.Executed.IsZero() || p.Rescued {
		return nil, errors.New("a new proposal carries only its id, body and expiry")
	}
	switch {
	case !p.Expires.After(c.Time):
		return nil, fmt.Errorf("proposal %q expires at %s, not after the command's time", p.ID, stamp(p.Expires))
	case p.Expires.Sub(c.Time) > MaxProposalLife:
		return nil, fmt.Errorf("proposal %q expires %v after it is made; at most %v", p.ID, p.Expires.Sub(c.Time), MaxProposalLife)
	}
	inner, err := s.proposedCommand(p.Body, c)
	if err != nil {
		return nil, fmt.Errorf("proposal %q: %w", p.ID, err)
	}
	if !s.IsGovernance(inner) {
		return nil, fmt.Errorf("proposal %q: %s of this kind is not a governance change; submit it directly", p.ID, inner.Kind)
	}
	// Check it now, so a proposal that cannot run is refused before
	// anyone approves it (it is checked again when it executes).
	if _, err := s.plan(inner); err != nil {
		return nil, fmt.Errorf("proposal %q: %s: %w", p.ID, inner.Kind, err)
	}
	np := Proposal{ID: p.ID, Body: slices.Clone(p.Body), Expires: p.Expires, Proposer: c.Signer, Created: c.Time}
	return func() { s.Proposals[np.ID] = &np }, nil
}

// proposedCommand decodes a proposal's body: a command of the proposer, at
// the proposal's time, with an ID of its own never applied.
func (s *State) proposedCommand(body []byte, outer *Command) (*Command, error) {
	inner, err := DecodeCommand(body)
	if err != nil {
		return nil, err
	}
	switch {
	case inner.Signer != outer.Signer:
		return nil, fmt.Errorf("the proposed command names signer %q, not the proposer %q", inner.Signer, outer.Signer)
	case !inner.Time.Equal(outer.Time):
		return nil, errors.New("the proposed command's time is not the proposal's")
	case inner.ID == outer.ID || validName(inner.ID) != nil:
		return nil, errors.New("the proposed command needs an id of its own")
	case inner.Kind == KindPropose || inner.Kind == KindApproveProposal || inner.Kind == KindRescueProposal || inner.Kind == KindGenesis:
		return nil, fmt.Errorf("%s cannot be proposed", inner.Kind)
	}
	if _, seen := s.Seen[inner.ID]; seen {
		return nil, fmt.Errorf("the proposed command's id %s was already applied", inner.ID)
	}
	return inner, nil
}

// ProposalStatus is p's status at now.
func (s *State) ProposalStatus(p *Proposal, now time.Time) string {
	switch {
	case !p.Executed.IsZero():
		return ProposalExecuted
	case !now.Before(p.Expires):
		return ProposalExpired
	}
	return ProposalPending
}

// proposalExcluded are the users whose approval of p never counts: its
// proposer, and a user it revokes (revoking someone never needs them).
func (s *State) proposalExcluded(p *Proposal, inner *Command) []string {
	ex := []string{p.Proposer}
	if inner.Kind == KindRevokeUser {
		ex = append(ex, inner.Name)
	}
	return ex
}

// pendingProposal returns proposal id and its command if it can still be
// approved, rescued and executed at the command c.
func (s *State) pendingProposal(id, digest string, c *Command) (*Proposal, *Command, error) {
	p := s.Proposals[id]
	if p == nil {
		return nil, nil, fmt.Errorf("no proposal %q", id)
	}
	switch s.ProposalStatus(p, s.later(c.Time)) {
	case ProposalExecuted:
		return nil, nil, fmt.Errorf("proposal %q was already executed", id)
	case ProposalExpired:
		return nil, nil, fmt.Errorf("proposal %q expired at %s", id, stamp(p.Expires))
	}
	if want := ProposalDigest(s.FederationID, p); digest != want {
		return nil, nil, fmt.Errorf("names digest %q, but proposal %q's is %s: the proposal reviewed is not the one in the policy", digest, id, want)
	}
	if c.Time.Before(p.Created) {
		return nil, nil, fmt.Errorf("command time %s is before proposal %q was made", stamp(c.Time), id)
	}
	inner, err := DecodeCommand(p.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("proposal %q: %w", id, err)
	}
	return p, inner, nil
}

func (s *State) planApproveProposal(a *Approval, c *Command) (func(), error) {
	if a == nil {
		return nil, errors.New("no approval")
	}
	if (a.User != "" && a.User != c.Signer) || (!a.Time.IsZero() && !a.Time.Equal(c.Time)) ||
		(a.Key != "" && a.Key != s.Users[c.Signer].Fingerprint) {
		return nil, errors.New("an approval's user, time and key are its command's")
	}
	p, inner, err := s.pendingProposal(a.Request, a.Digest, c)
	if err != nil {
		return nil, err
	}
	excluded := s.proposalExcluded(p, inner)
	switch {
	case c.Signer == p.Proposer:
		return nil, fmt.Errorf("%q proposed %q and cannot approve it: approvers are never the proposer", c.Signer, p.ID)
	case slices.Contains(excluded, c.Signer):
		return nil, fmt.Errorf("%q is the subject of proposal %q and cannot approve it", c.Signer, p.ID)
	case slices.ContainsFunc(p.Approvals, func(o Approval) bool { return o.User == c.Signer }):
		return nil, fmt.Errorf("%q already approved proposal %q", c.Signer, p.ID)
	}
	passkey, counter, err := s.checkApprovalPasskey(c)
	if err != nil {
		return nil, fmt.Errorf("approving proposal %q: %w", p.ID, err)
	}
	na := Approval{Request: p.ID, Digest: a.Digest, User: c.Signer, Time: c.Time, Key: s.Users[c.Signer].Fingerprint, Passkey: passkey}
	approvals := append(cloneApprovals(p.Approvals), na)
	if s.CountApprovals(approvals, s.later(c.Time), excluded...) < s.ApprovalThreshold() {
		return func() {
			counter()
			p.Approvals = approvals
		}, nil
	}
	run, err := s.plan(inner)
	if err != nil {
		return nil, fmt.Errorf("proposal %q has its quorum but its %s cannot run now: %w", p.ID, inner.Kind, err)
	}
	return func() {
		counter()
		p.Approvals, p.Executed = approvals, c.Time
		run()
		s.remember(inner)
	}, nil
}

// planRescue executes a proposal during a lock-out: fewer than the
// threshold of approvers remain besides those excluded, every one of them
// approved, and the code is an unspent rescue code.
func (s *State) planRescue(r *Rescue, c *Command) (func(), error) {
	if r == nil {
		return nil, errors.New("no rescue payload")
	}
	p, inner, err := s.pendingProposal(r.Proposal, r.Digest, c)
	if err != nil {
		return nil, err
	}
	code, err := hex.DecodeString(r.Code)
	if err != nil || len(code) != 32 {
		return nil, errors.New("a rescue code is 64 hex digits")
	}
	digest := RescueDigest(code)
	i := slices.IndexFunc(s.Rescue, func(d string) bool { return subtle.ConstantTimeCompare([]byte(d), []byte(digest)) == 1 })
	if i < 0 {
		return nil, errors.New("not a rescue code of this federation, or one already spent")
	}
	at := s.later(c.Time)
	excluded := s.proposalExcluded(p, inner)
	var remaining []string
	for _, u := range s.approvers(at) {
		if !slices.Contains(excluded, u) {
			remaining = append(remaining, u)
		}
	}
	switch {
	case len(remaining) >= s.ApprovalThreshold():
		return nil, fmt.Errorf("no lock-out: %d approvers besides the proposer can approve (quorum %d); ask them", len(remaining), s.ApprovalThreshold())
	case len(remaining) == 0:
		return nil, errors.New("no approver remains besides the proposer: a rescue code never acts alone")
	case s.CountApprovals(p.Approvals, at, excluded...) < len(remaining):
		return nil, fmt.Errorf("a rescue needs the approval of every remaining approver (%v) first", remaining)
	}
	run, err := s.plan(inner)
	if err != nil {
		return nil, fmt.Errorf("proposal %q: its %s cannot run now: %w", p.ID, inner.Kind, err)
	}
	return func() {
		s.Rescue = slices.Delete(slices.Clone(s.Rescue), i, i+1)
		p.Executed, p.Rescued = c.Time, true
		run()
		s.remember(inner)
	}, nil
}

func (s *State) planSetThreshold(m int, c *Command) (func(), error) {
	if m < MinThreshold || m > MaxThreshold {
		return nil, fmt.Errorf("threshold %d: want %d to %d approvals", m, MinThreshold, MaxThreshold)
	}
	if n := len(s.approvers(s.later(c.Time))); s.Sealed() && n < m+1 {
		return nil, fmt.Errorf("a quorum of %d needs at least %d users who can approve; the federation has %d", m, m+1, n)
	}
	return func() { s.Threshold = m }, nil
}

func (s *State) planSetRecovery(pub []byte) (func(), error) {
	if err := checkCustodianKey(pub); err != nil {
		return nil, fmt.Errorf("recovery key: %w", err)
	}
	k := slices.Clone(pub)
	return func() { s.Recovery = k }, nil
}

// pruneProposals drops proposals a replay window after they expired or ran.
func (s *State) pruneProposals() {
	for id, p := range s.Proposals {
		end := p.Expires
		if !p.Executed.IsZero() {
			end = p.Executed
		}
		if s.Clock.Sub(end) > ReplayWindow {
			delete(s.Proposals, id)
		}
	}
}

// Describe is one line saying what a governance command does, for the
// people who approve it: whose user, node, invite or passkey, and the
// passkey's name, RP ID and credential ID.
func (c *Command) Describe() string {
	if c == nil {
		return "?"
	}
	switch {
	case c.User != nil:
		return fmt.Sprintf("%s %s (role %s, key %s)", c.Kind, c.User.Name, c.User.Role, c.User.Fingerprint)
	case c.Node != nil:
		return fmt.Sprintf("%s %s (role %s)", c.Kind, c.Node.Name, c.Node.Role)
	case c.Invite != nil:
		return fmt.Sprintf("%s for %s %s", c.Kind, c.Invite.Role, c.Invite.Name)
	case c.Kind == KindSetThreshold:
		return fmt.Sprintf("%s to %d", c.Kind, c.Threshold)
	case c.PasskeyChange != nil && c.PasskeyChange.Passkey != nil:
		p := c.PasskeyChange.Passkey
		return fmt.Sprintf("%s for %s: %q (RP ID %s, id %s)", c.Kind, c.PasskeyChange.User, p.Name, p.RPID, PasskeyIDText(p.ID))
	case c.PasskeyChange != nil:
		return fmt.Sprintf("%s of %s: id %s", c.Kind, c.PasskeyChange.User, PasskeyIDText(c.PasskeyChange.ID))
	case c.PasskeyRequirement != nil:
		return fmt.Sprintf("%s of roles %v", c.Kind, c.PasskeyRequirement.Roles)
	case c.Name != "":
		return c.Kind + " " + c.Name
	}
	return c.Kind
}
