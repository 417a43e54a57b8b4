package policy

// The alert rules (DESIGN §4 invariant 8 says what is audited; these say
// what in the audit trail is worth a human's attention). The datacenters
// evaluate them over every journal they hold (policy/alerts, node/alerting)
// and write each alert raised into their own journal:
//
//   - alerts.set: the whole rule set (AlertRules), replacing the one
//     before. Until it runs, DefaultAlertRules apply.
//
// It is a governance change (IsGovernance): the rules watch admins and
// approvers too (fast approvals, refused bursts, bulk exports), so once the
// federation is sealed one admin must not be able to switch off the alarm
// that would show what they do. Strengthening a rule takes the quorum as
// well: one rule for every change keeps "who changed the alarms?" answered
// by the ledger, as for the audit retention.
//
// The time zone of the usual hours is an IANA name that every replica must
// know, whatever its host has installed: this package embeds the time zone
// database (time/tzdata), so a name is valid on every replica of one build.

import (
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // the same zones on every replica
)

// KindSetAlertRules sets the alert rules (AlertRules).
const KindSetAlertRules = "alerts.set"

// Bounds of the alert rules.
const (
	MaxBulkExports   = 1_000_000 // segments within an hour
	MaxRefusedAlert  = 100_000   // denials within a window
	MaxFastApprovals = 10_000    // approvals within a window
	MinAlertWindow   = time.Minute
	MaxAlertWindow   = 24 * time.Hour
)

// Rule names, as alerts and the audit journal name them.
const (
	RuleBulkExport    = "bulk-export"
	RuleOffHours      = "off-hours"
	RuleRefusedBurst  = "refused-burst"
	RuleInstallerTime = "installer-outside-window"
	RuleFastApprovals = "fast-approvals"
)

// The words of the rules that are not counts.
const (
	AlertOff = "off" // UsualHours and InstallerWindows: the rule is off
	AlertOn  = "on"  // InstallerWindows: the rule is on
)

const (
	DefaultUsualHours = "07:00-20:00"
	DefaultAlertZone  = "Europe/Prague"
	// BulkExportWindow is the window of RuleBulkExport.
	BulkExportWindow = time.Hour
	// PerEntryAlertGroup: the off-hours accesses, or an installer's
	// entries outside its window, of one subject within this long after
	// the first make one alert.
	PerEntryAlertGroup = time.Hour
)

// AlertRules are the rules that raise alerts from the audit journals. A
// count of 0 and the word "off" turn a rule off; every other value is
// bounded. JSON has every field, so a rule set reads the same everywhere.
type AlertRules struct {
	// BulkExports: more than this many segments served to one actor
	// within one hour (serve-segments) raise bulk-export. 0: off.
	BulkExports int `json:"bulk_exports"`
	// UsualHours: footage access (live view, segments, key release)
	// outside "HH:MM-HH:MM" local time in TimeZone raises off-hours; a
	// start after the end spans midnight. "off": off.
	UsualHours string `json:"usual_hours"`
	// TimeZone: the IANA time zone of UsualHours (e.g. Europe/Prague).
	TimeZone string `json:"time_zone"`
	// RefusedMax: more than this many denials of one actor within
	// RefusedWindow raise refused-burst. 0: off.
	RefusedMax    int           `json:"refused_max"`
	RefusedWindow time.Duration `json:"refused_window"`
	// InstallerWindows: "on" raises installer-outside-window for any
	// entry of an installer node outside its window; "off": off.
	InstallerWindows string `json:"installer_windows"`
	// FastApprovals: one user approving more than this many distinct
	// requests within FastApprovalsWindow raises fast-approvals. 0: off.
	FastApprovals       int           `json:"fast_approvals"`
	FastApprovalsWindow time.Duration `json:"fast_approvals_window"`
}

// DefaultAlertRules are the rules until alerts.set runs.
func DefaultAlertRules() AlertRules {
	return AlertRules{
		BulkExports:         500,
		UsualHours:          DefaultUsualHours,
		TimeZone:            DefaultAlertZone,
		RefusedMax:          10,
		RefusedWindow:       10 * time.Minute,
		InstallerWindows:    AlertOn,
		FastApprovals:       5,
		FastApprovalsWindow: 10 * time.Minute,
	}
}

// Alerts are the alert rules in force: the set ones, or the defaults.
func (s *State) Alerts() AlertRules {
	if s == nil || s.AlertRules == nil {
		return DefaultAlertRules()
	}
	return *s.AlertRules
}

