package policy

// Subject access requests (GDPR art. 15). A person asks for the footage in
// which they appear; the controller answers within one month of receipt,
// extendable once by up to two months (art. 12(3)). The policy records each
// request with its legal deadline, so that every node can show the days
// left and warn of the overdue:
//
//   - sar.open: the subject (a name or a reference — prefer a reference, as
//     the policy is replicated to every node), the date received, the
//     cameras (a selector, fixed to the cameras it matches then) and the
//     footage range.
//   - sar.extend: once, by 1 or 2 months, with the reason the subject is
//     told, and only before the original deadline.
//   - sar.close: the date answered and the SHA-256 of the files sent.
//
// Fulfilling one is a view request through the normal quorum release; the
// policy keeps the deadline, not the footage.
//
// Only admins run these: the controller's responsible person answers data
// subjects (DESIGN §1), and the subject's text is personal data that only
// those who already administer the whole policy should write into it. They
// change nobody's power, so they are not governance: one admin signs.
//
// Dates are UTC calendar days, carried as midnight UTC.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Subject access command kinds.
const (
	KindOpenSAR   = "sar.open"   // SAR: record a subject access request
	KindExtendSAR = "sar.extend" // SARExtension: extend its deadline, once
	KindCloseSAR  = "sar.close"  // SARClosure: record its answer
)

const (
	// SARMonths is the time to answer, from receipt (art. 12(3)).
	SARMonths = 1
	// MaxSARExtensionMonths is the one extension art. 12(3) allows.
	MaxSARExtensionMonths = 2
	// MaxAccessSpan bounds a subject access request's footage range: a
	// month is more than any camera keeps without a written justification.
	MaxAccessSpan = 31 * 24 * time.Hour
)

