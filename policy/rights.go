package policy

// Data subjects' rights on recorded footage (GDPR arts. 17 and 18). Erasure
// and evidence hold are footage requests with an Action, filed with
// request.create and decided with request.approve and request.deny by the
// same quorum as a release: destroying or keeping evidence is as sensitive
// as viewing it, and the requester never approves their own.
//
//   - An approved erase request is a tombstone (Erasures, Erased): every
//     copy of its cameras' footage in [From, To) is to be deleted, on the
//     store and on every datacenter, and never replicated or uploaded again.
//     Deletion is at segment granularity: a segment that overlaps the range
//     is deleted whole (partial segments are not re-encoded), so up to one
//     segment's length at each end goes with it; approvers approve that.
//   - An approved hold keeps its cameras' footage in [From, To) past
//     retention until its Until (ActiveHolds, HoldOn), and refuses every
//     erasure that overlaps it, both when the erasure is filed and at the
//     approval that would complete it. A hold that has ended blocks nothing.
//
// Neither releases a key: ReleasableRequest, RequestCovers and
// VerifyRelease refuse them, and neither takes a one-time key or a node.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Actions of a Request.
const (
	ActionView  = ""      // release keys to view and export the footage
	ActionErase = "erase" // delete the footage everywhere (a tombstone)
	ActionHold  = "hold"  // keep the footage past retention until Until
)

const (
	// MaxErasureSpan bounds an erasure's footage range: a week is longer
	// than any retention without a written justification, and deleting
	// more is several requests, each approved on its own.
	MaxErasureSpan = 7 * 24 * time.Hour
	// MaxHoldSpan bounds the footage range a hold keeps, for the same
	// reason: a hold is for one incident.
	MaxHoldSpan = 7 * 24 * time.Hour
	// MaxHoldYears bounds how long after it is filed a hold may end: a
	// longer hold is a new request, approved again.
	MaxHoldYears = 1
)

// checkRightsRequest validates a new erase or hold request (its payload's
// requester, created and decisions already checked) and returns the
// cameras it names.
func (s *State) checkRightsRequest(r *Request, c *Command) ([]string, error) {
	// Only an admin files them: the controller's responsible person answers
	// data subjects (DESIGN §1), and an export grant is a right to see
	// footage, not to destroy or keep it.
	if u := s.Users[c.Signer]; u == nil || u.Role != UserAdmin {
		role := UserRole("none")
		if u != nil {
			role = u.Role
		}
		return nil, fmt.Errorf("signer %q has role %s; %s needs role admin", c.Signer, role, actionNoun(r.Action))
	}
	if r.Key != "" {
		return nil, fmt.Errorf("%s releases no keys, so it takes no one-time key", actionNoun(r.Action))
	}
	if r.Node != "" {
		return nil, fmt.Errorf("%s releases no keys, so it names no node (got %q)", actionNoun(r.Action), r.Node)
	}
	span := MaxErasureSpan
	if r.Action == ActionHold {
		span = MaxHoldSpan
	}
	if err := checkFootageRange(r.From, r.To, c.Time, span); err != nil {
		return nil, err
	}
	if err := checkExpiry(r.Expires, c.Time); err != nil {
		return nil, err
	}
	if err := checkText("reason", r.Purpose); err != nil {
		return nil, err
	}
	if r.Basis != "" {
		if err := checkText("legal basis", r.Basis); err != nil {
			return nil, err
		}
	}
	switch r.Action {
	case ActionErase:
		if !r.Until.IsZero() {
			return nil, errors.New("an erasure has no until: only a hold ends at a given time")
		}
	case ActionHold:
		limit := c.Time.UTC().AddDate(MaxHoldYears, 0, 0)
		switch {
		case r.Until.IsZero():
			return nil, errors.New("a hold needs an until: when it ends")
		case !r.Until.After(c.Time):
			return nil, fmt.Errorf("hold until %s is not after the command's time %s", stamp(r.Until), stamp(c.Time))
		case r.Until.After(limit):
			return nil, fmt.Errorf("hold until %s is more than %d year after the command's time %s (at most %s)",
				stamp(r.Until), MaxHoldYears, stamp(c.Time), stamp(limit))
		}
	}
	cams, err := s.requestCameras(r)
	if err != nil {
		return nil, err
	}
	if r.Action == ActionErase {
		probe := *r
		probe.Cameras = cams
		if err := s.checkErasable(&probe, s.later(c.Time)); err != nil {
			return nil, err
		}
	}
	return cams, nil
}

// actionNoun names a request of action a in an error.
func actionNoun(a string) string {
	switch a {
	case ActionView:
		return "a view request"
	case ActionErase:
		return "an erase request"
	}
	return fmt.Sprintf("a %s request", a)
}

// checkFootageRange checks a footage range [from, to) of recorded footage
// at now: both ends given, from before to, not ending after now, at most
// limit long.
func checkFootageRange(from, to, now time.Time, limit time.Duration) error {
	switch {
	case from.IsZero() || to.IsZero():
		return errors.New("needs a footage range (from and to)")
	case !from.Before(to):
		return fmt.Errorf("footage range from %s is not before to %s: the range is reversed or empty", stamp(from), stamp(to))
	case to.After(now):
		return fmt.Errorf("footage range ends at %s, after the command's time %s: a range in the future has no footage yet", stamp(to), stamp(now))
	case to.Sub(from) > limit:
		return fmt.Errorf("footage range of %v is longer than %v; split it into several requests", to.Sub(from), limit)
	}
	return nil
}