// Validate checks every rule and its bounds.
func (r AlertRules) Validate() error {
	count := func(what string, n, limit int) error {
		if n < 0 || n > limit {
			return fmt.Errorf("%s %d: want 0 (off) to %d", what, n, limit)
		}
		return nil
	}
	window := func(what string, n int, d time.Duration) error {
		if n == 0 && d == 0 {
			return nil
		}
		if d < MinAlertWindow || d > MaxAlertWindow || d%time.Second != 0 {
			return fmt.Errorf("%s window %v: want whole seconds from %v to %v", what, d, MinAlertWindow, MaxAlertWindow)
		}
		return nil
	}
	if err := count("bulk exports", r.BulkExports, MaxBulkExports); err != nil {
		return err
	}
	if err := count("refused bursts", r.RefusedMax, MaxRefusedAlert); err != nil {
		return err
	}
	if err := window("refused bursts", r.RefusedMax, r.RefusedWindow); err != nil {
		return err
	}
	if err := count("fast approvals", r.FastApprovals, MaxFastApprovals); err != nil {
		return err
	}
	if err := window("fast approvals", r.FastApprovals, r.FastApprovalsWindow); err != nil {
		return err
	}
	if r.InstallerWindows != AlertOn && r.InstallerWindows != AlertOff {
		return fmt.Errorf("installer windows %q: want on or off", r.InstallerWindows)
	}
	if _, err := r.Location(); err != nil {
		return err
	}
	if r.UsualHours != AlertOff {
		if _, _, err := ParseUsualHours(r.UsualHours); err != nil {
			return err
		}
	}
	return nil
}

// Location is the time zone of the usual hours.
func (r AlertRules) Location() (*time.Location, error) {
	switch r.TimeZone {
	case "", "Local":
		return nil, fmt.Errorf("time zone %q: want an IANA name such as %s (or UTC)", r.TimeZone, DefaultAlertZone)
	}
	loc, err := time.LoadLocation(r.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: not an IANA time zone name (e.g. %s)", r.TimeZone, DefaultAlertZone)
	}
	return loc, nil
}

// ParseUsualHours reads "HH:MM-HH:MM" as minutes after local midnight. The
// two differ; a start after the end spans midnight (22:00-06:00).
func ParseUsualHours(s string) (from, until int, err error) {
	bad := fmt.Errorf("usual hours %q: want HH:MM-HH:MM (e.g. %s) or off", s, DefaultUsualHours)
	if len(s) != len("07:00-20:00") || s[5] != '-' {
		return 0, 0, bad
	}
	clock := func(c string) (int, bool) {
		if c[2] != ':' {
			return 0, false
		}
		h, m := 0, 0
		for i, ch := range []byte(c[:2] + c[3:]) {
			if ch < '0' || ch > '9' {
				return 0, false
			}
			if i < 2 {
				h = h*10 + int(ch-'0')
			} else {
				m = m*10 + int(ch-'0')
			}
		}
		return h*60 + m, h < 24 && m < 60
	}
	from, ok1 := clock(s[:5])
	until, ok2 := clock(s[6:])
	if !ok1 || !ok2 {
		return 0, 0, bad
	}
	if from == until {
		return 0, 0, fmt.Errorf("usual hours %q start and end at the same minute: give a span, or off", s)
	}
	return from, until, nil
}

// Usual reports whether t falls in the usual hours (true when that rule is
// off or invalid: no alert). Local time follows the zone's daylight saving.
func (r AlertRules) Usual(t time.Time) bool { return r.UsualFunc()(t) }

// UsualFunc is Usual with the hours and the zone read once, for many
// entries.
func (r AlertRules) UsualFunc() func(time.Time) bool {
	always := func(time.Time) bool { return true }
	if r.UsualHours == AlertOff {
		return always
	}
	from, until, err := ParseUsualHours(r.UsualHours)
	if err != nil {
		return always
	}
	loc, err := r.Location()
	if err != nil {
		return always
	}
	return func(t time.Time) bool {
		l := t.In(loc)
		m := l.Hour()*60 + l.Minute()
		if from < until {
			return m >= from && m < until
		}
		return m >= from || m < until
	}
}

// Lookback is the longest window of the rules that are on: how far back
// entries still count.
func (r AlertRules) Lookback() time.Duration {
	d := max(BulkExportWindow, PerEntryAlertGroup)
	if r.RefusedMax > 0 {
		d = max(d, r.RefusedWindow)
	}
	if r.FastApprovals > 0 {
		d = max(d, r.FastApprovalsWindow)
	}
	return d
}

func (s *State) planSetAlertRules(p *AlertRules) (func(), error) {
	if p == nil {
		return nil, errors.New("no alert rules")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	r := *p
	return func() { s.AlertRules = &r }, nil
}