// SubjectAccess is a subject access request. The caller fills ID, Subject,
// Received, Selector, From and To; Apply sets the rest (a payload may carry
// Cameras only if they equal what Apply would set).
type SubjectAccess struct {
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`  // "NAME / reference"
	Received time.Time `json:"received"` // the day it arrived (midnight UTC)
	Selector string    `json:"selector"`
	Cameras  []string  `json:"cameras,omitempty"` // matched by Selector at sar.open, sorted
	From     time.Time `json:"from"`              // footage range [From, To)
	To       time.Time `json:"to"`

	// Kept by Apply.
	OpenedBy  string        `json:"opened_by,omitempty"`
	Opened    time.Time     `json:"opened,omitzero"`
	Extension *SARExtension `json:"extension,omitempty"`
	Closure   *SARClosure   `json:"closure,omitempty"`
}

// SARExtension is the payload of sar.extend and, with By and Time set by
// Apply, its record.
type SARExtension struct {
	SAR    string    `json:"sar"`
	Months int       `json:"months"` // 1 or 2
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	Time   time.Time `json:"time,omitzero"`
}

// SARClosure is the payload of sar.close and, with By and Time set by
// Apply, its record.
type SARClosure struct {
	SAR      string    `json:"sar"`
	Answered time.Time `json:"answered"`   // the day the answer went out (midnight UTC)
	Files    string    `json:"files_hash"` // hex SHA-256 of the files sent
	By       string    `json:"by,omitempty"`
	Time     time.Time `json:"time,omitzero"`
}

// AddMonths returns t plus n calendar months in UTC, on the same day of the
// month, or on the target month's last day if it has no such day (Jan 31
// plus one month is Feb 28, or Feb 29 in a leap year). time.AddDate would
// roll over into the next month instead (Jan 31 → Mar 3).
func AddMonths(t time.Time, n int) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, 0, 0, 0, 0, time.UTC) // normalises the year
	if last := daysIn(first.Year(), first.Month()); d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// daysIn is the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// day is the UTC calendar day of t, as midnight UTC.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// isDay reports whether t is a UTC midnight.
func isDay(t time.Time) bool { return t.Equal(day(t)) }

// OriginalDeadline is one month after receipt: the last day to answer
// without an extension.
func (a *SubjectAccess) OriginalDeadline() time.Time { return AddMonths(day(a.Received), SARMonths) }

// Deadline is the last day to answer: the original deadline, plus the
// extension's months counted from it the same way.
func (a *SubjectAccess) Deadline() time.Time {
	d := a.OriginalDeadline()
	if a.Extension != nil {
		d = AddMonths(d, a.Extension.Months)
	}
	return d
}

// DaysLeft is the number of days from now's UTC day to the deadline: 0 on
// the deadline's day, negative after it.
func (a *SubjectAccess) DaysLeft(now time.Time) int {
	return int(a.Deadline().Sub(day(now)) / (24 * time.Hour))
}

// Overdue reports whether a is still unanswered after its deadline's day.
func (a *SubjectAccess) Overdue(now time.Time) bool {
	return a.Closure == nil && a.DaysLeft(now) < 0
}

// SubjectAccesses returns copies of the subject access requests, sorted by
// ID.
func (s *State) SubjectAccesses() []*SubjectAccess {
	if s == nil {
		return nil
	}
	return sortedCopies(s.SubjectAccess, cloneSubjectAccess, func(*SubjectAccess) bool { return true })
}

func (s *State) planOpenSAR(a *SubjectAccess, c *Command) (func(), error) {
	if a == nil {
		return nil, errors.New("no subject access request")
	}
	if err := validName(a.ID); err != nil {
		return nil, fmt.Errorf("subject access request id: %w", err)
	}
	if s.SubjectAccess[a.ID] != nil {
		return nil, fmt.Errorf("subject access request %q exists", a.ID)
	}
	cams, err := s.checkOpenSAR(a, c)
	if err != nil {
		return nil, fmt.Errorf("subject access request %q: %w", a.ID, err)
	}
	na := cloneSubjectAccess(*a)
	na.Received, na.Cameras, na.OpenedBy, na.Opened = day(a.Received), cams, c.Signer, c.Time
	return func() { s.SubjectAccess[na.ID] = &na }, nil
}

func (s *State) checkOpenSAR(a *SubjectAccess, c *Command) ([]string, error) {
	if a.OpenedBy != "" || !a.Opened.IsZero() || a.Extension != nil || a.Closure != nil {
		return nil, errors.New("a new request carries only its id, subject, receipt date, cameras and range")
	}
	if err := checkText("subject", a.Subject); err != nil {
		return nil, err
	}
	switch {
	case a.Received.IsZero():
		return nil, errors.New("needs the date it was received")
	case !isDay(a.Received):
		return nil, fmt.Errorf("received %s is not a date: give the day it arrived (midnight UTC)", stamp(a.Received))
	case a.Received.After(c.Time):
		return nil, fmt.Errorf("received %s is after the command's time %s: a request cannot arrive in the future", stamp(a.Received), stamp(c.Time))
	}
	if err := checkFootageRange(a.From, a.To, c.Time, MaxAccessSpan); err != nil {
		return nil, err
	}
	cams, err := s.selectorCameras(a.Selector)
	if err != nil {
		return nil, err
	}
	if a.Cameras != nil && !slices.Equal(a.Cameras, cams) {
		return nil, fmt.Errorf("names cameras %v, but its selector matches %v", a.Cameras, cams)
	}
	return cams, nil
}

// openSAR returns the subject access request id if it is open (recorded and
// not closed).
func (s *State) openSAR(id, verb string) (*SubjectAccess, error) {
	a := s.SubjectAccess[id]
	switch {
	case a == nil:
		return nil, fmt.Errorf("no subject access request %q: it can be %s only after sar.open records it", id, verb)
	case a.Closure != nil:
		return nil, fmt.Errorf("subject access request %q was closed on %s by %s", id, a.Closure.Answered.Format(time.DateOnly), a.Closure.By)
	}
	return a, nil
}

// decisionBy checks the by and time a payload may carry: its command's.
func decisionBy(by string, at time.Time, c *Command) error {
	switch {
	case by != "" && by != c.Signer:
		return fmt.Errorf("names %q but is signed by %q", by, c.Signer)
	case !at.IsZero() && !at.Equal(c.Time):
		return fmt.Errorf("time %s is not the command's time %s", stamp(at), stamp(c.Time))
	}
	return nil
}

func (s *State) planExtendSAR(e *SARExtension, c *Command) (func(), error) {
	if e == nil {
		return nil, errors.New("no extension")
	}
	a, err := s.openSAR(e.SAR, "extended")
	if err != nil {
		return nil, err
	}
	if err := decisionBy(e.By, e.Time, c); err != nil {
		return nil, fmt.Errorf("extending subject access request %q: %w", a.ID, err)
	}
	switch {
	case a.Extension != nil:
		return nil, fmt.Errorf("subject access request %q was already extended by %d months on %s (%s): art. 12(3) allows one extension",
			a.ID, a.Extension.Months, a.Extension.Time.UTC().Format(time.DateOnly), a.Extension.Reason)
	case e.Months < 1:
		return nil, fmt.Errorf("extending subject access request %q by %d months: want 1 to %d", a.ID, e.Months, MaxSARExtensionMonths)
	case e.Months > MaxSARExtensionMonths:
		return nil, fmt.Errorf("extending subject access request %q by %d months: art. 12(3) allows at most %d", a.ID, e.Months, MaxSARExtensionMonths)
	case day(c.Time).After(a.OriginalDeadline()):
		return nil, fmt.Errorf("subject access request %q: its deadline %s has passed; art. 12(3) lets the controller extend only within the first month",
			a.ID, a.OriginalDeadline().Format(time.DateOnly))
	}
	if err := checkText("reason", e.Reason); err != nil {
		return nil, fmt.Errorf("extending subject access request %q: %w", a.ID, err)
	}
	ne := SARExtension{SAR: a.ID, Months: e.Months, Reason: e.Reason, By: c.Signer, Time: c.Time}
	return func() { a.Extension = &ne }, nil
}

func (s *State) planCloseSAR(x *SARClosure, c *Command) (func(), error) {
	if x == nil {
		return nil, errors.New("no closure")
	}
	a, err := s.openSAR(x.SAR, "closed")
	if err != nil {
		return nil, err
	}
	if err := decisionBy(x.By, x.Time, c); err != nil {
		return nil, fmt.Errorf("closing subject access request %q: %w", a.ID, err)
	}
	switch {
	case x.Answered.IsZero():
		return nil, fmt.Errorf("closing subject access request %q: needs the date it was answered", a.ID)
	case !isDay(x.Answered):
		return nil, fmt.Errorf("closing subject access request %q: answered %s is not a date (midnight UTC)", a.ID, stamp(x.Answered))
	case x.Answered.Before(a.Received):
		return nil, fmt.Errorf("closing subject access request %q: answered %s, before it was received on %s",
			a.ID, x.Answered.Format(time.DateOnly), a.Received.UTC().Format(time.DateOnly))
	case x.Answered.After(c.Time):
		return nil, fmt.Errorf("closing subject access request %q: answered %s is after the command's time %s",
			a.ID, x.Answered.Format(time.DateOnly), stamp(c.Time))
	}
	if b, err := hex.DecodeString(x.Files); err != nil || len(b) != 32 || hex.EncodeToString(b) != x.Files {
		return nil, fmt.Errorf("closing subject access request %q: the files' hash must be a SHA-256 as 64 lower-case hex digits", a.ID)
	}
	nx := SARClosure{SAR: a.ID, Answered: day(x.Answered), Files: x.Files, By: c.Signer, Time: c.Time}
	return func() { a.Closure = &nx }, nil
}

func cloneSubjectAccess(a SubjectAccess) SubjectAccess {
	a.Cameras = slices.Clone(a.Cameras)
	if a.Extension != nil {
		e := *a.Extension
		a.Extension = &e
	}
	if a.Closure != nil {
		x := *a.Closure
		a.Closure = &x
	}
	return a
}
