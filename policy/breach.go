package policy

// The breach register (GDPR art. 33). A personal data breach must be
// documented whatever its size (art. 33(5)), and notified to the
// supervisory authority within 72 hours of the controller becoming aware
// of it unless it is unlikely to result in a risk to people's rights and
// freedoms (art. 33(1)); a later notification carries the reasons for the
// delay. The policy keeps the register, so every admin node shows the same
// breaches and the same clock:
//
//   - breach.open: an ID, what happened, when it was detected (the clock
//     starts then), and what is known of art. 33(3)'s fields: the nature,
//     the categories and approximate numbers of subjects and records, the
//     likely consequences, the measures taken or proposed, and the contact
//     point (the DPO's or the controller's contact when not given).
//   - breach.update: any of those fields, and when the authority was
//     notified, with the reasons for the delay if that was more than 72
//     hours after detection.
//   - breach.close: when it was closed and the outcome; a breach never
//     notified closes only with the reason it need not be (the risk
//     assessment art. 33(1) asks for), recorded with it.
//
// Some events open a draft by themselves (breachdraft.go): an admin
// confirms it with breach.update (any update, even one changing nothing
// else) or dismisses it with breach.close.
//
// The 72 hours are elapsed time, not calendar hours: Deadline is Detected
// plus 72 h in absolute time, so a change to or from daylight saving time
// in between moves the deadline's wall clock by an hour, as it should.
//
// Only admins keep the register, one signature each, with one exception:
// once the federation is sealed, closing a breach that was never notified
// is governance (IsGovernance), a proposal the quorum approves, because it
// stops the clock for good and one admin must not bury a breach alone.
// Auditors read the register with the rest of the replicated state.
// Entries are kept for good: the register is the controller's evidence.

import (
	"errors"
	"fmt"
	"time"
)

// Breach register command kinds.
const (
	KindOpenBreach   = "breach.open"   // Breach: record a breach
	KindUpdateBreach = "breach.update" // BreachUpdate: change its fields, record the notification
	KindCloseBreach  = "breach.close"  // BreachClosure: close it
)

const (
	// BreachNotifyWithin is art. 33(1)'s time to notify the supervisory
	// authority, from detection.
	BreachNotifyWithin = 72 * time.Hour
	// MaxBreachText bounds each text of a breach, in bytes.
	MaxBreachText = 2048
	// MaxBreachCount bounds the approximate numbers of subjects and
	// records: far above any real breach, far below overflow.
	MaxBreachCount = 1_000_000_000_000
)

// Breach is one entry of the breach register. The caller of breach.open
// fills ID, What, Detected and any of Nature to Contact; Notified and
// LateReason come with breach.update; Apply sets the rest.
type Breach struct {
	ID       string    `json:"id"`
	What     string    `json:"what"`
	Detected time.Time `json:"detected"` // when the controller became aware (UTC)

	// Art. 33(3): (a) nature, categories and approximate numbers (0 is
	// not known yet), (b) contact point, (c) likely consequences,
	// (d) measures taken or proposed.
	Nature         string `json:"nature,omitempty"`
	Categories     string `json:"categories,omitempty"` // of data subjects and of records concerned
	ApproxSubjects int64  `json:"approx_subjects,omitempty"`
	ApproxRecords  int64  `json:"approx_records,omitempty"`
	Consequences   string `json:"consequences,omitempty"`
	Measures       string `json:"measures,omitempty"`
	// Contact is the DPO or another contact point. Left empty at
	// breach.open it is copied from the controller then (Controller.Contact),
	// so the register keeps who the contact was, not who it is now.
	Contact string `json:"contact,omitempty"`

	// Notified is when the supervisory authority was notified (zero: not
	// yet); LateReason the reasons for a delay past BreachNotifyWithin.
	Notified   time.Time `json:"notified,omitzero"`
	LateReason string    `json:"late_reason,omitempty"`

	// Kept by Apply.
	OpenedBy  string         `json:"opened_by,omitempty"`
	Opened    time.Time      `json:"opened,omitzero"`
	UpdatedBy string         `json:"updated_by,omitempty"` // the last update's
	Updated   time.Time      `json:"updated,omitzero"`
	Closure   *BreachClosure `json:"closure,omitempty"`

	// Draft marks an entry an event opened by itself (breachdraft.go)
	// that no admin has confirmed yet: a breach.update clears it. Event
	// and Object say what opened it (EventAuditChain, …, and the node it
	// concerns); they stay after confirmation.
	Draft  bool   `json:"draft,omitempty"`
	Event  string `json:"event,omitempty"`
	Object string `json:"object,omitempty"`
}

