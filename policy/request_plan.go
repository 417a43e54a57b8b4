package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
)

// The planners of key-release requests: creating one (who may ask for
// which cameras and range, from which node), approving and denying it.

// roleMaySign checks the signer's role for the command: deciding a request
// needs the approve duty (admin or approver), anyone may file one (planRequest
// checks that they may export what it names, and that only an admin files
// an erasure or a hold), subject access requests and the breach register
// are kept by admins (sar.go and breach.go say why), and everything else —
// the controller and the audit retention included — changes the policy and
// needs role admin.
func (s *State) roleMaySign(c *Command, u *User) error {
	switch c.Kind {
	case KindCreateRequest:
		return nil
	case KindOpenSAR, KindExtendSAR, KindCloseSAR:
		if d := Authorize(s, Subject{Kind: "user", Name: u.Name}, ActManage, "", c.Time); !d.Allow {
			return fmt.Errorf("signer %q has role %s; subject access requests are kept by role admin", u.Name, u.Role)
		}
		return nil
	case KindOpenBreach, KindUpdateBreach, KindCloseBreach:
		if d := Authorize(s, Subject{Kind: "user", Name: u.Name}, ActManage, "", c.Time); !d.Allow {
			return fmt.Errorf("signer %q has role %s; the breach register is kept by role admin", u.Name, u.Role)
		}
		return nil
	case KindAddPasskey, KindRemovePasskey:
		if c.PasskeyChange != nil && c.PasskeyChange.User == u.Name {
			return nil
		}
		if u.Role != UserAdmin {
			return fmt.Errorf("signer %q has role %s; a user's passkeys are enrolled or removed by that user or by role admin", u.Name, u.Role)
		}
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
	switch r.Action {
	case ActionView:
		if !r.Until.IsZero() {
			return nil, errors.New("a view request has no until: only a hold (action hold) ends at a given time")
		}
	case ActionErase, ActionHold:
		return s.checkRightsRequest(r, c)
	default:
		return nil, fmt.Errorf("action %q: want view (empty), %s or %s", r.Action, ActionErase, ActionHold)
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
	cams, err := s.requestCameras(r)
	if err != nil {
		return nil, err
	}
	// A command may be dated up to ReplayWindow before the clock: judge
	// rights at the later of the two, so backdating cannot revive a grant.
	at := s.later(c.Time)
	if err := s.mayRequest(c.Signer, cams, at); err != nil {
		return nil, err
	}
	return cams, s.checkRequestNode(r.Node, cams, at)
}

// requestCameras checks r's selector and returns the cameras it matches:
// at least one, and the same as r.Cameras if the payload names them.
func (s *State) requestCameras(r *Request) ([]string, error) {
	cams, err := s.selectorCameras(r.Selector)
	if err != nil {
		return nil, err
	}
	if r.Cameras != nil && !slices.Equal(r.Cameras, cams) {
		return nil, fmt.Errorf("names cameras %v, but its selector matches %v", r.Cameras, cams)
	}
	return cams, nil
}

// selectorCameras checks sel and returns the cameras it matches, at least
// one.
func (s *State) selectorCameras(sel string) ([]string, error) {
	if err := validSelector(sel); err != nil {
		return nil, err
	}
	cams := s.camerasMatching(sel)
	if len(cams) == 0 {
		return nil, fmt.Errorf("camera selector %q matches no camera", sel)
	}
	return cams, nil
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
	passkey, counter, err := s.checkApprovalPasskey(c)
	if err != nil {
		return nil, fmt.Errorf("approving request %q: %w", r.ID, err)
	}
	na := Approval{Request: r.ID, Digest: a.Digest, User: c.Signer, Time: c.Time, Key: s.Users[c.Signer].Fingerprint, Passkey: passkey}
	approvals := append(cloneApprovals(r.Approvals), na)
	approved := s.CountApprovals(approvals, s.later(c.Time), r.Requester) >= s.ApprovalThreshold()
	// A hold or a release approved after the erasure was filed: the
	// approval that would complete the erasure is refused while it lasts
	// (a first approval is not, as it deletes nothing).
	if approved && r.Action == ActionErase {
		if err := s.checkErasable(r, s.later(c.Time)); err != nil {
			return nil, fmt.Errorf("approving erasure %q would complete it, but %w", r.ID, err)
		}
	}
	return func() {
		counter()
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
	if r.Action == ActionHold && !s.later(c.Time).Before(r.Until) {
		return nil, fmt.Errorf("hold %q was to end at %s, which has passed: there is nothing left to hold", id, stamp(r.Until))
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
