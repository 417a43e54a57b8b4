package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// eraseRequest asks to erase an hour of praha-1/entrance, before tc.
func eraseRequest(id string) *Request {
	return &Request{ID: id, Action: ActionErase, Selector: "praha-1/entrance", From: t0.Add(-time.Hour), To: t0,
		Purpose: "art. 17 request of the person at the door on the 26th", Expires: tc.Add(24 * time.Hour)}
}

// holdRequest asks to hold praha-1's footage in [t0-2h, t0-30m) until until.
func holdRequest(id string, until time.Time) *Request {
	return &Request{ID: id, Action: ActionHold, Selector: "praha-1/*", From: t0.Add(-2 * time.Hour), To: t0.Add(-30 * time.Minute),
		Purpose: "police case 123/2026", Expires: tc.Add(24 * time.Hour), Until: until}
}

// approveBy has each of by approve request id at at.
func (f *reqFed) approveBy(t *testing.T, id string, at time.Time, by ...string) {
	t.Helper()
	d := RequestDigest(f.s.FederationID, f.s.Requests[id])
	for _, u := range by {
		mustApply(t, f.s, f.approve(t, u, id, d, at))
	}
}

// advance moves the state's clock to at with a harmless command.
func (f *reqFed) advance(t *testing.T, at time.Time) {
	t.Helper()
	c := cmd(KindAddSite, at)
	c.Site = &Site{Name: "s-" + c.ID, Jurisdiction: "EU"}
	f.admin(t, c)
}