// BreachUpdate is the payload of breach.update: the breach's ID and the
// fields to change. A field left zero is unchanged (a text can be replaced,
// not emptied); By and Time, if given, must be the command's.
type BreachUpdate struct {
	Breach         string    `json:"breach"`
	What           string    `json:"what,omitempty"`
	Detected       time.Time `json:"detected,omitzero"`
	Nature         string    `json:"nature,omitempty"`
	Categories     string    `json:"categories,omitempty"`
	ApproxSubjects int64     `json:"approx_subjects,omitempty"`
	ApproxRecords  int64     `json:"approx_records,omitempty"`
	Consequences   string    `json:"consequences,omitempty"`
	Measures       string    `json:"measures,omitempty"`
	Contact        string    `json:"contact,omitempty"`
	Notified       time.Time `json:"notified,omitzero"`
	LateReason     string    `json:"late_reason,omitempty"`
	By             string    `json:"by,omitempty"`
	Time           time.Time `json:"time,omitzero"`
}

// BreachClosure is the payload of breach.close and, with By and Time set
// by Apply, its record.
type BreachClosure struct {
	Breach  string    `json:"breach"`
	Closed  time.Time `json:"closed"`
	Outcome string    `json:"outcome"`
	// NotNotifiedReason is why a breach never notified need not be: it is
	// unlikely to result in a risk to rights and freedoms (art. 33(1)).
	NotNotifiedReason string    `json:"not_notified_reason,omitempty"`
	By                string    `json:"by,omitempty"`
	Time              time.Time `json:"time,omitzero"`
}

// Deadline is when the authority must have been notified: Detected plus 72
// hours of elapsed time.
func (b *Breach) Deadline() time.Time { return b.Detected.Add(BreachNotifyWithin) }

// Left is the time from now to the deadline; negative once it has passed.
func (b *Breach) Left(now time.Time) time.Duration { return b.Deadline().Sub(now) }

// Closed reports whether the breach was closed.
func (b *Breach) Closed() bool { return b.Closure != nil }

// Overdue reports whether, at now, the deadline has passed with the
// authority not notified and the breach not closed (a closed breach was
// either notified or recorded as not needing it).
func (b *Breach) Overdue(now time.Time) bool {
	return b.Notified.IsZero() && b.Closure == nil && b.Left(now) < 0
}

// NotifiedLate reports whether the authority was notified after the
// deadline.
func (b *Breach) NotifiedLate() bool { return !b.Notified.IsZero() && b.Notified.After(b.Deadline()) }

// FormatLeft writes a breach clock as people read it: "69h 58m left", or
// "overdue 3h 10m" once d is negative. Whole minutes are shown, truncated
// toward the deadline: the time left is never overstated (59 s left is
// "0h 0m left") and the time overdue counts whole minutes past it (59 s
// overdue is "overdue 0h 0m"). The deadline itself, d == 0, is still in
// time: art. 33(1) says "not later than 72 hours".
func FormatLeft(d time.Duration) string {
	if d < 0 {
		return "overdue " + FormatDuration(d)
	}
	return FormatDuration(d) + " left"
}

// OpenBreaches returns copies of the breaches not closed, sorted by ID.
func (s *State) OpenBreaches() []*Breach {
	return s.breaches(func(b *Breach) bool { return b.Closure == nil })
}

// BreachRegister returns copies of every breach, open and closed, sorted by
// ID.
func (s *State) BreachRegister() []*Breach {
	return s.breaches(func(*Breach) bool { return true })
}

func (s *State) breaches(keep func(*Breach) bool) []*Breach {
	if s == nil {
		return nil
	}
	return sortedCopies(s.Breaches, cloneBreach, keep)
}

