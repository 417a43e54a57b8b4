package join

import (
	"strings"
	"testing"

	"github.com/custos-cctv/custos/policy"
)

// verifyJoin decides only once the replica holds the node, and then checks
// the invite, its maker and the token's signer.
func TestVerifyJoin(t *testing.T) {
	st := &policy.State{Federation: "acme",
		Nodes:   map[string]*policy.Node{"store-1": {Name: "store-1", PublicKey: "nodekey:self", Role: policy.RoleStore}},
		Invites: map[string]*policy.Invite{"inv-1": {ID: "inv-1", Role: policy.RoleStore, Name: "store-1", CreatedBy: "alice", Spent: true}},
		Users: map[string]*policy.User{
			"alice": {Name: "alice", Role: policy.UserAdmin, Fingerprint: "aa11"},
			"bob":   {Name: "bob", Role: policy.UserApprover, Fingerprint: "bb22"},
		},
	}
	ji := func(invite, signer string) *Info {
		return &Info{Invite: invite, Signer: signer, Role: string(policy.RoleStore)}
	}
	if done, err := verifyJoin(&policy.State{}, "nodekey:self", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("no policy yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:other", ji("inv-1", "aa11")); done || err != nil {
		t.Fatalf("the node not in the replica yet: %v %v", done, err)
	}
	if done, err := verifyJoin(st, "nodekey:self", ji("inv-1", "AA11")); !done || err != nil {
		t.Fatalf("the inviting admin's key: %v %v", done, err)
	}
	for want, j := range map[string]*Info{
		"holds no invite":          ji("inv-2", "aa11"),
		"not by admin \"alice\"":   ji("inv-1", "bb22"),
		"this node is \"store-1\"": {Invite: "inv-1", Signer: "aa11", Role: string(policy.RoleDatacenter)},
	} {
		if done, err := verifyJoin(st, "nodekey:self", j); !done || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v %v, want an error with %q", j, done, err, want)
		}
	}
	st.Users["alice"].Revoked = true
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "aa11")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by a revoked admin: %v", err)
	}
	st.Users["alice"].Revoked = false
	st.Invites["inv-1"].CreatedBy = "bob"
	if _, err := verifyJoin(st, "nodekey:self", ji("inv-1", "bb22")); err == nil || !strings.Contains(err.Error(), "not a current admin") {
		t.Errorf("an invite by an approver: %v", err)
	}
}
