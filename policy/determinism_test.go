package policy

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestApplyDeterministic: the same log gives byte-identical state on every
// replica, including one that restarts from a snapshot halfway, whatever mix
// of valid and refused commands the log holds.
func TestApplyDeterministic(t *testing.T) {
	alice, bob := newTestUser(t, "alice"), newTestUser(t, "bob")
	signers := []*testUser{alice, bob}
	rapid.Check(t, func(rt *rapid.T) {
		var log []Envelope
		g := &Command{ID: "genesis", Time: t0, Kind: KindGenesis, Genesis: &Genesis{Federation: "acme", Admin: alice.user(UserAdmin),
			Node: Node{Name: "dc-a", PublicKey: nodeKey(1), Role: RoleDatacenter, Jurisdiction: "EU"}}}
		log = append(log, unsigned(rt, g))
		n := rapid.IntRange(1, 40).Draw(rt, "commands")
		for i := range n {
			at := t0.Add(time.Duration(rapid.IntRange(-30, 300).Draw(rt, "minutes")) * time.Minute)
			c := &Command{ID: fmt.Sprintf("c%d", rapid.IntRange(0, n).Draw(rt, "id")), Time: at}
			name := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(rt, "name")
			switch rapid.IntRange(0, 7).Draw(rt, "kind") {
			case 0:
				c.Kind, c.Site = KindAddSite, &Site{Name: "site-" + name, Jurisdiction: "EU"}
			case 1:
				c.Kind, c.Node = KindAddNode, &Node{Name: "store-" + name, PublicKey: nodeKey(byte(10 + i)), Role: RoleStore, Site: "site-" + name, Jurisdiction: "EU"}
			case 2:
				c.Kind, c.Camera = KindAddCamera, &Camera{Site: "site-" + name, Name: "cam", Purpose: "p", LegalBasis: "b", Retention: time.Hour}
			case 3:
				c.Kind, c.Grant = KindAddGrant, &Grant{ID: "g-" + name, Subject: Subject{"user", "bob"}, Actions: []Action{ActLive}, Selector: "site-" + name + "/*",
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
			}
			signer := signers[rapid.IntRange(0, 1).Draw(rt, "signer")]
			log = append(log, signer.sign(rt, c))
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