func (s *State) planOpenBreach(p *Breach, c *Command) (func(), error) {
	if p == nil {
		return nil, errors.New("no breach")
	}
	if err := validName(p.ID); err != nil {
		return nil, fmt.Errorf("breach id: %w", err)
	}
	if s.Breaches[p.ID] != nil {
		return nil, fmt.Errorf("breach %q exists", p.ID)
	}
	switch {
	case !p.Notified.IsZero() || p.LateReason != "":
		return nil, fmt.Errorf("breach %q: a new breach carries no notification: record it with breach.update", p.ID)
	case p.OpenedBy != "" || !p.Opened.IsZero() || p.UpdatedBy != "" || !p.Updated.IsZero() || p.Closure != nil:
		return nil, fmt.Errorf("breach %q: a new breach carries only what happened, when it was detected and art. 33(3)'s fields", p.ID)
	case p.Draft || p.Event != "" || p.Object != "":
		return nil, fmt.Errorf("breach %q: drafts are opened by events (node.revoke, a node's breach.draft), not by breach.open", p.ID)
	}
	b := *p
	b.Detected = p.Detected.UTC()
	if b.Contact == "" {
		b.Contact = s.Controller.Contact()
	}
	b.OpenedBy, b.Opened = c.Signer, c.Time.UTC()
	if err := checkBreach(&b, c.Time); err != nil {
		return nil, fmt.Errorf("breach %q: %w", p.ID, err)
	}
	return func() { s.Breaches[b.ID] = &b }, nil
}

// checkBreach checks a whole entry as it would be stored after a command at
// now.
func checkBreach(b *Breach, now time.Time) error {
	if err := checkTextMax("description of what happened", b.What, MaxBreachText); err != nil {
		return err
	}
	switch {
	case b.Detected.IsZero():
		return errors.New("needs the time it was detected (the 72-hour clock starts then)")
	case b.Detected.After(now):
		return fmt.Errorf("detected %s is after the command's time %s: a breach cannot be detected in the future", stamp(b.Detected), stamp(now))
	}
	for _, f := range []struct{ what, text string }{
		{"nature", b.Nature}, {"categories", b.Categories}, {"consequences", b.Consequences},
		{"measures", b.Measures}, {"contact", b.Contact}, {"late reason", b.LateReason},
	} {
		if f.text == "" {
			continue
		}
		if err := checkTextMax(f.what, f.text, MaxBreachText); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		what string
		n    int64
	}{{"approximate number of subjects", b.ApproxSubjects}, {"approximate number of records", b.ApproxRecords}} {
		if n.n < 0 || n.n > MaxBreachCount {
			return fmt.Errorf("%s %d: want 0 (not known) to %d", n.what, n.n, int64(MaxBreachCount))
		}
	}
	if b.Notified.IsZero() {
		return nil
	}
	switch {
	case b.Notified.Before(b.Detected):
		return fmt.Errorf("notified %s is before detected %s", stamp(b.Notified), stamp(b.Detected))
	case b.Notified.After(now):
		return fmt.Errorf("notified %s is after the command's time %s: record a notification once it is made", stamp(b.Notified), stamp(now))
	case b.NotifiedLate() && b.LateReason == "":
		return fmt.Errorf("notified %s, %s after detection, past art. 33(1)'s %v: a late notification needs the reasons for the delay (late reason)",
			stamp(b.Notified), FormatDuration(b.Notified.Sub(b.Detected)), FormatDuration(BreachNotifyWithin))
	}
	return nil
}

// FormatDuration writes the length of d, whatever its sign, as whole hours
// and minutes truncated toward zero ("74h 5m"), the way breach clocks are
// shown.
func FormatDuration(d time.Duration) string {
	m := int64(d / time.Minute) // truncates toward zero, so negating cannot overflow
	if m < 0 {
		m = -m
	}
	return fmt.Sprintf("%dh %dm", m/60, m%60)
}

// openBreach returns breach id if it is recorded, not closed, and c is not
// older than its opening.
func (s *State) openBreach(id, verb string, c *Command) (*Breach, error) {
	b := s.Breaches[id]
	switch {
	case b == nil:
		return nil, fmt.Errorf("no breach %q: it can be %s only after breach.open records it", id, verb)
	case b.Closure != nil:
		return nil, fmt.Errorf("breach %q was closed at %s by %s", id, stamp(b.Closure.Closed), b.Closure.By)
	case c.Time.Before(b.Opened):
		return nil, fmt.Errorf("command time %s is before breach %q was opened at %s", stamp(c.Time), id, stamp(b.Opened))
	}
	return b, nil
}

