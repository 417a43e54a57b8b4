package policy

// Footage requests (DESIGN §7, invariant 4). Recorded footage is decrypted
// only under a request that the policy has approved:
//
//   - request.create: a user files a Request (cameras, a past footage range,
//     purpose, legal basis, the public half of a one-time X25519 key made in
//     their memory, the node that holds it, an expiry). Apply fixes who made
//     it (the signer), when (the command's time) and which cameras it names
//     (those its selector matches then), so that the approvers approve a
//     scope nobody can widen later.
//   - request.approve: an admin or approver, never the requester, approves
//     the request whose RequestDigest they name. The digest covers every
//     immutable field, so an approval signs exactly what the approver saw.
//   - request.deny: the same people may deny it, with a reason. One denial
//     is a veto: the request is denied for good, whatever its approvals.
//
// The request is approved when it holds ApprovalThreshold approvals;
// custodians then release their shares for the epochs in scope to its
// one-time key, and only until it expires (ReleasableRequest,
// RequestCovers). Each replica checks every signature in Apply, so a
// compromised leader cannot forge an approval.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultThreshold is how many approvals a request needs when
	// State.Threshold is 0: two people besides the requester.
	DefaultThreshold = 2
	// MaxRequestSpan bounds a request's footage range: a day is enough for
	// any incident, and a longer range is one request per day, each
	// approved on its own.
	MaxRequestSpan = 24 * time.Hour
	// MaxRequestLife bounds how long a request (and the keys released to
	// it) may live.
	MaxRequestLife = 7 * 24 * time.Hour
	// MaxRequestText bounds a purpose, legal basis or denial reason, in
	// bytes.
	MaxRequestText = 1024
)

// Status of a request, as RequestStatus reports it.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	RequestExpired  = "expired"
)

// ErrNotReleasable is wrapped by every ReleasableRequest error.
var ErrNotReleasable = errors.New("policy: request not releasable")

// Request asks for recorded footage. The caller fills ID, Action, Node,
// Selector, From, To, Purpose, Basis, Key, Expires and, for a hold, Until;
// Apply sets the rest (a payload may carry Requester, Cameras or Created
// only if they equal what Apply would set).
type Request struct {
	ID string `json:"id"`
	// Action is what approval does with the footage: ActionView (empty:
	// release keys for viewing and export), ActionErase or ActionHold
	// (rights.go).
	Action    string `json:"action,omitempty"`
	Requester string `json:"requester,omitempty"` // the signer of request.create
	// Node is the node where the requester's one-time key lives; the
	// custodians deliver the shares there.
	Node     string `json:"node"`
	Selector string `json:"selector"` // as a grant's: "site/cam", "site/*", "tag:name", "*"
	// Cameras are the cameras ("site/name", sorted) that Selector matched
	// when the request was made: the scope can only shrink afterwards.
	Cameras []string  `json:"cameras,omitempty"`
	From    time.Time `json:"from"` // footage range [From, To)
	To      time.Time `json:"to"`
	Purpose string    `json:"purpose"`
	Basis   string    `json:"basis"` // legal basis, e.g. "art. 6(1)(f): theft on 2026-11-26"
	// Key is the requester's one-time X25519 public key, 64 lower-case
	// hex digits.
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
	Created time.Time `json:"created,omitzero"` // the command's time
	// Until is when a hold ends; only a hold has one.
	Until time.Time `json:"until,omitzero"`

	// Kept by Apply.
	Approvals []Approval `json:"approvals,omitempty"`
	// Evidence are the signed envelopes of the approvals, in order, so a
	// verifier can check them without trusting the node that serves them
	// (VerifyRelease).
	Evidence   []Envelope `json:"evidence,omitempty"`
	Denials    []Denial   `json:"denials,omitempty"`
	ApprovedAt time.Time  `json:"approved_at,omitzero"` // when the last approval needed came
}

