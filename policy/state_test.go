package policy

import (
	"strings"
	"testing"
	"time"
)

// A camera's footage is fetched from a live store of its site: never a
// revoked one, another site's, a datacenter, or a node outside its window;
// and a node's name is found by its key, revoked or not.
func TestStoreOfAndNameOfKey(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	s := &State{
		Cameras: map[string]*Camera{"praha-1/door": {Site: "praha-1", Name: "door"}},
		Nodes: map[string]*Node{
			"a-store": {Name: "a-store", Role: RoleStore, Site: "praha-1", Revoked: true, PublicKey: "nodekey:aa"},
			"b-brno":  {Name: "b-brno", Role: RoleStore, Site: "brno-1"},
			"c-dc":    {Name: "c-dc", Role: RoleDatacenter},
			"d-later": {Name: "d-later", Role: RoleStore, Site: "praha-1", Window: Window{From: now.Add(time.Hour)}},
			"e-store": {Name: "e-store", Role: RoleStore, Site: "praha-1", PublicKey: "nodekey:ee"},
			"f-store": {Name: "f-store", Role: RoleStore, Site: "praha-1"},
		},
	}
	if got, err := s.StoreOf("praha-1/door", now); err != nil || got != "e-store" {
		t.Errorf("StoreOf = %q, %v; want e-store (the first live store of praha-1)", got, err)
	}
	s.Nodes["e-store"].Revoked, s.Nodes["f-store"].Revoked = true, true
	if got, err := s.StoreOf("praha-1/door", now); err == nil || !strings.Contains(err.Error(), "no live store") {
		t.Errorf("StoreOf with every praha-1 store revoked or outside its window = %q, %v", got, err)
	}
	if _, err := s.StoreOf("praha-1/yard", now); err == nil || !strings.Contains(err.Error(), "no longer in the policy") {
		t.Errorf("StoreOf of an unknown camera: %v", err)
	}
	if s.NameOfKey("nodekey:aa") != "a-store" || s.NameOfKey("nodekey:ee") != "e-store" || s.NameOfKey("nodekey:none") != "" {
		t.Error("NameOfKey does not find nodes by key, revoked ones included")
	}
}
