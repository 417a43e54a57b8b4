package policy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// tc is when the test requests are made; their footage is from before t0.
var tc = t0.Add(time.Hour)

// reqFed is a federation for request tests: alice and frank are admins,
// bob and carol approvers, dave a viewer, erin an auditor; nodes dc-a,
// store-praha-1, admin-1, witness; cameras praha-1/entrance (tag doors),
// praha-1/tills (tag tills) and brno-1/door (tag doors).
type reqFed struct {
	s     *State
	users map[string]*testUser
}

func newReqFed(t *testing.T) *reqFed {
	t.Helper()
	alice := newTestUser(t, "alice")
	f := &reqFed{s: founded(t, alice), users: map[string]*testUser{"alice": alice}}
	for _, u := range []struct {
		name string
		role UserRole
	}{{"frank", UserAdmin}, {"bob", UserApprover}, {"carol", UserApprover}, {"dave", UserViewer}, {"erin", UserAuditor}} {
		f.users[u.name] = newTestUser(t, u.name)
		c := cmd(KindAddUser, t0)
		usr := f.users[u.name].user(u.role)
		c.User = &usr
		f.admin(t, c)
	}
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "brno-1", Jurisdiction: "EU"}
	f.admin(t, c)
	for i, n := range []Node{
		{Name: "admin-1", Role: RoleAdminNode, Jurisdiction: "EU"},
		{Name: "witness", Role: RoleWitness, Jurisdiction: "EU"},
	} {
		c := cmd(KindAddNode, t0)
		n.PublicKey = nodeKey(byte(0x70 + i))
		c.Node = &n
		f.admin(t, c)
	}
	for _, cam := range []Camera{
		{Site: "praha-1", Name: "tills", Tags: []string{"tills"}},
		{Site: "brno-1", Name: "door", Tags: []string{"doors"}},
	} {
		c := cmd(KindAddCamera, t0)
		cam.Purpose, cam.LegalBasis, cam.Retention = "p", "b", DefaultRetention
		c.Camera = &cam
		f.admin(t, c)
	}
	seal := cmd(KindSeal, t0)
	seal.Seal = &Seal{Threshold: 2}
	f.admin(t, seal)
	return f
}

// admin applies c signed by alice.
func (f *reqFed) admin(t testing.TB, c *Command) {
	t.Helper()
	mustApply(t, f.s, f.users["alice"].sign(t, c))
}

func (f *reqFed) grant(t testing.TB, id, user string, act Action, sel string, w Window) {
	t.Helper()
	c := cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: id, Subject: Subject{"user", user}, Actions: []Action{act}, Selector: sel, Window: w}
	f.admin(t, c)
}

// revoke revokes name as frank; revoking an admin or approver is a
// proposal that two other approvers approve.
func (f *reqFed) revoke(t testing.TB, kind, name string, at time.Time) {
	t.Helper()
	c := cmd(kind, at)
	c.Name = name
	if !f.s.IsGovernance(c) {
		mustApply(t, f.s, f.users["frank"].sign(t, c))
		return
	}
	var approvers []string
	for _, u := range []string{"alice", "bob", "carol"} {
		if u != name && len(approvers) < 2 {
			approvers = append(approvers, u)
		}
	}
	f.govern(t, "frank", approvers, c, at)
}

// govern proposes inner as proposer and has approvers approve it, all at at;
// the last approval must execute it.
func (f *reqFed) govern(t testing.TB, proposer string, approvers []string, inner *Command, at time.Time) {
	t.Helper()
	env, id := f.proposal(t, proposer, inner, at)
	mustApply(t, f.s, env)
	for _, a := range approvers {
		mustApply(t, f.s, f.approveProposal(t, a, id, f.digest(id), at))
	}
	if f.s.Proposals[id].Executed.IsZero() {
		t.Fatalf("proposal %s of %s did not execute after %v approved", id, inner.Kind, approvers)
	}
}

var oneTimeKey = hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// goodRequest asks for an hour of praha-1's footage, made at tc.
// goodRequest is a valid request with a one-time key of its own.
func goodRequest() *Request {
	key := make([]byte, 32)
	rand.Read(key)
	return &Request{ID: "r1", Node: "admin-1", Selector: "praha-1/*", From: t0.Add(-time.Hour), To: t0,
		Purpose: "theft at till 2 on the 26th", Basis: "art. 6(1)(f) GDPR, legitimate interest",
		Key: hex.EncodeToString(key), Expires: tc.Add(24 * time.Hour)}
}