func TestRightsRequestCreate(t *testing.T) {
	cases := []struct {
		name   string
		by     string
		hold   bool
		setup  func(*testing.T, *reqFed)
		mutate func(*Request)
		want   string // refusal; "" to apply
	}{
		{name: "erase", by: "alice"},
		{name: "erase by another admin", by: "frank"},
		{name: "hold", by: "alice", hold: true},
		{name: "erase with a legal basis", by: "alice", mutate: func(r *Request) { r.Basis = "art. 17(1)(c) GDPR" }},
		{name: "viewer with an export grant", by: "dave", want: `signer "dave" has role viewer; an erase request needs role admin`, setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-exp", "dave", ActExport, "praha-1/*", Window{})
		}},
		{name: "approver", by: "bob", want: "an erase request needs role admin"},
		{name: "approver holds", by: "bob", hold: true, want: "a hold request needs role admin"},
		{name: "unknown action", by: "alice", mutate: func(r *Request) { r.Action = "delete" }, want: `action "delete": want view (empty), erase or hold`},
		{name: "no range", by: "alice", mutate: func(r *Request) { r.To = time.Time{} }, want: "needs a footage range"},
		{name: "reversed range", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(time.Second) }, want: "is not before to " + stamp(t0) + ": the range is reversed or empty"},
		{name: "empty range", by: "alice", mutate: func(r *Request) { r.From = r.To }, want: "reversed or empty"},
		{name: "hold reversed range", by: "alice", hold: true, mutate: func(r *Request) { r.From, r.To = r.To, r.From }, want: "reversed or empty"},
		{name: "range ends in the future", by: "alice", mutate: func(r *Request) { r.To = tc.Add(time.Second) }, want: "a range in the future has no footage yet"},
		{name: "range ends at the command time", by: "alice", mutate: func(r *Request) { r.To = tc }},
		{name: "range of exactly the maximum", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(-MaxErasureSpan) }},
		{name: "range too long", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(-MaxErasureSpan - time.Second) }, want: "longer than 168h0m0s"},
		{name: "hold range too long", by: "alice", hold: true, mutate: func(r *Request) { r.From = r.To.Add(-MaxHoldSpan - time.Second) }, want: "longer than 168h0m0s"},
		{name: "unknown camera", by: "alice", mutate: func(r *Request) { r.Selector = "praha-1/nope" }, want: `camera selector "praha-1/nope" matches no camera`},
		{name: "unknown site", by: "alice", mutate: func(r *Request) { r.Selector = "ostrava/*" }, want: `camera selector "ostrava/*" matches no camera`},
		{name: "bad selector", by: "alice", mutate: func(r *Request) { r.Selector = "entrance" }, want: "want SITE/CAMERA"},
		{name: "cameras in payload differ", by: "alice", mutate: func(r *Request) { r.Cameras = []string{"praha-1/tills"} }, want: "but its selector matches"},
		{name: "erase with a one-time key", by: "alice", mutate: func(r *Request) { r.Key = oneTimeKey }, want: "takes no one-time key"},
		{name: "erase with a node", by: "alice", mutate: func(r *Request) { r.Node = "admin-1" }, want: `names no node (got "admin-1")`},
		{name: "erase with until", by: "alice", mutate: func(r *Request) { r.Until = tc.Add(time.Hour) }, want: "an erasure has no until"},
		{name: "erase without reason", by: "alice", mutate: func(r *Request) { r.Purpose = " " }, want: "needs a reason"},
		{name: "erase expired", by: "alice", mutate: func(r *Request) { r.Expires = tc }, want: "not after the command's time"},
		{name: "erase expiring too late", by: "alice", mutate: func(r *Request) { r.Expires = tc.Add(MaxRequestLife + time.Second) }, want: "at most 168h0m0s"},
		{name: "hold without until", by: "alice", hold: true, mutate: func(r *Request) { r.Until = time.Time{} }, want: "a hold needs an until"},
		{name: "hold until the command time", by: "alice", hold: true, mutate: func(r *Request) { r.Until = tc }, want: "is not after the command's time"},
		{name: "hold for exactly a year", by: "alice", hold: true, mutate: func(r *Request) { r.Until = tc.AddDate(1, 0, 0) }},
		{name: "hold for more than a year", by: "alice", hold: true, mutate: func(r *Request) { r.Until = tc.AddDate(1, 0, 0).Add(time.Second) }, want: "more than 1 year after"},
		{name: "hold with a one-time key", by: "alice", hold: true, mutate: func(r *Request) { r.Key = oneTimeKey }, want: "a hold request releases no keys"},
		{name: "view with until", by: "alice", mutate: func(r *Request) {
			*r = *goodRequest()
			r.Until = tc.Add(time.Hour)
		}, want: "a view request has no until"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newReqFed(t)
			if c.setup != nil {
				c.setup(t, f)
			}
			r := eraseRequest("x1")
			if c.hold {
				r = holdRequest("x1", tc.Add(time.Hour))
			}
			if c.mutate != nil {
				c.mutate(r)
			}
			env := f.create(t, c.by, r, tc)
			if c.want != "" {
				refused(t, f.s, env, c.want)
				return
			}
			mustApply(t, f.s, env)
			got := f.s.Requests["x1"]
			if got.Requester != c.by || got.Action != r.Action || len(got.Cameras) == 0 || got.Key != "" || got.Node != "" {
				t.Fatalf("stored %+v", got)
			}
			if st := f.s.RequestStatus(got, tc); st != RequestPending {
				t.Fatalf("new request is %s, want pending", st)
			}
		})
	}
}

// An erasure needs the quorum like a release: the requester's own approval
// is refused, one approval erases nothing, and the tombstone then stays.
func TestEraseNeedsTheQuorum(t *testing.T) {
	f := newReqFed(t)
	mustApply(t, f.s, f.create(t, "alice", eraseRequest("e1"), tc))
	r := f.s.Requests["e1"]
	if !slices.Equal(r.Cameras, []string{"praha-1/entrance"}) {
		t.Fatalf("erasure names %v", r.Cameras)
	}
	d := RequestDigest(f.s.FederationID, r)
	refused(t, f.s, f.approve(t, "alice", "e1", d, tc), `"alice" made request "e1" and cannot approve it: approvers are never the requester`)
	refused(t, f.s, f.approve(t, "dave", "e1", d, tc), "needs role admin or approver")
	mustApply(t, f.s, f.approve(t, "bob", "e1", d, tc))
	if st := f.s.RequestStatus(r, tc); st != RequestPending {
		t.Fatalf("after one approval: %s, want pending", st)
	}
	if f.s.Erased("praha-1/entrance", t0.Add(-time.Hour), t0) || len(f.s.Erasures()) != 0 {
		t.Fatal("one approval made a tombstone")
	}
	refused(t, f.s, f.approve(t, "bob", "e1", d, tc), "already approved or denied")
	mustApply(t, f.s, f.approve(t, "carol", "e1", d, tc.Add(time.Minute)))
	if st := f.s.RequestStatus(r, tc.Add(time.Minute)); st != RequestApproved || !r.ApprovedAt.Equal(tc.Add(time.Minute)) {
		t.Fatalf("after two approvals: %s at %v, want approved at the second", st, r.ApprovedAt)
	}
	if es := f.s.Erasures(); len(es) != 1 || es[0].ID != "e1" {
		t.Fatalf("Erasures = %v, want e1", es)
	}
	from, to := t0.Add(-time.Hour), t0
	cases := []struct {
		name     string
		camera   string
		from, to time.Time
		want     bool
	}{
		{"the range", "praha-1/entrance", from, to, true},
		{"a segment inside", "praha-1/entrance", from.Add(time.Minute), from.Add(2 * time.Minute), true},
		{"a segment across the start", "praha-1/entrance", from.Add(-time.Minute), from.Add(time.Nanosecond), true},
		{"a segment across the end", "praha-1/entrance", to.Add(-time.Nanosecond), to.Add(time.Minute), true},
		{"a segment ending at the start", "praha-1/entrance", from.Add(-time.Minute), from, false},
		{"a segment starting at the end", "praha-1/entrance", to, to.Add(time.Minute), false},
		{"another camera", "praha-1/tills", from, to, false},
	}
	for _, c := range cases {
		if got := f.s.Erased(c.camera, c.from, c.to); got != c.want {
			t.Errorf("%s: Erased = %v, want %v", c.name, got, c.want)
		}
	}
	// A tombstone outlives its request's expiry and the approvers: a
	// datacenter back from offline must still learn of it.
	f.revoke(t, KindRevokeUser, "carol", tc.Add(time.Hour))
	f.advance(t, r.Expires.Add(ReplayWindow+time.Hour))
	if f.s.Requests["e1"] == nil || !f.s.Erased("praha-1/entrance", from, to) {
		t.Fatal("the tombstone was pruned or stopped counting")
	}
	if st := f.s.RequestStatus(f.s.Requests["e1"], r.Expires.Add(time.Hour)); st != RequestApproved {
		t.Fatalf("an erasure after its expiry is %s, want approved", st)
	}
	if (*State)(nil).Erased("praha-1/entrance", from, to) || (*State)(nil).Erasures() != nil {
		t.Fatal("a nil state has erasures")
	}
}

// A hold refuses an erasure of what it keeps, when filed and at the
// approval that would complete it, naming itself; an ended hold does not.
func TestHoldBlocksErasure(t *testing.T) {
	f := newReqFed(t)
	until := tc.Add(3 * time.Hour)
	mustApply(t, f.s, f.create(t, "alice", holdRequest("h1", until), tc))
	// Filed while the hold is pending: a pending hold blocks nothing.
	mustApply(t, f.s, f.create(t, "frank", eraseRequest("e-early"), tc))
	if _, ok := f.s.HoldOn("praha-1/entrance", t0.Add(-time.Hour), t0, tc); ok || len(f.s.ActiveHolds(tc)) != 0 {
		t.Fatal("a pending hold is active")
	}
	f.approveBy(t, "h1", tc, "bob", "carol")
	if hs := f.s.ActiveHolds(tc); len(hs) != 1 || hs[0].ID != "h1" {
		t.Fatalf("ActiveHolds = %v, want h1", hs)
	}
	if h, ok := f.s.HoldOn("praha-1/tills", t0.Add(-time.Hour), t0, tc); !ok || h.ID != "h1" {
		t.Fatalf("HoldOn = %v, %v; want h1", h, ok)
	}
	if _, ok := f.s.HoldOn("praha-1/tills", t0.Add(-30*time.Minute), t0, tc); ok {
		t.Fatal("footage starting where the hold's range ends is held")
	}
	if _, ok := f.s.HoldOn("brno-1/door", t0.Add(-time.Hour), t0, tc); ok {
		t.Fatal("a camera the hold does not name is held")
	}

	refused(t, f.s, f.create(t, "alice", eraseRequest("e2"), tc.Add(time.Minute)), `is under hold "h1" until `+stamp(until)+" (reason: police case 123/2026)")
	// The first approval of the earlier erasure deletes nothing; the one
	// that would complete it is refused.
	f.approveBy(t, "e-early", tc.Add(time.Minute), "bob")
	d := RequestDigest(f.s.FederationID, f.s.Requests["e-early"])
	refused(t, f.s, f.approve(t, "carol", "e-early", d, tc.Add(2*time.Minute)), `approving erasure "e-early" would complete it, but footage of praha-1/entrance`)
	refused(t, f.s, f.approve(t, "carol", "e-early", d, tc.Add(2*time.Minute)), `under hold "h1"`)
	if len(f.s.Erasures()) != 0 {
		t.Fatal("a held range was erased")
	}
	// Beside the held range, or another camera: no hold in the way.
	after := eraseRequest("e3")
	after.From = t0.Add(-30 * time.Minute)
	mustApply(t, f.s, f.create(t, "alice", after, tc.Add(time.Minute)))
	other := eraseRequest("e4")
	other.Selector = "brno-1/door"
	mustApply(t, f.s, f.create(t, "alice", other, tc.Add(time.Minute)))

	// Once the hold has ended it blocks nothing, and cannot be approved
	// (it is already expired).
	if _, ok := f.s.HoldOn("praha-1/entrance", t0.Add(-time.Hour), t0, until); ok || len(f.s.ActiveHolds(until)) != 0 {
		t.Fatal("a hold is active at its until")
	}
	if st := f.s.RequestStatus(f.s.Requests["h1"], until); st != RequestExpired {
		t.Fatalf("an ended hold is %s, want expired", st)
	}
	mustApply(t, f.s, f.approve(t, "carol", "e-early", d, until))
	if !f.s.Erased("praha-1/entrance", t0.Add(-time.Hour), t0) {
		t.Fatal("the erasure approved after the hold ended is not a tombstone")
	}
	mustApply(t, f.s, f.create(t, "alice", eraseRequest("e5"), until))
}

// A hold that ends before its quorum approves it cannot be approved.
func TestHoldEndedBeforeApproval(t *testing.T) {
	f := newReqFed(t)
	mustApply(t, f.s, f.create(t, "alice", holdRequest("h1", tc.Add(time.Hour)), tc))
	f.approveBy(t, "h1", tc, "bob")
	d := RequestDigest(f.s.FederationID, f.s.Requests["h1"])
	refused(t, f.s, f.approve(t, "carol", "h1", d, tc.Add(time.Hour)), `hold "h1" was to end at `+stamp(tc.Add(time.Hour))+", which has passed")
}

// Erase and hold requests open no footage, approved or not.
func TestRightsRequestsNeverRelease(t *testing.T) {
	f := newReqFed(t)
	mustApply(t, f.s, f.create(t, "alice", eraseRequest("e1"), tc))
	mustApply(t, f.s, f.create(t, "alice", holdRequest("h1", tc.Add(48*time.Hour)), tc))
	f.approveBy(t, "e1", tc, "bob", "carol")
	f.approveBy(t, "h1", tc, "bob", "carol")
	for _, id := range []string{"e1", "h1"} {
		r := f.s.Requests[id]
		if st := f.s.RequestStatus(r, tc); st != RequestApproved {
			t.Fatalf("%s is %s, want approved", id, st)
		}
		got, err := f.s.ReleasableRequest(id, tc)
		if !errors.Is(err, ErrNotReleasable) || !strings.Contains(err.Error(), "it releases no keys") || got != nil {
			t.Errorf("ReleasableRequest(%s) = %v, %v; want ErrNotReleasable: releases no keys", id, got, err)
		}
		if f.s.RequestCovers(r, "praha-1/entrance", t0.Add(-time.Hour), t0) {
			t.Errorf("%s covers footage", id)
		}
		if _, err := VerifyRelease(f.s.FederationID, f.s.Ledger, r, tc); !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "releases no keys") {
			t.Errorf("VerifyRelease(%s) = %v; want ErrUnverified: releases no keys", id, err)
		}
	}
	// The same fields as a view request are releasable: the refusal is the
	// action's, not the fixture's.
	v := goodRequest()
	v.ID = "v1"
	mustApply(t, f.s, f.create(t, "alice", v, tc))
	f.approveBy(t, "v1", tc, "bob", "carol")
	if _, err := f.s.ReleasableRequest("v1", tc); err != nil {
		t.Fatalf("a view request approved alike: %v", err)
	}
}

// The digest covers an erasure's or hold's action and a hold's until, so an
// approval of one is never an approval of another.
func TestRequestDigestCoversActionAndUntil(t *testing.T) {
	base := goodRequest()
	base.Requester, base.Created, base.Cameras = "alice", tc, []string{"praha-1/entrance"}
	with := func(action string, until time.Time) string {
		r := cloneRequest(*base)
		r.Action, r.Until = action, until
		return RequestDigest("fed-1", &r)
	}
	u := tc.Add(time.Hour)
	digests := map[string]string{
		"view":               with(ActionView, time.Time{}),
		"erase":              with(ActionErase, time.Time{}),
		"hold":               with(ActionHold, u),
		"hold a nanosecond+": with(ActionHold, u.Add(time.Nanosecond)),
		"hold without until": with(ActionHold, time.Time{}),
		"view with until":    with(ActionView, u),
		"erase with until":   with(ActionErase, u),
	}
	seen := map[string]string{}
	for name, d := range digests {
		if o, dup := seen[d]; dup {
			t.Errorf("%s and %s have one digest", name, o)
		}
		seen[d] = name
	}
	if with(ActionHold, u) != with(ActionHold, u.In(time.FixedZone("CET", 3600))) {
		t.Error("a hold's digest depends on its until's zone")
	}
}

// An approved erasure stays for good, an approved hold until a replay
// window after it ends, a pending one until a replay window after it
// expires.
func TestRightsRequestsArePrunedByTheirEnd(t *testing.T) {
	f := newReqFed(t)
	until := tc.Add(48 * time.Hour) // after the hold request's expiry, tc+24h
	mustApply(t, f.s, f.create(t, "alice", eraseRequest("e1"), tc))
	mustApply(t, f.s, f.create(t, "alice", eraseRequest("e-pending"), tc))
	mustApply(t, f.s, f.create(t, "alice", holdRequest("h1", until), tc))
	f.approveBy(t, "e1", tc, "bob", "carol")
	f.approveBy(t, "h1", tc, "bob", "carol")
	expires := tc.Add(24 * time.Hour)
	f.advance(t, expires.Add(ReplayWindow+time.Second))
	if f.s.Requests["e-pending"] != nil {
		t.Error("a pending erasure outlived its expiry by more than the replay window")
	}
	if f.s.Requests["h1"] == nil || f.s.Requests["e1"] == nil {
		t.Fatal("an approved hold before its end, or a tombstone, was pruned")
	}
	f.advance(t, until.Add(ReplayWindow))
	if f.s.Requests["h1"] == nil {
		t.Fatal("a hold was pruned at exactly the replay window after its end")
	}
	f.advance(t, until.Add(ReplayWindow+time.Second))
	if f.s.Requests["h1"] != nil {
		t.Error("an ended hold outlived the replay window")
	}
	if f.s.Requests["e1"] == nil {
		t.Error("a tombstone was pruned")
	}
}

// TestReleaseBlocksErasure: while an approved view request's keys live,
// an erasure of its footage is refused, both when it is filed and at the
// approval that would complete it, naming the request; once the request
// has expired, the erasure goes ahead.
func TestReleaseBlocksErasure(t *testing.T) {
	f := newReqFed(t)
	early := eraseRequest("e-early")
	early.Expires = tc.Add(48 * time.Hour) // outlives the release
	mustApply(t, f.s, f.create(t, "frank", early, tc))
	v := goodRequest()
	mustApply(t, f.s, f.create(t, "alice", v, tc))
	f.approveBy(t, v.ID, tc, "bob", "carol")
	if st := f.s.RequestStatus(f.s.Requests[v.ID], tc); st != RequestApproved {
		t.Fatalf("view request %s", st)
	}
	if !f.s.Requests[v.ID].Expires.After(tc) {
		t.Fatal("the view request is already expired")
	}
	refused(t, f.s, f.create(t, "alice", eraseRequest("e2"), tc.Add(time.Minute)), `is released to request "`+v.ID+`"`)
	f.approveBy(t, "e-early", tc.Add(time.Minute), "bob")
	d := RequestDigest(f.s.FederationID, f.s.Requests["e-early"])
	refused(t, f.s, f.approve(t, "carol", "e-early", d, tc.Add(2*time.Minute)), `would complete it, but footage of praha-1/entrance`)
	if len(f.s.Erasures()) != 0 {
		t.Fatal("footage under a live release was erased")
	}
	// Another camera is not in the way.
	other := eraseRequest("e3")
	other.Selector = "brno-1/door"
	mustApply(t, f.s, f.create(t, "alice", other, tc.Add(time.Minute)))
	// Once the release has expired, the erasure completes.
	end := f.s.Requests[v.ID].Expires
	mustApply(t, f.s, f.approve(t, "carol", "e-early", d, end))
	if len(f.s.Erasures()) != 1 {
		t.Fatal("the erasure approved after the release expired is not a tombstone")
	}
}
