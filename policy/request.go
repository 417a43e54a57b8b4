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
	"sort"
	"strings"
	"time"
	"unicode"
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

// Request asks for recorded footage. The caller fills ID, Node, Selector,
// From, To, Purpose, Basis, Key and Expires; Apply sets the rest (a
// payload may carry Requester, Cameras or Created only if they equal what
// Apply would set).
type Request struct {
	ID        string `json:"id"`
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
	return hex.EncodeToString(h.Sum(nil))
}

// RequestStatus is r's status at now. Expired wins over everything, then a
// denial (a veto), then enough approvals that still count (CountApprovals).
// r must not be nil.
func (s *State) RequestStatus(r *Request, now time.Time) string {
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
		if u == nil || seen[a.User] || slices.Contains(excluded, a.User) || u.Fingerprint != a.Key {
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
// It does not check r's status: see ReleasableRequest.
func (s *State) RequestCovers(r *Request, camera string, from, to time.Time) bool {
	if s == nil || r == nil || !slices.Contains(r.Cameras, camera) {
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

// roleMaySign checks the signer's role for the command: deciding a request
// needs the approve duty (admin or approver), anyone may file one (planRequest
// checks that they may export what it names), and everything else changes
// the policy and needs role admin.
func (s *State) roleMaySign(c *Command, u *User) error {
	switch c.Kind {
	case KindCreateRequest:
		return nil
	case KindApproveRequest, KindDenyRequest, KindPropose, KindApproveProposal, KindRescueProposal:
		if d := Authorize(s, Subject{Kind: "user", Name: u.Name}, ActApprove, "", c.Time); !d.Allow {
			return fmt.Errorf("signer %q has role %s; deciding a request or a proposal needs role admin or approver", u.Name, u.Role)
		}
		return nil
	}
	if u.Role != UserAdmin {
		return fmt.Errorf("signer %q has role %s; changing the policy needs role admin", u.Name, u.Role)
	}
	return nil
}

func (s *State) planRequest(r *Request, c *Command) (func(), error) {
	if r == nil {
		return nil, errors.New("no request")
	}
	if err := validName(r.ID); err != nil {
		return nil, fmt.Errorf("request id: %w", err)
	}
	if !s.Sealed() {
		// Before the seal one admin chose every approver: a quorum of
		// them is one person, so nothing recorded opens yet.
		return nil, errors.New("the federation is not sealed yet: footage requests open once its approvers are sealed (custos quorum seal)")
	}
	if s.Requests[r.ID] != nil {
		return nil, fmt.Errorf("request %q exists", r.ID)
	}
	cams, err := s.checkRequest(r, c)
	if err != nil {
		return nil, fmt.Errorf("request %q: %w", r.ID, err)
	}
	nr := cloneRequest(*r)
	nr.Requester, nr.Created, nr.Cameras = c.Signer, c.Time, cams
	return func() { s.Requests[nr.ID] = &nr }, nil
}

// checkRequest validates a new request and returns the cameras it names.
func (s *State) checkRequest(r *Request, c *Command) ([]string, error) {
	if r.Requester != "" && r.Requester != c.Signer {
		return nil, fmt.Errorf("names requester %q but is signed by %q", r.Requester, c.Signer)
	}
	if !r.Created.IsZero() && !r.Created.Equal(c.Time) {
		return nil, fmt.Errorf("created %s is not the command's time %s", stamp(r.Created), stamp(c.Time))
	}
	if len(r.Approvals) > 0 || len(r.Evidence) > 0 || len(r.Denials) > 0 || !r.ApprovedAt.IsZero() {
		return nil, errors.New("a new request carries no approvals or denials")
	}
	if err := checkRequestTimes(r, c.Time); err != nil {
		return nil, err
	}
	if err := checkText("purpose", r.Purpose); err != nil {
		return nil, err
	}
	if err := checkText("legal basis", r.Basis); err != nil {
		return nil, err
	}
	if err := checkOneTimeKey(r.Key); err != nil {
		return nil, err
	}
	// A one-time key serves one request: a second request naming it (then
	// denied or expired) would make its node drop the key of the first.
	for _, o := range s.Requests {
		if o.Key == r.Key {
			return nil, fmt.Errorf("one-time key is already the key of request %q; make a new key for each request", o.ID)
		}
	}
	if err := validSelector(r.Selector); err != nil {
		return nil, err
	}
	cams := s.camerasMatching(r.Selector)
	if len(cams) == 0 {
		return nil, fmt.Errorf("camera selector %q matches no camera", r.Selector)
	}
	if r.Cameras != nil && !slices.Equal(r.Cameras, cams) {
		return nil, fmt.Errorf("names cameras %v, but its selector matches %v", r.Cameras, cams)
	}
	// A command may be dated up to ReplayWindow before the clock: judge
	// rights at the later of the two, so backdating cannot revive a grant.
	at := s.later(c.Time)
	if err := s.mayRequest(c.Signer, cams, at); err != nil {
		return nil, err
	}
	return cams, s.checkRequestNode(r.Node, cams, at)
}

func checkRequestTimes(r *Request, now time.Time) error {
	switch {
	case r.From.IsZero() || r.To.IsZero():
		return errors.New("needs a footage range (from and to)")
	case !r.From.Before(r.To):
		return fmt.Errorf("footage range from %s is not before to %s", stamp(r.From), stamp(r.To))
	case r.To.Sub(r.From) > MaxRequestSpan:
		return fmt.Errorf("footage range of %v is longer than %v; file one request per day", r.To.Sub(r.From), MaxRequestSpan)
	case r.To.After(now):
		return fmt.Errorf("footage range ends at %s, after the command's time %s: only recorded footage can be requested", stamp(r.To), stamp(now))
	case !r.Expires.After(now):
		return fmt.Errorf("expires at %s, not after the command's time %s", stamp(r.Expires), stamp(now))
	case r.Expires.Sub(now) > MaxRequestLife:
		return fmt.Errorf("expires %v after it is made; at most %v", r.Expires.Sub(now), MaxRequestLife)
	}
	return nil
}

// checkText accepts 1..MaxRequestText bytes with some non-space text and
// no control characters but newline and tab (JSON decoding has already
// made it valid UTF-8).
func checkText(what, s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("needs a %s", what)
	case len(s) > MaxRequestText:
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(s), MaxRequestText)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("%s has control character %q", what, r)
		}
	}
	return nil
}

// checkOneTimeKey accepts an X25519 public key as 64 lower-case hex digits,
// not all zero (one spelling per key, like node keys).
func checkOneTimeKey(k string) error {
	var raw [32]byte
	if len(k) != 64 {
		return fmt.Errorf("one-time key must be 64 hex digits (an X25519 public key), got %d characters", len(k))
	}
	if _, err := hex.Decode(raw[:], []byte(k)); err != nil || hex.EncodeToString(raw[:]) != k {
		return errors.New("one-time key must be 64 lower-case hex digits")
	}
	if raw == [32]byte{} {
		return errors.New("one-time key is all zero")
	}
	return nil
}

// camerasMatching returns the sorted keys of the cameras sel matches.
func (s *State) camerasMatching(sel string) []string {
	var out []string
	for k, c := range s.Cameras {
		if SelectorMatches(sel, c) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// mayRequest: an admin may request any footage; anyone else needs, at at,
// the right to export every camera the request names.
func (s *State) mayRequest(user string, cams []string, at time.Time) error {
	if u := s.Users[user]; u != nil && !u.Revoked && u.Role == UserAdmin {
		return nil
	}
	for _, k := range cams {
		if d := Authorize(s, Subject{Kind: "user", Name: user}, ActExport, k, at); !d.Allow {
			return fmt.Errorf("%q may not request footage of %s (needs role admin or an export grant for every camera named): %s", user, k, d.Reason)
		}
	}
	return nil
}

// checkRequestNode: the one-time key's node must be a live member that is
// meant to handle released footage — an admin node (DESIGN §2), a
// datacenter (where a small federation's admin works), or a store for its
// own site's cameras only (a store is the most exposed box, and sees those
// cameras live anyway). Never a witness (policy only) or an installer
// (never recordings).
func (s *State) checkRequestNode(name string, cams []string, at time.Time) error {
	n := s.Nodes[name]
	if n == nil || !Member(s, name, at) {
		return fmt.Errorf("node %q is not a live member of the federation", name)
	}
	switch n.Role {
	case RoleAdminNode, RoleDatacenter:
		return nil
	case RoleStore:
		for _, k := range cams {
			if s.Cameras[k].Site != n.Site {
				return fmt.Errorf("store %q may receive footage of its own site %s only, and %s is not there", name, n.Site, k)
			}
		}
		return nil
	}
	return fmt.Errorf("node %q has role %s; footage is released to an admin node, a datacenter, or a store for its own site", name, n.Role)
}

func (s *State) planApprove(a *Approval, c *Command) (func(), error) {
	if a == nil {
		return nil, errors.New("no approval")
	}
	r, err := s.decidable(a.Request, a.User, a.Time, c, "approve")
	if err != nil {
		return nil, err
	}
	if want := RequestDigest(s.FederationID, r); a.Digest != want {
		return nil, fmt.Errorf("approval of request %q names digest %q, but the request's is %s: the request reviewed is not the one in the policy", r.ID, a.Digest, want)
	}
	if a.Key != "" && a.Key != s.Users[c.Signer].Fingerprint {
		return nil, fmt.Errorf("approval names key %s, not %q's key", a.Key, c.Signer)
	}
	na := Approval{Request: r.ID, Digest: a.Digest, User: c.Signer, Time: c.Time, Key: s.Users[c.Signer].Fingerprint}
	approvals := append(slices.Clone(r.Approvals), na)
	approved := s.CountApprovals(approvals, s.later(c.Time), r.Requester) >= s.ApprovalThreshold()
	return func() {
		r.Approvals = approvals
		if approved && r.ApprovedAt.IsZero() {
			r.ApprovedAt = c.Time
		}
	}, nil
}

func (s *State) planDeny(d *Denial, c *Command) (func(), error) {
	if d == nil {
		return nil, errors.New("no denial")
	}
	r, err := s.decidable(d.Request, d.User, d.Time, c, "deny")
	if err != nil {
		return nil, err
	}
	if err := checkText("reason", d.Reason); err != nil {
		return nil, fmt.Errorf("denying request %q: %w", r.ID, err)
	}
	nd := Denial{Request: r.ID, Reason: d.Reason, User: c.Signer, Time: c.Time}
	return func() { r.Denials = append(r.Denials, nd) }, nil
}

// decidable returns request id if the signer of c may approve or deny it
// now: it is pending and unexpired, they did not make it and have not yet
// decided on it, and its requester is still a user. The signer's role was
// checked by authenticate.
func (s *State) decidable(id, user string, at time.Time, c *Command, verb string) (*Request, error) {
	if user != "" && user != c.Signer {
		return nil, fmt.Errorf("names user %q but is signed by %q", user, c.Signer)
	}
	if !at.IsZero() && !at.Equal(c.Time) {
		return nil, fmt.Errorf("time %s is not the command's time %s", stamp(at), stamp(c.Time))
	}
	r := s.Requests[id]
	if r == nil {
		return nil, fmt.Errorf("no request %q", id)
	}
	// As in checkRequest: a backdated command cannot revive a request the
	// federation already saw expire.
	switch s.RequestStatus(r, s.later(c.Time)) {
	case RequestExpired:
		return nil, fmt.Errorf("request %q expired at %s", id, stamp(r.Expires))
	case RequestDenied:
		return nil, fmt.Errorf("request %q was already denied by %s", id, r.Denials[0].User)
	case RequestApproved:
		return nil, fmt.Errorf("request %q is already approved", id)
	}
	switch {
	case c.Time.Before(r.Created):
		return nil, fmt.Errorf("command time %s is before request %q was made", stamp(c.Time), id)
	case c.Signer == r.Requester:
		return nil, fmt.Errorf("%q made request %q and cannot %s it: approvers are never the requester", c.Signer, id, verb)
	case r.decidedBy(c.Signer):
		return nil, fmt.Errorf("%q already approved or denied request %q", c.Signer, id)
	}
	if u := s.Users[r.Requester]; u == nil || u.Revoked {
		return nil, fmt.Errorf("request %q: its requester %q is revoked", id, r.Requester)
	}
	return r, nil
}

func (r *Request) decidedBy(user string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.User == user }) ||
		slices.ContainsFunc(r.Denials, func(d Denial) bool { return d.User == user })
}

// pruneRequests drops requests expired for more than ReplayWindow by the
// state's clock, so the state does not grow forever. It runs after every
// applied command, so every replica prunes alike.
func (s *State) pruneRequests() {
	for id, r := range s.Requests {
		if s.Clock.Sub(r.Expires) > ReplayWindow {
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
	r.Approvals = slices.Clone(r.Approvals)
	r.Evidence = cloneEnvelopes(r.Evidence)
	r.Denials = slices.Clone(r.Denials)
	return r
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