func (f *reqFed) create(t testing.TB, by string, r *Request, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindCreateRequest, at)
	c.Request = r
	return f.users[by].sign(t, c)
}

func (f *reqFed) approve(t testing.TB, by, id, digest string, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindApproveRequest, at)
	c.Approval = &Approval{Request: id, Digest: digest}
	return f.users[by].sign(t, c)
}

func (f *reqFed) deny(t testing.TB, by, id, reason string, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindDenyRequest, at)
	c.Denial = &Denial{Request: id, Reason: reason}
	return f.users[by].sign(t, c)
}

func TestRequestCreate(t *testing.T) {
	shift := Window{From: t0, Until: t0.Add(8 * time.Hour)}
	cases := []struct {
		name   string
		by     string
		setup  func(*testing.T, *reqFed)
		mutate func(*Request)
		want   string // refusal; "" to apply
	}{
		{name: "admin", by: "alice"},
		{name: "admin names herself", by: "alice", mutate: func(r *Request) { r.Requester = "alice" }},
		{name: "viewer without grant", by: "dave", want: "may not request footage of praha-1/entrance"},
		{name: "viewer with export grant", by: "dave", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-exp", "dave", ActExport, "praha-1/*", shift)
		}},
		{name: "export grant per camera", by: "dave", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-1", "dave", ActExport, "praha-1/entrance", shift)
			f.grant(t, "g-2", "dave", ActExport, "tag:tills", shift)
		}},
		{name: "export grant not covering every camera", by: "dave", want: "may not request footage of praha-1/tills", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-1", "dave", ActExport, "praha-1/entrance", shift)
		}},
		{name: "export grant ended", by: "dave", want: "outside its window", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-exp", "dave", ActExport, "*", Window{Until: tc})
		}},
		{name: "revoked export grant", by: "dave", want: "may not request", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-exp", "dave", ActExport, "*", shift)
			f.revoke(t, KindRevokeGrant, "g-exp", t0)
		}},
		{name: "live grant is not export", by: "dave", want: "may not request", setup: func(t *testing.T, f *reqFed) {
			f.grant(t, "g-live", "dave", ActLive, "*", shift)
		}},
		{name: "approver without grant", by: "bob", want: "needs role admin or an export grant"},
		{name: "revoked admin", by: "alice", want: `signer "alice" is revoked`, setup: func(t *testing.T, f *reqFed) {
			f.revoke(t, KindRevokeUser, "alice", t0)
		}},
		{name: "requester is not the signer", by: "alice", mutate: func(r *Request) { r.Requester = "bob" }, want: `names requester "bob" but is signed by "alice"`},
		{name: "created is not the command time", by: "alice", mutate: func(r *Request) { r.Created = tc.Add(-time.Hour) }, want: "is not the command's time"},
		{name: "created in payload equal", by: "alice", mutate: func(r *Request) { r.Created = tc }},
		{name: "approvals in payload", by: "alice", mutate: func(r *Request) { r.Approvals = []Approval{{User: "bob"}} }, want: "carries no approvals"},
		{name: "cameras in payload differ", by: "alice", mutate: func(r *Request) { r.Cameras = []string{"praha-1/entrance"} }, want: "but its selector matches"},
		{name: "cameras in payload equal", by: "alice", mutate: func(r *Request) { r.Cameras = []string{"praha-1/entrance", "praha-1/tills"} }},
		{name: "bad id", by: "alice", mutate: func(r *Request) { r.ID = "a b" }, want: "request id"},
		{name: "key not hex", by: "alice", mutate: func(r *Request) { r.Key = strings.Repeat("zz", 32) }, want: "64 lower-case hex"},
		{name: "key 31 bytes", by: "alice", mutate: func(r *Request) { r.Key = oneTimeKey[:62] }, want: "64 hex digits"},
		{name: "key 33 bytes", by: "alice", mutate: func(r *Request) { r.Key = oneTimeKey + "00" }, want: "64 hex digits"},
		{name: "key upper case", by: "alice", mutate: func(r *Request) { r.Key = strings.ToUpper(hex.EncodeToString(make([]byte, 31))) + "AB" }, want: "lower-case"},
		{name: "key all zero", by: "alice", mutate: func(r *Request) { r.Key = strings.Repeat("0", 64) }, want: "all zero"},
		{name: "no range", by: "alice", mutate: func(r *Request) { r.From = time.Time{} }, want: "needs a footage range"},
		{name: "from equals to", by: "alice", mutate: func(r *Request) { r.From = r.To }, want: "is not before to"},
		{name: "from after to", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(time.Second) }, want: "is not before to"},
		{name: "range of exactly a day", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(-MaxRequestSpan) }},
		{name: "range too long", by: "alice", mutate: func(r *Request) { r.From = r.To.Add(-MaxRequestSpan - time.Second) }, want: "longer than 24h0m0s"},
		{name: "range ends at the command time", by: "alice", mutate: func(r *Request) { r.To = tc }},
		{name: "range ends in the future", by: "alice", mutate: func(r *Request) { r.To = tc.Add(time.Second) }, want: "only recorded footage"},
		{name: "expires at the command time", by: "alice", mutate: func(r *Request) { r.Expires = tc }, want: "not after the command's time"},
		{name: "expired", by: "alice", mutate: func(r *Request) { r.Expires = tc.Add(-time.Hour) }, want: "not after the command's time"},
		{name: "expires in exactly 7 days", by: "alice", mutate: func(r *Request) { r.Expires = tc.Add(MaxRequestLife) }},
		{name: "expires after 7 days", by: "alice", mutate: func(r *Request) { r.Expires = tc.Add(MaxRequestLife + time.Second) }, want: "at most 168h0m0s"},
		{name: "empty purpose", by: "alice", mutate: func(r *Request) { r.Purpose = "" }, want: "needs a purpose"},
		{name: "blank basis", by: "alice", mutate: func(r *Request) { r.Basis = " \n " }, want: "needs a legal basis"},
		{name: "purpose too long", by: "alice", mutate: func(r *Request) { r.Purpose = strings.Repeat("x", MaxRequestText+1) }, want: "longer than 1024"},
		{name: "purpose with control character", by: "alice", mutate: func(r *Request) { r.Purpose = "a\x1b[2Jb" }, want: "control character"},
		{name: "bad selector", by: "alice", mutate: func(r *Request) { r.Selector = "praha-1" }, want: "want SITE/CAMERA"},
		{name: "selector matches nothing", by: "alice", mutate: func(r *Request) { r.Selector = "tag:nothing" }, want: "matches no camera"},
		{name: "no node", by: "alice", mutate: func(r *Request) { r.Node = "" }, want: `node "" is not a live member`},
		{name: "unknown node", by: "alice", mutate: func(r *Request) { r.Node = "nope" }, want: `node "nope" is not a live member`},
		{name: "revoked node", by: "alice", want: `node "admin-1" is not a live member`, setup: func(t *testing.T, f *reqFed) {
			f.revoke(t, KindRevokeNode, "admin-1", t0)
		}},
		{name: "witness node", by: "alice", mutate: func(r *Request) { r.Node = "witness" }, want: "has role witness"},
		{name: "datacenter node", by: "alice", mutate: func(r *Request) { r.Node = "dc-a" }},
		{name: "store for its own site", by: "alice", mutate: func(r *Request) { r.Node = "store-praha-1" }},
		{name: "store for another site", by: "alice", mutate: func(r *Request) { r.Node, r.Selector = "store-praha-1", "tag:doors" },
			want: "its own site praha-1 only, and brno-1/door is not there"},
	}
	for _, tc2 := range cases {
		t.Run(tc2.name, func(t *testing.T) {
			f := newReqFed(t)
			if tc2.setup != nil {
				tc2.setup(t, f)
			}
			r := goodRequest()
			if tc2.mutate != nil {
				tc2.mutate(r)
			}
			env := f.create(t, tc2.by, r, tc)
			if tc2.want != "" {
				refused(t, f.s, env, tc2.want)
				return
			}
			mustApply(t, f.s, env)
			got := f.s.Requests[r.ID]
			if got.Requester != tc2.by || !got.Created.Equal(tc) || len(got.Cameras) == 0 {
				t.Fatalf("stored request %+v: want requester %s, created %v and its cameras", got, tc2.by, tc)
			}
			if st := f.s.RequestStatus(got, tc); st != RequestPending {
				t.Fatalf("new request is %s, want pending", st)
			}
		})
	}
}

func TestRequestIDIsUnique(t *testing.T) {
	f := newReqFed(t)
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	refused(t, f.s, f.create(t, "frank", goodRequest(), tc), `request "r1" exists`)
}

// step is one command in a request's life; "" as want means it applies.
type step struct {
	by, op string        // op: approve, deny, wrong-digest, revoke-user
	arg    string        // deny's reason, revoke's user
	at     time.Duration // after tc
	want   string
}

func TestRequestDecisions(t *testing.T) {
	m := time.Minute
	cases := []struct {
		name      string
		threshold int
		steps     []step
		status    string
	}{
		{"one approval is pending", 0, []step{{"bob", "approve", "", m, ""}}, RequestPending},
		{"two approvers approve", 0, []step{{"bob", "approve", "", m, ""}, {"carol", "approve", "", 2 * m, ""}}, RequestApproved},
		{"an admin approves too", 0, []step{{"frank", "approve", "", m, ""}, {"bob", "approve", "", 2 * m, ""}}, RequestApproved},
		{"self-approval", 0, []step{{"alice", "approve", "", m, "approvers are never the requester"}}, RequestPending},
		{"self-approval does not count", 0, []step{{"alice", "approve", "", m, "never the requester"}, {"bob", "approve", "", m, ""}}, RequestPending},
		{"viewer cannot approve", 0, []step{{"dave", "approve", "", m, "needs role admin or approver"}}, RequestPending},
		{"auditor cannot approve", 0, []step{{"erin", "approve", "", m, "needs role admin or approver"}}, RequestPending},
		{"revoked approver", 0, []step{{"frank", "revoke-user", "carol", m, ""}, {"carol", "approve", "", 2 * m, `"carol" is revoked`}}, RequestPending},
		{"digest mismatch", 0, []step{{"bob", "wrong-digest", "", m, "the request reviewed is not the one in the policy"}}, RequestPending},
		{"double approval", 0, []step{{"bob", "approve", "", m, ""}, {"bob", "approve", "", 2 * m, `"bob" already approved or denied`}}, RequestPending},
		{"approval at expiry", 0, []step{{"bob", "approve", "", 24 * time.Hour, "expired at"}}, RequestPending},
		{"approval just before expiry", 0, []step{{"bob", "approve", "", 24*time.Hour - time.Second, ""}}, RequestPending},
		{"backdated approval after the clock passed expiry", 0, []step{
			{"frank", "revoke-user", "erin", 24 * time.Hour, ""},
			{"bob", "approve", "", 24*time.Hour - time.Second, "expired at"}}, RequestPending},
		{"approval dated before the request", 0, []step{{"bob", "approve", "", -m, "before request"}}, RequestPending},
		{"approving an approved request", 0, []step{{"bob", "approve", "", m, ""}, {"carol", "approve", "", m, ""}, {"frank", "approve", "", m, "already approved"}}, RequestApproved},
		{"deny is a veto", 0, []step{{"bob", "approve", "", m, ""}, {"carol", "deny", "not a legitimate purpose", m, ""}, {"frank", "approve", "", m, "already denied by carol"}}, RequestDenied},
		{"deny needs a reason", 0, []step{{"carol", "deny", " ", m, "needs a reason"}}, RequestPending},
		{"requester cannot deny", 0, []step{{"alice", "deny", "withdrawn", m, "cannot deny it"}}, RequestPending},
		{"viewer cannot deny", 0, []step{{"dave", "deny", "no", m, "needs role admin or approver"}}, RequestPending},
		{"approver cannot also deny", 0, []step{{"bob", "approve", "", m, ""}, {"bob", "deny", "changed my mind", m, "already approved or denied"}}, RequestPending},
		{"requester revoked", 0, []step{{"frank", "revoke-user", "alice", m, ""}, {"bob", "approve", "", m, `requester "alice" is revoked`}}, RequestPending},
		{"threshold 3: two is pending", 3, []step{{"bob", "approve", "", m, ""}, {"carol", "approve", "", m, ""}}, RequestPending},
		{"threshold 3: three approve", 3, []step{{"bob", "approve", "", m, ""}, {"carol", "approve", "", m, ""}, {"frank", "approve", "", 2 * m, ""}}, RequestApproved},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newReqFed(t)
			f.s.Threshold = c.threshold
			mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
			digest := RequestDigest(f.s.FederationID, f.s.Requests["r1"])
			var lastApproval time.Time
			for i, st := range c.steps {
				var env Envelope
				at := tc.Add(st.at)
				switch st.op {
				case "approve":
					env = f.approve(t, st.by, "r1", digest, at)
				case "wrong-digest":
					other := *f.s.Requests["r1"]
					other.Purpose = "something else"
					env = f.approve(t, st.by, "r1", RequestDigest(f.s.FederationID, &other), at)
				case "deny":
					env = f.deny(t, st.by, "r1", st.arg, at)
				case "revoke-user":
					f.revoke(t, KindRevokeUser, st.arg, at)
					continue
				}
				if st.want != "" {
					refused(t, f.s, env, st.want)
					continue
				}
				if _, err := f.s.Apply(env); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if st.op == "approve" {
					lastApproval = at
				}
			}
			r := f.s.Requests["r1"]
			if got := f.s.RequestStatus(r, tc.Add(time.Hour)); got != c.status {
				t.Fatalf("status %s, want %s", got, c.status)
			}
			if approved := c.status == RequestApproved; approved != !r.ApprovedAt.IsZero() || (approved && !r.ApprovedAt.Equal(lastApproval)) {
				t.Fatalf("approved at %v, want the last approval's time if approved (%v)", r.ApprovedAt, lastApproval)
			}
			for _, a := range r.Approvals {
				if a.User == r.Requester || a.Digest != digest || a.Request != "r1" {
					t.Fatalf("bad approval record %+v", a)
				}
			}
		})
	}
}

// Every replica checks the approver's signature: an approval cannot be
// forged (a leader rewriting the signer or the request) or replayed.
func TestApprovalSignatures(t *testing.T) {
	f := newReqFed(t)
	mallory := newTestUser(t, "mallory")
	mustApply(t, f.s, f.create(t, "alice", goodRequest(), tc))
	r2 := goodRequest()
	r2.ID = "r2"
	mustApply(t, f.s, f.create(t, "alice", r2, tc))
	digest := RequestDigest(f.s.FederationID, f.s.Requests["r1"])

	// mallory's key, claiming to be bob.
	env := (&reqFed{users: map[string]*testUser{"mallory": mallory}}).approve(t, "mallory", "r1", digest, tc)
	body, _ := DecodeCommand(env.Body)
	body.Signer = "bob"
	nb, _ := EncodeCommand(body)
	refused(t, f.s, Envelope{Body: nb, Sig: env.Sig}, "bad signature")
	// carol's key on a body naming bob.
	env = f.approve(t, "carol", "r1", digest, tc)
	body, _ = DecodeCommand(env.Body)
	body.Signer = "bob"
	nb, _ = EncodeCommand(body)
	refused(t, f.s, Envelope{Body: nb, Sig: env.Sig}, "bad signature")
	// bob's approval of r1 moved to r2.
	good := f.approve(t, "bob", "r1", digest, tc)
	body, _ = DecodeCommand(good.Body)
	body.Approval.Request = "r2"
	nb, _ = EncodeCommand(body)
	refused(t, f.s, Envelope{Body: nb, Sig: good.Sig}, "bad signature")
	refused(t, f.s, Envelope{Body: good.Body}, "no signature")
	// Replay.
	mustApply(t, f.s, good)
	refused(t, f.s, good, "replay")
	if n := len(f.s.Requests["r1"].Approvals); n != 1 {
		t.Fatalf("%d approvals, want 1", n)
	}
}

func TestRequestDigest(t *testing.T) {
	base := goodRequest()
	base.Requester, base.Created, base.Cameras = "alice", tc, []string{"praha-1/entrance", "praha-1/tills"}
	d0 := RequestDigest("fed-1", base)
	if RequestDigest("fed-2", base) == d0 {
		t.Error("the digest does not depend on the federation")
	}
	if len(d0) != 64 {
		t.Fatalf("digest %q is not hex SHA-256", d0)
	}
	changes := map[string]func(*Request){
		"id":        func(r *Request) { r.ID = "r2" },
		"requester": func(r *Request) { r.Requester = "frank" },
		"node":      func(r *Request) { r.Node = "dc-a" },
		"selector":  func(r *Request) { r.Selector = "praha-1/entrance" },
		"cameras":   func(r *Request) { r.Cameras = r.Cameras[:1] },
		"from":      func(r *Request) { r.From = r.From.Add(time.Nanosecond) },
		"to":        func(r *Request) { r.To = r.To.Add(-time.Second) },
		"purpose":   func(r *Request) { r.Purpose += "." },
		"basis":     func(r *Request) { r.Basis += "." },
		"key":       func(r *Request) { r.Key = strings.Repeat("1", 64) },
		"expires":   func(r *Request) { r.Expires = r.Expires.Add(time.Second) },
		"created":   func(r *Request) { r.Created = r.Created.Add(time.Second) },
		// Length prefixes: moving bytes between fields changes the digest.
		"purpose|basis": func(r *Request) { r.Purpose, r.Basis = r.Purpose+r.Basis[:1], r.Basis[1:] },
		"cameras split": func(r *Request) { r.Cameras = []string{"praha-1/entrance" + "praha-1/tills"} },
	}
	for name, change := range changes {
		r := cloneRequest(*base)
		change(&r)
		if RequestDigest("fed-1", &r) == d0 {
			t.Errorf("changing %s keeps the digest", name)
		}
	}
	same := cloneRequest(*base)
	same.Approvals = []Approval{{User: "bob"}}
	same.Denials = []Denial{{User: "carol"}}
	same.ApprovedAt = tc
	same.Expires = same.Expires.In(time.FixedZone("CET", 3600)) // the same instant
	if RequestDigest("fed-1", &same) != d0 {
		t.Error("the digest depends on decisions or on a time's zone")
	}
}

func TestRequestStatus(t *testing.T) {
	exp := tc.Add(time.Hour)
	two := []Approval{{User: "bob", Key: "b"}, {User: "carol", Key: "c"}}
	users := func() map[string]*User {
		return map[string]*User{
			"bob":   {Name: "bob", Role: UserApprover, Fingerprint: "b"},
			"carol": {Name: "carol", Role: UserApprover, Fingerprint: "c"},
			"dave":  {Name: "dave", Role: UserViewer, Fingerprint: "d"},
		}
	}
	cases := []struct {
		name      string
		r         Request
		threshold int
		change    func(map[string]*User)
		now       time.Time
		want      string
	}{
		{"new", Request{Expires: exp}, 0, nil, tc, RequestPending},
		{"one of two", Request{Expires: exp, Approvals: two[:1]}, 2, nil, tc, RequestPending},
		{"two of two", Request{Expires: exp, Approvals: two}, 2, nil, tc, RequestApproved},
		{"threshold 0 means 2", Request{Expires: exp, Approvals: two[:1]}, 0, nil, tc, RequestPending},
		{"threshold -1 means 2", Request{Expires: exp, Approvals: two}, -1, nil, tc, RequestApproved},
		{"two of three", Request{Expires: exp, Approvals: two}, 3, nil, tc, RequestPending},
		{"denied despite approvals", Request{Expires: exp, Approvals: two, Denials: []Denial{{User: "x"}}}, 2, nil, tc, RequestDenied},
		{"last instant", Request{Expires: exp, Approvals: two}, 2, nil, exp.Add(-time.Nanosecond), RequestApproved},
		{"at expiry", Request{Expires: exp, Approvals: two}, 2, nil, exp, RequestExpired},
		{"denied and expired", Request{Expires: exp, Denials: []Denial{{User: "x"}}}, 2, nil, exp.Add(time.Hour), RequestExpired},
		// An approval counts only while its approver is current.
		{"approver revoked since", Request{Expires: exp, Approvals: two}, 2, func(u map[string]*User) { u["carol"].Revoked = true }, tc, RequestPending},
		{"approver demoted since", Request{Expires: exp, Approvals: two}, 2, func(u map[string]*User) { u["carol"].Role = UserViewer }, tc, RequestPending},
		{"approver gone", Request{Expires: exp, Approvals: two}, 2, func(u map[string]*User) { delete(u, "carol") }, tc, RequestPending},
		{"approval by another key", Request{Expires: exp, Approvals: []Approval{{User: "bob", Key: "b"}, {User: "carol", Key: "x"}}}, 2, nil, tc, RequestPending},
		{"one approver twice", Request{Expires: exp, Approvals: []Approval{two[0], two[0]}}, 2, nil, tc, RequestPending},
		{"requester's own approval", Request{Requester: "carol", Expires: exp, Approvals: two}, 2, nil, tc, RequestPending},
		{"a viewer's approval", Request{Expires: exp, Approvals: []Approval{two[0], {User: "dave", Key: "d"}}}, 2, nil, tc, RequestPending},
	}
	for _, c := range cases {
		s := &State{Federation: "acme", Threshold: c.threshold, Users: users()}
		if c.change != nil {
			c.change(s.Users)
		}
		if got := s.RequestStatus(&c.r, c.now); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestReleasableRequest(t *testing.T) {
	f := newReqFed(t)
	for _, id := range []string{"ok", "pending", "denied", "lost-node", "lost-user"} {
		r := goodRequest()
		r.ID = id
		by := "alice"
		if id == "lost-node" {
			r.Node = "store-praha-1"
		}
		if id == "lost-user" {
			by = "dave"
			f.grant(t, "g-dave", "dave", ActExport, "*", Window{})
		}
		mustApply(t, f.s, f.create(t, by, r, tc))
		d := RequestDigest(f.s.FederationID, f.s.Requests[id])
		switch id {
		case "pending":
			mustApply(t, f.s, f.approve(t, "bob", id, d, tc))
		case "denied":
			mustApply(t, f.s, f.deny(t, "bob", id, "no case number", tc))
		default:
			mustApply(t, f.s, f.approve(t, "bob", id, d, tc))
			mustApply(t, f.s, f.approve(t, "carol", id, d, tc))
		}
	}
	f.revoke(t, KindRevokeNode, "store-praha-1", tc)
	f.revoke(t, KindRevokeUser, "dave", tc)
	exp := tc.Add(24 * time.Hour)
	cases := []struct {
		id   string
		now  time.Time
		want string // error; "" for releasable
	}{
		{"ok", tc, ""},
		{"ok", exp.Add(-time.Nanosecond), ""},
		{"ok", exp, "expired at"},
		{"pending", tc, "pending (1 of 2 approvals)"},
		{"denied", tc, "denied by bob: no case number"},
		{"nope", tc, `no request "nope"`},
		{"lost-node", tc, `node "store-praha-1" is not a live member`},
		{"lost-user", tc, `requester "dave" is revoked`},
	}
	for _, c := range cases {
		r, err := f.s.ReleasableRequest(c.id, c.now)
		if c.want == "" {
			if err != nil || r == nil || r.ID != c.id {
				t.Errorf("%s at %v: %v, want releasable", c.id, c.now, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotReleasable) || !strings.Contains(err.Error(), c.want) || r != nil {
			t.Errorf("%s at %v: %v, want ErrNotReleasable mentioning %q", c.id, c.now, err, c.want)
		}
	}
	// What it returns is a copy: the caller cannot change the state.
	r, _ := f.s.ReleasableRequest("ok", tc)
	r.Cameras[0], r.Approvals[0].User = "x/y", "mallory"
	if got := f.s.Requests["ok"]; got.Cameras[0] == "x/y" || got.Approvals[0].User == "mallory" {
		t.Fatal("ReleasableRequest returned the state's own request")
	}
	if _, err := (*State)(nil).ReleasableRequest("ok", tc); !errors.Is(err, ErrNotReleasable) {
		t.Fatalf("nil state: %v", err)
	}
}

func TestRequestCovers(t *testing.T) {
	// The state after the requests were made: praha-1/tills was re-added
	// without its doors tag, brno-1/door removed, praha-1/new added.
	s := &State{Cameras: map[string]*Camera{
		"praha-1/entrance": {Site: "praha-1", Name: "entrance", Tags: []string{"doors"}},
		"praha-1/tills":    {Site: "praha-1", Name: "tills"},
		"praha-1/new":      {Site: "praha-1", Name: "new", Tags: []string{"doors"}},
	}}
	from, to := t0.Add(-time.Hour), t0
	req := func(sel string, cams ...string) *Request {
		return &Request{Selector: sel, Cameras: cams, From: from, To: to}
	}
	tag := req("tag:doors", "brno-1/door", "praha-1/entrance", "praha-1/tills")
	site := req("brno-1/*", "brno-1/door")
	one := req("brno-1/door", "brno-1/door")
	all := req("*", "brno-1/door", "praha-1/entrance", "praha-1/tills")
	type span struct{ from, to time.Time }
	cases := []struct {
		name   string
		r      *Request
		camera string
		span   span
		want   bool
	}{
		{"tag, still tagged", tag, "praha-1/entrance", span{from, to}, true},
		{"tag, tag removed since", tag, "praha-1/tills", span{from, to}, false},
		{"tag, camera removed", tag, "brno-1/door", span{from, to}, false},
		{"tag, camera added since", tag, "praha-1/new", span{from, to}, false},
		{"site/*, camera removed", site, "brno-1/door", span{from, to}, true},
		{"site/cam, camera removed", one, "brno-1/door", span{from, to}, true},
		{"*, camera removed", all, "brno-1/door", span{from, to}, true},
		{"*, camera added since", all, "praha-1/new", span{from, to}, false},
		{"other camera", one, "praha-1/entrance", span{from, to}, false},
		{"inside", one, "brno-1/door", span{from.Add(time.Minute), to.Add(-time.Minute)}, true},
		{"around", one, "brno-1/door", span{from.Add(-time.Hour), to.Add(time.Hour)}, true},
		{"ends at from", one, "brno-1/door", span{from.Add(-time.Hour), from}, false},
		{"ends just after from", one, "brno-1/door", span{from.Add(-time.Hour), from.Add(time.Nanosecond)}, true},
		{"starts at to", one, "brno-1/door", span{to, to.Add(time.Hour)}, false},
		{"starts just before to", one, "brno-1/door", span{to.Add(-time.Nanosecond), to.Add(time.Hour)}, true},
		{"empty span", one, "brno-1/door", span{from.Add(time.Minute), from.Add(time.Minute)}, false},
		{"nil request", nil, "brno-1/door", span{from, to}, false},
	}
	for _, c := range cases {
		if got := s.RequestCovers(c.r, c.camera, c.span.from, c.span.to); got != c.want {
			t.Errorf("%s: covers %s = %v, want %v", c.name, c.camera, got, c.want)
		}
	}
	if (*State)(nil).RequestCovers(one, "brno-1/door", from, to) {
		t.Error("a nil state covers")
	}
}

func TestRequestClip(t *testing.T) {
	r := &Request{From: t0, To: t0.Add(time.Hour)}
	h := time.Hour
	cases := []struct {
		from, to, wantFrom, wantTo time.Time
		ok                         bool
	}{
		{t0.Add(-h), t0.Add(2 * h), t0, t0.Add(h), true},
		{t0.Add(10 * time.Minute), t0.Add(20 * time.Minute), t0.Add(10 * time.Minute), t0.Add(20 * time.Minute), true},
		{t0.Add(-h), t0, t0, t0, false},
		{t0.Add(h), t0.Add(2 * h), t0.Add(h), t0.Add(h), false},
	}
	for i, c := range cases {
		f, to, ok := r.Clip(c.from, c.to)
		if ok != c.ok || (ok && (!f.Equal(c.wantFrom) || !to.Equal(c.wantTo))) {
			t.Errorf("%d: Clip = [%v, %v) %v, want [%v, %v) %v", i, f, to, ok, c.wantFrom, c.wantTo, c.ok)
		}
	}
}

// The approved scope cannot be widened after the fact, not even by an
// admin requester re-adding a camera with the selector's tag.
func TestRequestScopeIsFixed(t *testing.T) {
	f := newReqFed(t)
	r := goodRequest()
	r.Selector = "tag:doors"
	mustApply(t, f.s, f.create(t, "alice", r, tc))
	d := RequestDigest(f.s.FederationID, f.s.Requests["r1"])
	mustApply(t, f.s, f.approve(t, "bob", "r1", d, tc))
	mustApply(t, f.s, f.approve(t, "carol", "r1", d, tc))
	c := cmd(KindRemoveCamera, tc)
	c.Name = "praha-1/tills"
	mustApply(t, f.s, f.users["alice"].sign(t, c))
	c = cmd(KindAddCamera, tc)
	c.Camera = &Camera{Site: "praha-1", Name: "tills", Purpose: "p", LegalBasis: "b", Retention: time.Hour, Tags: []string{"doors"}}
	mustApply(t, f.s, f.users["alice"].sign(t, c))

	got, err := f.s.ReleasableRequest("r1", tc)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"brno-1/door", "praha-1/entrance"}; !slices.Equal(got.Cameras, want) {
		t.Fatalf("request names %v, want %v", got.Cameras, want)
	}
	if f.s.RequestCovers(got, "praha-1/tills", r.From, r.To) {
		t.Fatal("a camera tagged after approval is covered")
	}
	if !f.s.RequestCovers(got, "praha-1/entrance", r.From, r.To) {
		t.Fatal("an approved camera is not covered")
	}
}

// Requests expired for longer than the replay window leave the state.
func TestRequestsArePruned(t *testing.T) {
	f := newReqFed(t)
	r := goodRequest()
	r.Expires = tc.Add(time.Hour)
	mustApply(t, f.s, f.create(t, "alice", r, tc))
	site := func(name string, at time.Time) {
		c := cmd(KindAddSite, at)
		c.Site = &Site{Name: name, Jurisdiction: "EU"}
		f.admin(t, c)
	}
	site("s1", r.Expires.Add(ReplayWindow))
	if f.s.Requests["r1"] == nil {
		t.Fatal("pruned at exactly the replay window after expiry")
	}
	site("s2", r.Expires.Add(ReplayWindow+time.Second))
	if f.s.Requests["r1"] != nil {
		t.Fatal("not pruned a replay window after expiry")
	}
	// The ID is free again, and the old digest names the old request only.
	r = goodRequest()
	at := r.Expires.Add(ReplayWindow + time.Second)
	r.To, r.Expires = at.Add(-time.Hour), at.Add(time.Hour)
	r.From = r.To.Add(-time.Hour)
	mustApply(t, f.s, f.create(t, "alice", r, at))
}