// Approval is the payload of request.approve and, with User and Time set by
// Apply, its record in the request.
type Approval struct {
	Request string    `json:"request"`
	Digest  string    `json:"digest"` // RequestDigest of the request approved
	User    string    `json:"user,omitempty"`
	Time    time.Time `json:"time,omitzero"`
	// Key is the approver's key fingerprint when they approved: the
	// approval counts only while that user is current with that key.
	Key string `json:"key,omitempty"`
	// Assertion is the approver's WebAuthn assertion over
	// ApprovalChallenge of the command (passkey.go); only the command
	// carries it, and its envelope keeps it as evidence.
	Assertion *Assertion `json:"assertion,omitempty"`
	// Passkey is the credential ID (PasskeyIDText) of the passkey the
	// approval was made with; Apply sets it from the assertion.
	Passkey string `json:"passkey,omitempty"`
}

// Denial is the payload of request.deny and, with User and Time set by
// Apply, its record in the request.
type Denial struct {
	Request string    `json:"request"`
	Reason  string    `json:"reason"`
	User    string    `json:"user,omitempty"`
	Time    time.Time `json:"time,omitzero"`
}

// requestDomain separates request digests from any other hash.
const requestDomain = "custos/request/v2\x00"

// RequestDigest is the hex SHA-256 of the federation's ID and r's immutable fields in a canonical,
// length-prefixed encoding; an approval names it, so it approves exactly
// this request (a request re-created under the same ID after pruning has
// another Created, hence another digest).
func RequestDigest(federation string, r *Request) string {
	h := sha256.New()
	h.Write([]byte(requestDomain))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(federation))))
	h.Write([]byte(federation))
	str := func(s string) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	tm := func(t time.Time) { // instant only: the zone is not part of it
		b := binary.BigEndian.AppendUint64(nil, uint64(t.Unix()))
		h.Write(binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond())))
	}
	str(r.ID)
	str(r.Requester)
	str(r.Node)
	str(r.Selector)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(r.Cameras))))
	for _, c := range r.Cameras {
		str(c)
	}
	tm(r.From)
	tm(r.To)
	str(r.Purpose)
	str(r.Basis)
	str(r.Key)
	tm(r.Expires)
	tm(r.Created)
	// Added for erase and hold: written only when set, so that the digest
	// of a view request (which approvals already signed) stays what it
	// was. Each is tagged, so neither can pass for the other.
	if r.Action != ActionView {
		h.Write([]byte{'a'})
		str(r.Action)
	}
	if !r.Until.IsZero() {
		h.Write([]byte{'u'})
		tm(r.Until)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RequestStatus is r's status at now. Expired wins over everything, then a
// denial (a veto), then enough approvals that still count (CountApprovals).
// An erasure or hold once approved is decided for good (its ApprovedAt):
// an erasure has happened and stays approved, a hold is approved until its
// Until and expired from then on. r must not be nil.
func (s *State) RequestStatus(r *Request, now time.Time) string {
	if r.Action != ActionView && !r.ApprovedAt.IsZero() {
		if r.Action == ActionHold && !now.Before(r.Until) {
			return RequestExpired
		}
		return RequestApproved
	}
	switch {
	case !now.Before(r.Expires):
		return RequestExpired
	case len(r.Denials) > 0:
		return RequestDenied
	case s.CountApprovals(r.Approvals, now, r.Requester) >= s.ApprovalThreshold():
		return RequestApproved
	}
	return RequestPending
}

// CountApprovals counts the distinct approvers in as whose approval still
// counts at now: a current user who may approve (role admin or approver,
// not revoked) with the same key as when they approved, and none of
// excluded (a requester, a proposer, the subject of a revocation). An
// approval by someone revoked or demoted since stops counting.
func (s *State) CountApprovals(as []Approval, now time.Time, excluded ...string) int {
	seen := map[string]bool{}
	for _, a := range as {
		u := s.Users[a.User]
		if u == nil || seen[a.User] || slices.Contains(excluded, a.User) || u.Fingerprint != a.Key || !s.passkeyCounts(u, a) {
			continue
		}
		if !Authorize(s, Subject{Kind: "user", Name: a.User}, ActApprove, "", now).Allow {
			continue
		}
		seen[a.User] = true
	}
	return len(seen)
}

// ApprovalThreshold is how many approvals a request needs: State.Threshold,
// or DefaultThreshold when that is not set.
func (s *State) ApprovalThreshold() int {
	if s.Threshold <= 0 {
		return DefaultThreshold
	}
	return s.Threshold
}

// ReleasableRequest returns a copy of request id if custodians may release
// keys to it at now: approved, not expired, its requester still a user and
// its node still a member. Otherwise the error (wrapping ErrNotReleasable)
// says why.
func (s *State) ReleasableRequest(id string, now time.Time) (*Request, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: no policy", ErrNotReleasable)
	}
	r := s.Requests[id]
	if r == nil {
		return nil, fmt.Errorf("%w: no request %q", ErrNotReleasable, id)
	}
	if r.Action != ActionView {
		return nil, fmt.Errorf("%w: request %q is %s: it releases no keys", ErrNotReleasable, id, actionNoun(r.Action))
	}
	switch s.RequestStatus(r, now) {
	case RequestPending:
		return nil, fmt.Errorf("%w: request %q is pending (%d of %d approvals); an approval counts only while its approver is current",
			ErrNotReleasable, id, s.CountApprovals(r.Approvals, now, r.Requester), s.ApprovalThreshold())
	case RequestDenied:
		d := r.Denials[0]
		return nil, fmt.Errorf("%w: request %q was denied by %s: %s", ErrNotReleasable, id, d.User, d.Reason)
	case RequestExpired:
		return nil, fmt.Errorf("%w: request %q expired at %s", ErrNotReleasable, id, stamp(r.Expires))
	}
	if u := s.Users[r.Requester]; u == nil || u.Revoked {
		return nil, fmt.Errorf("%w: request %q: its requester %q is revoked", ErrNotReleasable, id, r.Requester)
	}
	if !Member(s, r.Node, now) {
		return nil, fmt.Errorf("%w: request %q: its node %q is not a live member", ErrNotReleasable, id, r.Node)
	}
	c := cloneRequest(*r)
	return &c, nil
}