// checkExpiry checks when a request stops waiting for its approvals.
func checkExpiry(expires, now time.Time) error {
	switch {
	case !expires.After(now):
		return fmt.Errorf("expires at %s, not after the command's time %s", stamp(expires), stamp(now))
	case expires.Sub(now) > MaxRequestLife:
		return fmt.Errorf("expires %v after it is made; at most %v", expires.Sub(now), MaxRequestLife)
	}
	return nil
}

// checkErasable refuses erasure r if, at now, a hold keeps footage it
// would delete or an approved view request has it released.
func (s *State) checkErasable(r *Request, now time.Time) error {
	if err := s.checkHolds(r, now); err != nil {
		return err
	}
	return s.checkReleases(r, now)
}

// checkReleases refuses erasure r while an approved view request whose
// keys still live (not expired) covers footage of one of its cameras in
// its range: its requester may be exporting it, and deleting footage from
// under an export breaks it half-way. The erasure waits at most the
// request's life (MaxRequestLife).
func (s *State) checkReleases(r *Request, now time.Time) error {
	for _, v := range s.sortedRequests() {
		if v.Action != ActionView || s.RequestStatus(v, now) != RequestApproved {
			continue
		}
		for _, cam := range r.Cameras {
			if !slices.Contains(v.Cameras, cam) {
				continue
			}
			if _, _, ok := v.Clip(r.From, r.To); ok {
				return fmt.Errorf("footage of %s in [%s, %s) is released to request %q (approved; its keys live until %s): an erasure may not delete footage from under an export; file it again after that",
					cam, stamp(r.From), stamp(r.To), v.ID, stamp(v.Expires))
			}
		}
	}
	return nil
}

// checkHolds refuses erasure r if a hold active at now keeps footage of one
// of its cameras in its range, naming the hold.
func (s *State) checkHolds(r *Request, now time.Time) error {
	for _, cam := range r.Cameras {
		if h, ok := s.HoldOn(cam, r.From, r.To, now); ok {
			return fmt.Errorf("footage of %s in [%s, %s) is under hold %q until %s (reason: %s); an erasure may not destroy held evidence: wait for the hold to end",
				cam, stamp(r.From), stamp(r.To), h.ID, stamp(h.Until), h.Purpose)
		}
	}
	return nil
}

// sortedRequests returns s's requests sorted by ID, so that every replica
// and every caller sees them in one order.
func (s *State) sortedRequests() []*Request {
	if s == nil {
		return nil
	}
	out := make([]*Request, 0, len(s.Requests))
	for _, id := range slices.Sorted(maps.Keys(s.Requests)) {
		out = append(out, s.Requests[id])
	}
	return out
}

// Erasures returns copies of the approved erase requests — the tombstones —
// sorted by ID. Stores, replication and recorders delete, and refuse to
// keep or bring back, every segment of a tombstone's cameras that overlaps
// its [From, To) (segment granularity: see the top of rights.go).
func (s *State) Erasures() []*Request {
	if s == nil {
		return nil
	}
	return sortedCopies(s.Requests, cloneRequest, func(r *Request) bool { return r.Action == ActionErase && !r.ApprovedAt.IsZero() })
}

// Erased reports whether footage of camera ("site/name") in [from, to)
// overlaps an approved erasure of that camera: a segment with that span is
// to be deleted, and must not be stored, replicated or uploaded again. The
// cameras are those the erasure named when it was filed.
func (s *State) Erased(camera string, from, to time.Time) bool {
	if s == nil {
		return false
	}
	for _, r := range s.Requests {
		if r.Action == ActionErase && !r.ApprovedAt.IsZero() && slices.Contains(r.Cameras, camera) {
			if _, _, ok := r.Clip(from, to); ok {
				return true
			}
		}
	}
	return false
}

// ActiveHolds returns copies of the holds approved and not yet ended at
// now, sorted by ID.
func (s *State) ActiveHolds(now time.Time) []*Request {
	if s == nil {
		return nil
	}
	return sortedCopies(s.Requests, cloneRequest, func(r *Request) bool { return activeHold(r, now) })
}

// HoldOn returns (a copy of) the first hold, by ID, that at now keeps
// footage of camera overlapping [from, to): retention must skip such
// footage and no erasure may delete it.
func (s *State) HoldOn(camera string, from, to, now time.Time) (*Request, bool) {
	for _, r := range s.sortedRequests() {
		if !activeHold(r, now) || !slices.Contains(r.Cameras, camera) {
			continue
		}
		if _, _, ok := r.Clip(from, to); ok {
			c := cloneRequest(*r)
			return &c, true
		}
	}
	return nil, false
}

func activeHold(r *Request, now time.Time) bool {
	return r.Action == ActionHold && !r.ApprovedAt.IsZero() && now.Before(r.Until)
}
