package main

import (
	"reflect"
	"testing"

	"github.com/custos-cctv/custos/policy"
)

// passkey require --roles takes approver and admin, or none; any other
// role never approves, so requiring it of one is a usage error.
func TestParseRoles(t *testing.T) {
	for in, want := range map[string][]policy.UserRole{
		"approver,admin":   {policy.UserApprover, policy.UserAdmin},
		" approver ":       {policy.UserApprover},
		"none":             nil,
		"approver, admin ": {policy.UserApprover, policy.UserAdmin},
	} {
		got, err := parseRoles(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseRoles(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "viewer", "approver,auditor", "approver,,admin"} {
		if _, err := parseRoles(in); err == nil {
			t.Errorf("parseRoles(%q) accepted it", in)
		}
	}
}