// RequestCovers reports whether r's scope includes footage of camera
// ("site/name") in [from, to): the camera was named when r was made, r's
// selector still matches it (a camera no longer in the state matches by
// name — "*", "site/*", "site/cam" — never by tag) and the spans overlap.
// It does not check r's status: see ReleasableRequest. An erase or hold
// request covers nothing: it opens no footage (see Erased and HoldOn).
func (s *State) RequestCovers(r *Request, camera string, from, to time.Time) bool {
	if s == nil || r == nil || r.Action != ActionView || !slices.Contains(r.Cameras, camera) {
		return false
	}
	c := s.Cameras[camera]
	if c == nil {
		site, name, _ := strings.Cut(camera, "/")
		c = &Camera{Site: site, Name: name} // no tags: it has none any more
	}
	if !SelectorMatches(r.Selector, c) {
		return false
	}
	_, _, ok := r.Clip(from, to)
	return ok
}

// Clip returns [from, to) ∩ [r.From, r.To), and false if that is empty.
func (r *Request) Clip(from, to time.Time) (time.Time, time.Time, bool) {
	if from.Before(r.From) {
		from = r.From
	}
	if to.After(r.To) {
		to = r.To
	}
	return from, to, from.Before(to)
}

func (r *Request) decidedBy(user string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.User == user }) ||
		slices.ContainsFunc(r.Denials, func(d Denial) bool { return d.User == user })
}

// pruneRequests drops requests expired for more than ReplayWindow by the
// state's clock, so the state does not grow forever. It runs after every
// applied command, so every replica prunes alike. An approved erasure is a
// tombstone and stays for good: a datacenter back from offline, or a store
// restored from a backup, must still learn that its copies are erased. An
// approved hold stays until a replay window after it ends.
func (s *State) pruneRequests() {
	for id, r := range s.Requests {
		end := r.Expires
		if !r.ApprovedAt.IsZero() {
			switch r.Action {
			case ActionErase:
				continue
			case ActionHold:
				if r.Until.After(end) {
					end = r.Until
				}
			}
		}
		if s.Clock.Sub(end) > ReplayWindow {
			delete(s.Requests, id)
		}
	}
}

// later returns the later of t and the state's clock.
func (s *State) later(t time.Time) time.Time {
	if s.Clock.After(t) {
		return s.Clock
	}
	return t
}

func cloneRequest(r Request) Request {
	r.Cameras = slices.Clone(r.Cameras)
	r.Approvals = cloneApprovals(r.Approvals)
	r.Evidence = cloneEnvelopes(r.Evidence)
	r.Denials = slices.Clone(r.Denials)
	return r
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
