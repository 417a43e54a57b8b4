package policy

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// Replicas (segments, key shares, audit journals) go only to live
// datacenters in the policy's data jurisdictions, EU by default (DESIGN §4
// invariant 9); no grant can give that right, and the jurisdiction of a
// node comes from its site or, for a datacenter, from its invite.
func TestReplicaJurisdiction(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	add := func(c *Command) { mustApply(t, s, alice.sign(t, c)) }
	c := cmd(KindAddNode, t0)
	c.Node = &Node{Name: "dc-us", PublicKey: nodeKey(7), Role: RoleDatacenter, Jurisdiction: "US"}
	add(c)
	c = cmd(KindAddNode, t0)
	c.Node = &Node{Name: "dc-old", PublicKey: nodeKey(8), Role: RoleDatacenter, Jurisdiction: "EU", Window: Window{Until: t0.Add(time.Hour)}}
	add(c)

	node := func(n string) Subject { return Subject{"node", n} }
	for _, tc := range []struct {
		subj  Subject
		at    time.Time
		allow bool
		why   string
	}{
		{node("dc-a"), t0, true, "jurisdiction EU"},
		{node("dc-us"), t0, false, "jurisdiction US"},
		{node("store-praha-1"), t0, false, "only datacenters"},
		{node("dc-old"), t0, true, "EU"},
		{node("dc-old"), t0.Add(time.Hour), false, "membership window"},
		{node("nobody"), t0, false, "not in the policy"},
		{Subject{"user", "alice"}, t0, false, ""},
	} {
		d := Authorize(s, tc.subj, ActReplicate, "", tc.at)
		if d.Allow != tc.allow || !strings.Contains(d.Reason, tc.why) {
			t.Errorf("replicate to %s at +%v: %+v, want allow=%v saying %q", tc.subj, tc.at.Sub(t0), d, tc.allow, tc.why)
		}
	}
	if !s.DataJurisdictionAllowed("EU") || s.DataJurisdictionAllowed("US") || s.DataJurisdictionAllowed("") {
		t.Error("the default data jurisdictions are not exactly EU")
	}
	s.DataJurisdictions = []string{"EU", "US"}
	if d := Authorize(s, node("dc-us"), ActReplicate, "", t0); !d.Allow {
		t.Errorf("with US allowed: %+v", d)
	}
	s.DataJurisdictions = nil

	// No grant gives it.
	c = cmd(KindAddGrant, t0)
	c.Grant = &Grant{ID: "g-rep", Subject: node("dc-us"), Actions: []Action{ActReplicate}, Selector: "*"}
	refused(t, s, alice.sign(t, c), "grants give live, playback or export")

	// Invites: a datacenter's jurisdiction comes from its invite; a node
	// of a site has its site's, and a malformed one is refused.
	secret := make([]byte, 32)
	rand.Read(secret)
	ipub, _, err := InviteKeyFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	inv := func(id, site, jur string) *Command {
		c := cmd(KindCreateInvite, t0)
		c.Invite = &Invite{ID: id, Role: RoleDatacenter, Name: "dc-" + id, Site: site, Jurisdiction: jur, Expires: t0.Add(time.Hour), Key: hex.EncodeToString(ipub)}
		if site != "" {
			c.Invite.Role = RoleStore
		}
		return c
	}
	refused(t, s, alice.sign(t, inv("i1", "praha-1", "US")), "has its site's jurisdiction")
	refused(t, s, alice.sign(t, inv("i2", "", "us")), "upper-case letters")
	add(inv("i3", "", "CH"))
	if got := s.inviteJurisdiction(s.Invites["i3"]); got != "CH" {
		t.Errorf("invite i3 makes a node of jurisdiction %q", got)
	}
	add(inv("i4", "", ""))
	if got := s.inviteJurisdiction(s.Invites["i4"]); got != "EU" {
		t.Errorf("an invite without a jurisdiction makes a node of %q, want EU", got)
	}
}