func (s *State) planUpdateBreach(u *BreachUpdate, c *Command) (func(), error) {
	if u == nil {
		return nil, errors.New("no breach update")
	}
	b, err := s.openBreach(u.Breach, "updated", c)
	if err != nil {
		return nil, err
	}
	if err := decisionBy(u.By, u.Time, c); err != nil {
		return nil, fmt.Errorf("updating breach %q: %w", b.ID, err)
	}
	n := cloneBreach(*b)
	changed := false
	text := func(dst *string, v string) {
		if v != "" {
			*dst, changed = v, true
		}
	}
	when := func(dst *time.Time, v time.Time) {
		if !v.IsZero() {
			*dst, changed = v.UTC(), true
		}
	}
	count := func(dst *int64, v int64) {
		if v != 0 {
			*dst, changed = v, true
		}
	}
	text(&n.What, u.What)
	when(&n.Detected, u.Detected)
	text(&n.Nature, u.Nature)
	text(&n.Categories, u.Categories)
	count(&n.ApproxSubjects, u.ApproxSubjects)
	count(&n.ApproxRecords, u.ApproxRecords)
	text(&n.Consequences, u.Consequences)
	text(&n.Measures, u.Measures)
	text(&n.Contact, u.Contact)
	when(&n.Notified, u.Notified)
	text(&n.LateReason, u.LateReason)
	if n.Draft {
		n.Draft, changed = false, true // an admin's update confirms a draft
	}
	if !changed {
		return nil, fmt.Errorf("updating breach %q: the update changes nothing", b.ID)
	}
	if err := checkBreach(&n, c.Time); err != nil {
		return nil, fmt.Errorf("updating breach %q: %w", b.ID, err)
	}
	n.UpdatedBy, n.Updated = c.Signer, c.Time.UTC()
	return func() { *b = n }, nil
}

func (s *State) planCloseBreach(x *BreachClosure, c *Command) (func(), error) {
	if x == nil {
		return nil, errors.New("no breach closure")
	}
	b, err := s.openBreach(x.Breach, "closed", c)
	if err != nil {
		return nil, err
	}
	if err := decisionBy(x.By, x.Time, c); err != nil {
		return nil, fmt.Errorf("closing breach %q: %w", b.ID, err)
	}
	switch {
	case x.Closed.IsZero():
		return nil, fmt.Errorf("closing breach %q: needs the time it was closed", b.ID)
	case x.Closed.Before(b.Detected):
		return nil, fmt.Errorf("closing breach %q: closed %s is before detected %s", b.ID, stamp(x.Closed), stamp(b.Detected))
	case x.Closed.After(c.Time):
		return nil, fmt.Errorf("closing breach %q: closed %s is after the command's time %s", b.ID, stamp(x.Closed), stamp(c.Time))
	}
	if err := checkTextMax("outcome", x.Outcome, MaxBreachText); err != nil {
		return nil, fmt.Errorf("closing breach %q: %w", b.ID, err)
	}
	switch {
	case b.Notified.IsZero() && x.NotNotifiedReason == "":
		return nil, fmt.Errorf("closing breach %q: the supervisory authority was not notified; record when it was (breach.update) or why it need not be (unlikely to result in a risk to rights and freedoms, art. 33(1))", b.ID)
	case !b.Notified.IsZero() && x.NotNotifiedReason != "":
		return nil, fmt.Errorf("closing breach %q: it was notified at %s, so it has no reason for not being notified", b.ID, stamp(b.Notified))
	case x.NotNotifiedReason != "":
		if err := checkTextMax("reason for not notifying", x.NotNotifiedReason, MaxBreachText); err != nil {
			return nil, fmt.Errorf("closing breach %q: %w", b.ID, err)
		}
	}
	nx := BreachClosure{Breach: b.ID, Closed: x.Closed.UTC(), Outcome: x.Outcome, NotNotifiedReason: x.NotNotifiedReason, By: c.Signer, Time: c.Time.UTC()}
	return func() { b.Closure = &nx }, nil
}

func cloneBreach(b Breach) Breach {
	if b.Closure != nil {
		x := *b.Closure
		b.Closure = &x
	}
	return b
}
