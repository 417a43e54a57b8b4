package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func goodController() *Controller {
	return &Controller{Name: "Obchody Novák s.r.o.", Address: "Národní 1\n110 00 Praha 1", Email: "gdpr@novak.cz",
		Phone: "+420 222 333 444", DPOName: "Mgr. Jana Dvořáková", DPOEmail: "dpo@novak.cz", DPOPhone: "+420 (777) 123-456"}
}

func (f *reqFed) setController(t testing.TB, by string, p *Controller, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindSetController, at)
	c.Controller = p
	return f.users[by].sign(t, c)
}

func TestControllerSet(t *testing.T) {
	cases := []struct {
		name   string
		by     string
		mutate func(*Controller)
		want   string
	}{
		{name: "viewer", by: "dave", want: `signer "dave" has role viewer; changing the policy needs role admin`},
		{name: "approver", by: "bob", want: `signer "bob" has role approver; changing the policy needs role admin`},
		{name: "auditor", by: "erin", want: `signer "erin" has role auditor; changing the policy needs role admin`},
		{name: "no name", by: "alice", mutate: func(c *Controller) { c.Name = " " }, want: "controller: needs a name"},
		{name: "name of two lines", by: "alice", mutate: func(c *Controller) { c.Name = "Novák\ns.r.o." }, want: `name has control character '\n': it is one line`},
		{name: "name too long", by: "alice", mutate: func(c *Controller) { c.Name = strings.Repeat("x", MaxControllerName+1) }, want: "name of 201 bytes is longer than 200"},
		{name: "name with an escape", by: "alice", mutate: func(c *Controller) { c.Name = "Novák\x1b[2J" }, want: `name has control character '\x1b'`},
		{name: "name with a right-to-left override", by: "alice", mutate: func(c *Controller) { c.Name = "Novák\u202esro" }, want: `name has invisible formatting character '\u202e'`},
		{name: "no address", by: "alice", mutate: func(c *Controller) { c.Address = "" }, want: "controller: needs an address"},
		{name: "address too long", by: "alice", mutate: func(c *Controller) { c.Address = strings.Repeat("a", MaxAddress+1) }, want: "address of 501 bytes is longer than 500"},
		{name: "address with a bell", by: "alice", mutate: func(c *Controller) { c.Address = "Národní 1\a" }, want: `address has control character '\a'`},
		{name: "no email", by: "alice", mutate: func(c *Controller) { c.Email = "" }, want: "controller: needs an email"},
		{name: "email without @", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr.novak.cz" }, want: `email "gdpr.novak.cz" has 0 @ signs: want exactly one`},
		{name: "email with two @", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr@novak@cz.cz" }, want: `has 2 @ signs`},
		{name: "email with a space", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr @novak.cz" }, want: `email "gdpr @novak.cz" has a space: give the address alone`},
		{name: "email in display form", by: "alice", mutate: func(c *Controller) { c.Email = "<gdpr@novak.cz>" }, want: `email "<gdpr@novak.cz>" has '<': give the address alone`},
		{name: "email without a dot in its domain", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr@localhost" }, want: `its domain "localhost" has no dot`},
		{name: "email with an empty label", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr@novak..cz" }, want: `its domain "novak..cz" has an empty label`},
		{name: "email ending in a dot", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr@novak.cz." }, want: `has an empty label`},
		{name: "email without a local part", by: "alice", mutate: func(c *Controller) { c.Email = "@novak.cz" }, want: `email "@novak.cz" has nothing before the @`},
		{name: "email with a newline", by: "alice", mutate: func(c *Controller) { c.Email = "gdpr@novak.cz\nBcc: x@y.cz" }, want: `has control character '\n'`},
		{name: "email too long", by: "alice", mutate: func(c *Controller) { c.Email = strings.Repeat("a", 250) + "@x.cz" }, want: "email of 255 bytes is longer than 254"},
		{name: "phone with letters", by: "alice", mutate: func(c *Controller) { c.Phone = "+420 CALL-NOW" }, want: `phone "+420 CALL-NOW" has 'C': use digits, spaces, '+', '-', '(' and ')'`},
		{name: "phone with a + inside", by: "alice", mutate: func(c *Controller) { c.Phone = "420+222" }, want: `phone "420+222" has a '+' that is not its first character`},
		{name: "phone too short", by: "alice", mutate: func(c *Controller) { c.Phone = "+4" }, want: `phone "+4" has 1 digits: want at least 3`},
		{name: "phone too long", by: "alice", mutate: func(c *Controller) { c.Phone = strings.Repeat("1", MaxPhone+1) }, want: "phone of 33 bytes is longer than 32"},
		{name: "DPO email without a name", by: "alice", mutate: func(c *Controller) { c.DPOName = "" }, want: "a DPO needs a name as well as contact details"},
		{name: "DPO phone alone", by: "alice", mutate: func(c *Controller) { c.DPOName, c.DPOEmail = "", "" }, want: "a DPO needs a name as well as contact details"},
		{name: "DPO name without an email", by: "alice", mutate: func(c *Controller) { c.DPOEmail = "" }, want: "a DPO needs an email as well as a name"},
		{name: "DPO name of two lines", by: "alice", mutate: func(c *Controller) { c.DPOName = "Jana\tDvořáková" }, want: `DPO name has control character '\t'`},
		{name: "DPO email malformed", by: "alice", mutate: func(c *Controller) { c.DPOEmail = "dpo(at)novak.cz" }, want: `DPO email "dpo(at)novak.cz" has '('`},
		{name: "DPO phone malformed", by: "alice", mutate: func(c *Controller) { c.DPOPhone = "ext. 12" }, want: `DPO phone "ext. 12" has 'e'`},
		{name: "naming another admin", by: "alice", mutate: func(c *Controller) { c.By = "frank" }, want: `controller: names "frank" but is signed by "alice"`},
		{name: "another time", by: "alice", mutate: func(c *Controller) { c.Time = t0 }, want: "is not the command's time"},
	}
	f := newReqFed(t)
	for _, c := range cases {
		p := goodController()
		if c.mutate != nil {
			c.mutate(p)
		}
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.setController(t, c.by, p, tc), c.want) })
	}
	c := cmd(KindSetController, tc)
	refused(t, f.s, f.users["alice"].sign(t, c), "no controller")

	if _, err := f.s.RequireController(); !errors.Is(err, ErrNoController) || !strings.Contains(err.Error(), "custos controller set") {
		t.Fatalf("RequireController before controller.set: %v, want ErrNoController saying how to set it", err)
	}
	mustApply(t, f.s, f.setController(t, "frank", goodController(), tc))
	got, err := f.s.RequireController()
	if err != nil {
		t.Fatal(err)
	}
	want := *goodController()
	want.By, want.Time = "frank", tc
	if *got != want {
		t.Fatalf("stored %+v, want %+v", *got, want)
	}
	got.Name = "changed"
	if f.s.Controller.Name == "changed" {
		t.Fatal("RequireController returned the state's own record")
	}
	if c := f.s.Controller.Contact(); c != "Mgr. Jana Dvořáková, dpo@novak.cz, +420 (777) 123-456" {
		t.Fatalf("contact with a DPO: %q", c)
	}

	// A set replaces the whole record: the DPO goes with a set without one.
	noDPO := goodController()
	noDPO.DPOName, noDPO.DPOEmail, noDPO.DPOPhone, noDPO.Phone = "", "", "", ""
	mustApply(t, f.s, f.setController(t, "alice", noDPO, tc.Add(time.Minute)))
	if f.s.Controller.HasDPO() || f.s.Controller.By != "alice" {
		t.Fatalf("after a set without a DPO: %+v", f.s.Controller)
	}
	if c := f.s.Controller.Contact(); c != "Obchody Novák s.r.o., gdpr@novak.cz" {
		t.Fatalf("contact without a DPO: %q", c)
	}
}

// Texts that mean something to HTML, PDF or a shell are stored exactly as
// given, through the signed command, the state and a snapshot: escaping is
// the renderer's job.
func TestControllerTextsRoundTrip(t *testing.T) {
	f := newReqFed(t)
	p := &Controller{
		Name:    `Novák & syn <script>alert("x")</script> „Kamery“ s.r.o.`,
		Address: "Na Příkopě 3/5\n(vchod z ulice \"Panská\") <b>\\ ) ( %PDF-1.7 & 'x'",
		Email:   "o'brien+gdpr@novák.cz",
		DPOName: `Ing. „Pepa“ Dvořák <dpo> & spol.`, DPOEmail: "dpo@novak.cz",
	}
	mustApply(t, f.s, f.setController(t, "alice", p, tc))
	check := func(where string, got *Controller) {
		t.Helper()
		if got.Name != p.Name || got.Address != p.Address || got.Email != p.Email || got.DPOName != p.DPOName {
			t.Fatalf("%s: %+v, want the texts of %+v", where, got, p)
		}
	}
	check("state", f.s.Controller)
	snap, err := f.s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var r State
	if err := r.Unmarshal(snap); err != nil {
		t.Fatal(err)
	}
	check("snapshot", r.Controller)
	check("clone", f.s.Clone().Controller)
}
