package policy

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestApplyDeterministic: the same log gives byte-identical state on every
// replica, including one that restarts from a snapshot halfway, whatever mix
// of valid and refused commands the log holds.
func TestApplyDeterministic(t *testing.T) {
	alice, bob, carol := newTestUser(t, "alice"), newTestUser(t, "bob"), newTestUser(t, "carol")
	signers := []*testUser{alice, bob, carol}
	// bob's and carol's passkeys; role approver approves with them.
	auths := map[string]*authenticator{"bob": newAuthenticator(t, "localhost"), "carol": newEdAuthenticator(t, "localhost")}
	rapid.Check(t, func(rt *rapid.T) {
		var log []Envelope
		g := &Command{ID: "genesis", Time: t0, Kind: KindGenesis, Genesis: &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
			Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}}
		log = append(log, unsigned(rt, g))
		// ref follows the log as it is made, so that approvals can name the
		// digest of the request the state holds.
		var ref State
		ref.Apply(log[0])
		// Site a, its camera, approver carol, a request and often approver
		// bob exist from the start, so that requests on site a can be made,
		// approved and denied.
		carolUser, bobUser := carol.user(UserApprover), bob.user(UserApprover)
		pre := []*Command{
			{ID: "pre-site", Time: t0, Kind: KindAddSite, Site: &Site{Name: "site-a", Jurisdiction: "EU"}},
			{ID: "pre-cam", Time: t0, Kind: KindAddCamera, Camera: &Camera{Site: "site-a", Name: "cam", Purpose: "p", LegalBasis: "b", Retention: time.Hour}},
			{ID: "pre-carol", Time: t0, Kind: KindAddUser, User: &carolUser},
			{ID: "pre-bob", Time: t0, Kind: KindAddUser, User: &bobUser},
			{ID: "pre-pk-bob", Time: t0, Kind: KindAddPasskey, PasskeyChange: &PasskeyChange{User: "bob", Passkey: auths["bob"].passkey(rt, "bob's")}},
			{ID: "pre-pk-carol", Time: t0, Kind: KindAddPasskey, PasskeyChange: &PasskeyChange{User: "carol", Passkey: auths["carol"].passkey(rt, "carol's")}},
			{ID: "pre-require", Time: t0, Kind: KindRequirePasskeys, PasskeyRequirement: &PasskeyRequirement{Roles: []UserRole{UserApprover}}},
			{ID: "pre-audit", Time: t0, Kind: KindSetAuditRetention, AuditRetention: &AuditRetention{Retention: 60 * 24 * time.Hour,
				Justification: "two months of operator logs for the insurer"}},
			{ID: "pre-seal", Time: t0, Kind: KindSeal, Seal: &Seal{Threshold: 2}},
			{ID: "pre-request", Time: t0, Kind: KindCreateRequest, Request: &Request{ID: "r-pre", Node: "dc-a", Selector: "site-a/cam",
				From: t0.Add(-time.Hour), To: t0, Purpose: "p", Basis: "b", Key: oneTimeKey, Expires: t0.Add(48 * time.Hour)}},
		}
		for _, c := range pre {
			log = append(log, alice.sign(rt, c))
			ref.Apply(log[len(log)-1])
		}
		n := rapid.IntRange(1, 40).Draw(rt, "commands")
		for i := range n {
			at := t0.Add(time.Duration(rapid.IntRange(-30, 300).Draw(rt, "minutes")) * time.Minute)
			c := &Command{ID: fmt.Sprintf("c%d", rapid.IntRange(0, n).Draw(rt, "id")), Time: at}
			name := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(rt, "name")
			var assertBy string // whose authenticator asserts the approval
			switch rapid.IntRange(0, 25).Draw(rt, "kind") {
			case 0:
				c.Kind, c.Site = KindAddSite, &Site{Name: "site-" + name, Jurisdiction: "EU"}
			case 1:
				c.Kind, c.Node = KindAddNode, &Node{Name: "store-" + name, PublicKey: nodeKey(byte(10 + i)), Role: RoleStore, Site: "site-" + name, Jurisdiction: "EU"}
			case 2:
				c.Kind, c.Camera = KindAddCamera, &Camera{Site: "site-" + name, Name: "cam", Purpose: "p", LegalBasis: "b", Retention: time.Hour}
			case 3:
				acts := rapid.SampledFrom([][]Action{{ActLive}, {ActLive, ActExport}}).Draw(rt, "actions")
				c.Kind, c.Grant = KindAddGrant, &Grant{ID: "g-" + name, Subject: Subject{"user", "bob"}, Actions: acts, Selector: "site-" + name + "/*",
					Window: Window{Until: at.Add(time.Hour)}}
			case 4:
				c.Kind, c.Name = KindRevokeGrant, "g-"+name
			case 5:
				u := bob.user(UserApprover)
				c.Kind, c.User = KindAddUser, &u
			case 6:
				c.Kind, c.Name = KindRevokeNode, "store-"+name
			case 7:
				c.Kind, c.Name = KindRemoveCamera, "site-"+name+"/cam"
			case 8:
				u := carol.user(UserApprover)
				c.Kind, c.User = KindAddUser, &u
			case 9:
				life := time.Duration(rapid.IntRange(1, 48).Draw(rt, "life")) * time.Hour
				c.Kind, c.Request = KindCreateRequest, &Request{ID: "r-" + name, Node: "dc-a", Selector: "site-a/*",
					From: at.Add(-2 * time.Hour), To: at.Add(-time.Hour), Purpose: "p", Basis: "b", Key: oneTimeKey, Expires: at.Add(life)}
			case 10:
				id, digest := pickRequest(rt, &ref), "wrong"
				if r := ref.Requests[id]; r != nil && rapid.IntRange(0, 3).Draw(rt, "digest") > 0 {
					digest = RequestDigest(ref.FederationID, r)
				}
				c.Kind, c.Approval = KindApproveRequest, &Approval{Request: id, Digest: digest}
			case 11:
				c.Kind, c.Denial = KindDenyRequest, &Denial{Request: pickRequest(rt, &ref), Reason: "no"}
			case 12:
				life := time.Duration(rapid.IntRange(1, 48).Draw(rt, "life")) * time.Hour
				c.Kind, c.Request = KindCreateRequest, &Request{ID: "e-" + name, Action: ActionErase, Selector: "site-a/*",
					From: at.Add(-3 * time.Hour), To: at.Add(-time.Hour), Purpose: "art. 17", Expires: at.Add(life)}
			case 13:
				until := time.Duration(rapid.IntRange(1, 300).Draw(rt, "until")) * time.Minute
				c.Kind, c.Request = KindCreateRequest, &Request{ID: "h-" + name, Action: ActionHold, Selector: "site-a/cam",
					From: at.Add(-2 * time.Hour), To: at, Purpose: "incident", Expires: at.Add(24 * time.Hour), Until: at.Add(until)}
			case 14:
				c.Kind, c.SAR = KindOpenSAR, &SubjectAccess{ID: "s-" + name, Subject: "ref " + name, Received: day(at).AddDate(0, 0, -rapid.IntRange(0, 40).Draw(rt, "age")),
					Selector: "site-a/*", From: at.Add(-2 * time.Hour), To: at.Add(-time.Hour)}
			case 15:
				c.Kind, c.SARExtension = KindExtendSAR, &SARExtension{SAR: "s-" + name, Months: rapid.IntRange(0, 3).Draw(rt, "by"), Reason: "volume"}
			case 16:
				c.Kind, c.SARClosure = KindCloseSAR, &SARClosure{SAR: "s-" + name, Answered: day(at), Files: filesHash}
			case 17:
				ctl := &Controller{Name: "Novák " + name, Address: "Národní 1", Email: rapid.SampledFrom([]string{"gdpr@novak.cz", "bad"}).Draw(rt, "email")}
				if rapid.Bool().Draw(rt, "dpo") {
					ctl.DPOName, ctl.DPOEmail = "J. Dvořáková", "dpo@novak.cz"
				}
				c.Kind, c.Controller = KindSetController, ctl
			case 18:
				age := time.Duration(rapid.IntRange(-1, 100).Draw(rt, "detected")) * time.Hour
				c.Kind, c.Breach = KindOpenBreach, &Breach{ID: "b-" + name, What: "disk stolen", Detected: at.Add(-age), ApproxSubjects: 10}
			case 19:
				u := &BreachUpdate{Breach: "b-" + name, Notified: at.Add(-time.Duration(rapid.IntRange(0, 5).Draw(rt, "notified")) * time.Hour)}
				if rapid.Bool().Draw(rt, "late") {
					u.LateReason = "the weekend"
				}
				c.Kind, c.BreachUpdate = KindUpdateBreach, u
			case 20:
				x := &BreachClosure{Breach: "b-" + name, Closed: at, Outcome: "replaced"}
				if rapid.Bool().Draw(rt, "unnotified") {
					x.NotNotifiedReason = "unlikely to result in a risk"
				}
				c.Kind, c.BreachClosure = KindCloseBreach, x
			case 21:
				// Sealed: refused directly, as governance.
				c.Kind, c.AuditRetention = KindSetAuditRetention, &AuditRetention{Retention: 30 * 24 * time.Hour}
			case 22:
				// Sealed: refused directly, as governance.
				r := DefaultAlertRules()
				r.BulkExports = rapid.IntRange(0, 1000).Draw(rt, "bulk")
				c.Kind, c.AlertRules = KindSetAlertRules, &r
			case 23:
				// An approval with a passkey: the signer's own (valid), or
				// another's.
				id, digest := pickRequest(rt, &ref), "wrong"
				if r := ref.Requests[id]; r != nil && rapid.IntRange(0, 3).Draw(rt, "digest") > 0 {
					digest = RequestDigest(ref.FederationID, r)
				}
				c.Kind, c.Approval = KindApproveRequest, &Approval{Request: id, Digest: digest}
				assertBy = rapid.SampledFrom([]string{"bob", "carol"}).Draw(rt, "authenticator")
			case 24:
				// Sealed: the last passkey of a required role is governance.
				who := rapid.SampledFrom([]string{"bob", "carol"}).Draw(rt, "passkey owner")
				c.Kind, c.PasskeyChange = KindRemovePasskey, &PasskeyChange{User: who, ID: auths[who].id}
			case 25:
				// Sealed: refused directly, as governance.
				c.Kind, c.PasskeyRequirement = KindRequirePasskeys, &PasskeyRequirement{}
			}
			signer := signers[rapid.IntRange(0, 2).Draw(rt, "signer")]
			if assertBy != "" {
				c.Signer = signer.name
				c.Approval.Assertion = auths[assertBy].assert(rt, ApprovalChallenge(ref.FederationID, c), gesture{})
			}
			env := signer.sign(rt, c)
			log = append(log, env)
			// Check and Apply on a Successor, as the leader and the
			// replicas run them, leave ref as it was and agree with Apply.
			before, _ := ref.Marshal()
			_, checked := ref.Check(env)
			_, onSuccessor := ref.Successor().Apply(env)
			if after, _ := ref.Marshal(); !bytes.Equal(before, after) {
				rt.Fatal("Check or Apply on a successor changed the state")
			}
			_, applied := ref.Apply(env)
			if fmt.Sprint(checked) != fmt.Sprint(applied) || fmt.Sprint(onSuccessor) != fmt.Sprint(applied) {
				rt.Fatalf("Check said %v, Apply on a successor %v, Apply %v", checked, onSuccessor, applied)
			}
		}
		var a, b State
		var refusedA, refusedB int
		half := len(log) / 2
		for i, e := range log {
			if _, err := a.Apply(e); err != nil {
				refusedA++
			}
			if i == half {
				snap, err := b.Marshal()
				if err != nil {
					rt.Fatal(err)
				}
				b = State{}
				if err := b.Unmarshal(snap); err != nil {
					rt.Fatal(err)
				}
			}
			if _, err := b.Apply(e); err != nil {
				refusedB++
			}
		}
		sa, _ := a.Marshal()
		sb, _ := b.Marshal()
		if !bytes.Equal(sa, sb) || refusedA != refusedB {
			rt.Fatalf("replicas diverged (refused %d vs %d):\n%s\n%s", refusedA, refusedB, sa, sb)
		}
		if a.Applied+uint64(refusedA) != uint64(len(log)) {
			rt.Fatalf("applied %d + refused %d != %d commands", a.Applied, refusedA, len(log))
		}
	})
}

// pickRequest returns the ID of one of s's requests, or of none.
func pickRequest(rt *rapid.T, s *State) string {
	ids := append(slices.Sorted(maps.Keys(s.Requests)), "r-none")
	return rapid.SampledFrom(ids).Draw(rt, "request")
}
