package gdpr

import (
	"time"

	"github.com/custos-cctv/custos/policy"
)

var t0 = time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC)

// fixture is a federation of two stores with cameras, an empty site, two
// datacenters, a witness, an installer inside its window, users of every
// role and grants (one revoked, one ended), as the policy would hold them.
func fixture() *policy.State {
	return &policy.State{
		Federation:   "acme-retail",
		FederationID: "fed-0123",
		Clock:        t0,
		Sites: map[string]*policy.Site{
			"praha-1": {Name: "praha-1", Jurisdiction: "EU"},
			"brno":    {Name: "brno", Jurisdiction: "EU"},
			"empty":   {Name: "empty", Jurisdiction: "EU"},
		},
		Nodes: map[string]*policy.Node{
			"dc-a":          {Name: "dc-a", Role: policy.RoleDatacenter, Jurisdiction: "EU"},
			"dc-b":          {Name: "dc-b", Role: policy.RoleDatacenter, Jurisdiction: "EU"},
			"dc-old":        {Name: "dc-old", Role: policy.RoleDatacenter, Jurisdiction: "EU", Revoked: true},
			"witness":       {Name: "witness", Role: policy.RoleWitness, Jurisdiction: "EU"},
			"store-praha-1": {Name: "store-praha-1", Role: policy.RoleStore, Site: "praha-1", Jurisdiction: "EU"},
			"store-brno":    {Name: "store-brno", Role: policy.RoleStore, Site: "brno", Jurisdiction: "EU"},
			"admin-alice":   {Name: "admin-alice", Role: policy.RoleAdminNode, Jurisdiction: "EU"},
			"install-1": {Name: "install-1", Role: policy.RoleInstaller, Site: "praha-1", Jurisdiction: "EU",
				Window: policy.Window{From: t0.Add(-2 * time.Hour), Until: t0.Add(6 * time.Hour)}},
			"install-old": {Name: "install-old", Role: policy.RoleInstaller, Site: "brno", Jurisdiction: "EU",
				Window: policy.Window{From: t0.Add(-72 * time.Hour), Until: t0.Add(-48 * time.Hour)}},
		},
		Users: map[string]*policy.User{
			"alice":   {Name: "alice", Role: policy.UserAdmin},
			"bob":     {Name: "bob", Role: policy.UserApprover},
			"carol":   {Name: "carol", Role: policy.UserApprover},
			"dan":     {Name: "dan", Role: policy.UserViewer},
			"erin":    {Name: "erin", Role: policy.UserAuditor},
			"frank":   {Name: "frank", Role: policy.UserHelpdesk},
			"mallory": {Name: "mallory", Role: policy.UserViewer, Revoked: true},
		},
		Cameras: map[string]*policy.Camera{
			"praha-1/entrance": {Site: "praha-1", Name: "entrance",
				Purpose:    "Ochrana majetku a osob před krádeží a násilím u vstupu",
				LegalBasis: "čl. 6 odst. 1 písm. f) GDPR – oprávněný zájem správce",
				Retention:  72 * time.Hour, Tags: []string{"entry"}},
			"praha-1/till": {Site: "praha-1", Name: "till",
				Purpose:       "Ochrana pokladny; účel: předcházení ztrátám a škodám",
				LegalBasis:    "čl. 6 odst. 1 písm. f) GDPR – oprávněný zájem správce",
				Retention:     7 * 24 * time.Hour,
				Justification: "Inventura pokladen je jednou týdně; rozdíly se dohledávají až 7 dní zpětně."},
			"brno/yard": {Site: "brno", Name: "yard",
				Purpose:    "Ochrana skladu a dvora",
				LegalBasis: "čl. 6 odst. 1 písm. f) GDPR – oprávněný zájem správce",
				Retention:  48 * time.Hour},
		},
		Grants: map[string]*policy.Grant{
			"g-dan-live": {ID: "g-dan-live", Subject: policy.Subject{Kind: "user", Name: "dan"}, Actions: []policy.Action{policy.ActLive},
				Selector: "praha-1/*", Window: policy.Window{From: t0.Add(-24 * time.Hour), Until: t0.Add(30 * 24 * time.Hour)},
				Purpose: "ostraha prodejny", GrantedBy: "alice"},
			"g-alice-rec": {ID: "g-alice-rec", Subject: policy.Subject{Kind: "user", Name: "alice"},
				Actions: []policy.Action{policy.ActPlayback, policy.ActExport}, Selector: "*",
				Purpose: "vyšetřování incidentů", GrantedBy: "alice"},
			"g-revoked": {ID: "g-revoked", Subject: policy.Subject{Kind: "user", Name: "mallory"}, Actions: []policy.Action{policy.ActLive},
				Selector: "*", Revoked: true, GrantedBy: "alice"},
			"g-ended": {ID: "g-ended", Subject: policy.Subject{Kind: "user", Name: "dan"}, Actions: []policy.Action{policy.ActExport},
				Selector: "brno/*", Window: policy.Window{Until: t0.Add(-time.Hour)}, GrantedBy: "alice"},
		},
		Threshold: 2,
		Applied:   1200,
	}
}

func controller() Controller {
	return Controller{
		Name:     "KAMEROVÉ ŘEŠENÍ TĚŠÍN s.r.o.",
		Address:  "Na Příkopě 12, 110 00 Praha 1",
		Email:    "gdpr@kamery.example",
		Phone:    "+420 222 333 444",
		DPOName:  "Ing. Jiří Růžička",
		DPOEmail: "dpo@kamery.example",
		DPOPhone: "+420 222 333 445",
	}
}

// input is a valid Input for every document, in lang, for site praha-1.
func input(lang string) Input {
	return Input{
		State:      fixture(),
		Index:      1234,
		Controller: controller(),
		Site:       "praha-1",
		Lang:       lang,
		NoticeURL:  "https://kamery.example/gdpr/praha-1?lang=" + lang,
		Measures: []string{
			"Serverovna je zamčená; klíče má jen správce IT.",
			"Obsluha kamer je jednou ročně proškolena.",
		},
		Now: t0,
	}
}

// generators are the four documents by kind.
var generators = []struct {
	kind Kind
	gen  func(Input) (*Doc, error)
}{
	{KindRoPA, RoPA},
	{KindDPIA, DPIA},
	{KindNotice, Notice},
	{KindSign, Sign},
}
