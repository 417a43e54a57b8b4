package release

import (
	"strings"
	"testing"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// The recovery key never answers to a custodian: that node would hold its
// own share beside the recovery key's answers for segments it names itself.
func TestRecoveryNeverAnswersACustodian(t *testing.T) {
	rk, err := keys.NewCustodianKey("recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	dc, err := keys.NewCustodianKey("dc-a")
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Zero()
	v := &policy.State{Federation: "acme", Recovery: rk.Custodian().PublicKey(),
		Nodes: map[string]*policy.Node{"dc-a": {Name: "dc-a", Role: policy.RoleDatacenter, Custodian: dc.Custodian().PublicKey()},
			"desk": {Name: "desk", Role: policy.RoleAdminNode}}}
	if err := recoveryMayAnswer(v, &policy.Request{ID: "r1", Node: "dc-a"}, rk); err == nil || !strings.Contains(err.Error(), "a custodian") {
		t.Fatalf("recovery answered a request delivered to a custodian: %v", err)
	}
	if err := recoveryMayAnswer(v, &policy.Request{ID: "r1", Node: "desk"}, rk); err != nil {
		t.Fatalf("recovery refused an admin node: %v", err)
	}
	if err := recoveryMayAnswer(v, &policy.Request{ID: "r1", Node: "desk"}, dc); err == nil || !strings.Contains(err.Error(), "not this federation's recovery key") {
		t.Fatalf("a datacenter's key answered as the recovery key: %v", err)
	}
}
