package policy

import (
	"strings"
	"testing"
	"time"
)

func TestAlertRulesDefaultsAndSet(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	if got := s.Alerts(); got != DefaultAlertRules() {
		t.Fatalf("rules before alerts.set = %+v, want the defaults", got)
	}
	if err := DefaultAlertRules().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	r := DefaultAlertRules()
	r.BulkExports, r.UsualHours, r.TimeZone = 0, "22:00-06:00", "America/New_York"
	c := cmd(KindSetAlertRules, t0)
	c.AlertRules = &r
	mustApply(t, s, alice.sign(t, c))
	if got := s.Alerts(); got != r {
		t.Fatalf("rules = %+v, want %+v", got, r)
	}
	// The clone holds its own copy.
	cl := s.Clone()
	cl.AlertRules.BulkExports = 9
	if s.AlertRules.BulkExports != 0 {
		t.Fatal("the clone shares the alert rules")
	}
}

func TestAlertRulesAreValidated(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*AlertRules)
		want   string
	}{
		"negative bulk":        {func(r *AlertRules) { r.BulkExports = -1 }, "bulk exports -1"},
		"huge bulk":            {func(r *AlertRules) { r.BulkExports = MaxBulkExports + 1 }, "bulk exports"},
		"no hours":             {func(r *AlertRules) { r.UsualHours = "" }, "usual hours"},
		"bad hours":            {func(r *AlertRules) { r.UsualHours = "7-20" }, "HH:MM-HH:MM"},
		"hour 24":              {func(r *AlertRules) { r.UsualHours = "07:00-24:00" }, "HH:MM-HH:MM"},
		"empty span":           {func(r *AlertRules) { r.UsualHours = "07:00-07:00" }, "same minute"},
		"unknown zone":         {func(r *AlertRules) { r.TimeZone = "Europe/Atlantis" }, "not an IANA"},
		"local zone":           {func(r *AlertRules) { r.TimeZone = "Local" }, "IANA name"},
		"short refused window": {func(r *AlertRules) { r.RefusedWindow = time.Second }, "refused bursts window"},
		"long fast window":     {func(r *AlertRules) { r.FastApprovalsWindow = 25 * time.Hour }, "fast approvals window"},
		"installer maybe":      {func(r *AlertRules) { r.InstallerWindows = "" }, "on or off"},
		"negative refused":     {func(r *AlertRules) { r.RefusedMax = -3 }, "refused bursts -3"},
	} {
		t.Run(name, func(t *testing.T) {
			alice := newTestUser(t, "alice")
			s := founded(t, alice)
			r := DefaultAlertRules()
			tc.change(&r)
			c := cmd(KindSetAlertRules, t0)
			c.AlertRules = &r
			refused(t, s, alice.sign(t, c), tc.want)
		})
	}
	// Off is off: counts 0 without windows, and the words.
	off := AlertRules{UsualHours: AlertOff, TimeZone: "UTC", InstallerWindows: AlertOff}
	if err := off.Validate(); err != nil {
		t.Fatalf("all off: %v", err)
	}
}

// Once sealed, one admin cannot weaken the alarms alone, neither directly
// nor by a proposal only they approve (TestGovernanceNeedsTheQuorum runs
// the whole proposal through the quorum).
func TestOneAdminCannotWeakenAlertsOnceSealed(t *testing.T) {
	f := newReqFed(t)
	weaker := DefaultAlertRules()
	weaker.BulkExports, weaker.FastApprovals = 0, 0
	c := cmd(KindSetAlertRules, tc)
	c.AlertRules = &weaker
	refused(t, f.s, f.users["alice"].sign(t, c), "needs the quorum's approval")
	c = cmd(KindSetAlertRules, tc)
	c.AlertRules = &weaker
	env, id := f.proposal(t, "alice", c, tc)
	mustApply(t, f.s, env)
	refused(t, f.s, f.approveProposal(t, "alice", id, f.digest(id), tc), "never the proposer")
	if got := f.s.Alerts(); got != DefaultAlertRules() {
		t.Fatalf("rules changed without the quorum: %+v", got)
	}
	// A viewer cannot set them at all, even before a seal.
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	vic := newTestUser(t, "vic")
	u := vic.user(UserViewer)
	add := cmd(KindAddUser, t0)
	add.User = &u
	mustApply(t, s, alice.sign(t, add))
	c = cmd(KindSetAlertRules, t0)
	c.AlertRules = &weaker
	refused(t, s, vic.sign(t, c), "admin")
}

// The usual hours follow the zone's daylight saving time: 07:00 local is
// 06:00 UTC in winter and 05:00 UTC in summer in Prague.
func TestUsualHoursAcrossDST(t *testing.T) {
	r := DefaultAlertRules()
	for _, tc := range []struct {
		at   string
		want bool
	}{
		{"2026-03-28T05:30:00Z", false}, // Saturday, CET: 06:30 local
		{"2026-03-28T06:00:00Z", true},  // 07:00 CET
		{"2026-03-29T05:30:00Z", true},  // Sunday after the change, CEST: 07:30 local
		{"2026-03-29T04:59:00Z", false}, // 06:59 CEST
		{"2026-03-29T17:59:00Z", true},  // 19:59 CEST
		{"2026-03-29T18:00:00Z", false}, // 20:00 CEST
		{"2026-10-25T18:30:00Z", true},  // back to CET: 19:30 local
		{"2026-10-25T19:00:00Z", false}, // 20:00 CET
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		if got := r.Usual(at); got != tc.want {
			t.Errorf("Usual(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
	night := AlertRules{UsualHours: "22:00-06:00", TimeZone: "UTC"}
	for at, want := range map[string]bool{"2026-01-01T23:00:00Z": true, "2026-01-01T05:59:00Z": true, "2026-01-01T06:00:00Z": false, "2026-01-01T12:00:00Z": false} {
		tm, _ := time.Parse(time.RFC3339, at)
		if got := night.Usual(tm); got != want {
			t.Errorf("night shift Usual(%s) = %v, want %v", at, got, want)
		}
	}
}

func TestAlertRulesEncodingIsPinned(t *testing.T) {
	c := &Command{ID: "c1", Time: t0, Signer: "alice", Kind: KindSetAlertRules, AlertRules: &AlertRules{BulkExports: 500, UsualHours: "07:00-20:00",
		TimeZone: "Europe/Prague", RefusedMax: 10, RefusedWindow: 10 * time.Minute, InstallerWindows: "on", FastApprovals: 5, FastApprovalsWindow: 10 * time.Minute}}
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"c1","time":"2026-11-27T08:00:00Z","signer":"alice","kind":"alerts.set","alert_rules":{"bulk_exports":500,"usual_hours":"07:00-20:00","time_zone":"Europe/Prague","refused_max":10,"refused_window":600000000000,"installer_windows":"on","fast_approvals":5,"fast_approvals_window":600000000000}}`
	if string(b) != want {
		t.Fatalf("encoding changed:\n got %s\nwant %s", b, want)
	}
	if !strings.Contains(string(b), "alert_rules") {
		t.Fatal("no alert_rules key")
	}
}
