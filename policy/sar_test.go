package policy

import (
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func parseDay(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAddMonths(t *testing.T) {
	cases := []struct {
		from   string
		months int
		want   string
	}{
		{"2026-01-15", 1, "2026-02-15"},
		{"2026-01-28", 1, "2026-02-28"},
		{"2026-01-29", 1, "2026-02-28"},
		{"2026-01-31", 1, "2026-02-28"},
		{"2028-01-31", 1, "2028-02-29"}, // leap year
		{"2028-01-30", 1, "2028-02-29"},
		{"2100-01-31", 1, "2100-02-28"}, // a century is not a leap year
		{"2000-01-31", 1, "2000-02-29"}, // unless it divides by 400
		{"2028-02-29", 1, "2028-03-29"},
		{"2026-02-28", 1, "2026-03-28"},
		{"2026-03-31", 1, "2026-04-30"},
		{"2026-08-31", 1, "2026-09-30"},
		{"2026-12-31", 1, "2027-01-31"}, // across the year
		{"2026-12-15", 1, "2027-01-15"},
		{"2026-11-30", 2, "2027-01-30"},
		{"2026-12-31", 2, "2027-02-28"},
		{"2027-12-31", 2, "2028-02-29"},
		{"2026-05-31", 0, "2026-05-31"},
		{"2026-10-31", 13, "2027-11-30"},
	}
	for _, c := range cases {
		if got := AddMonths(parseDay(t, c.from), c.months); !got.Equal(parseDay(t, c.want)) {
			t.Errorf("%s + %d months = %s, want %s", c.from, c.months, got.Format(time.DateOnly), c.want)
		}
	}
	// The time of day and the zone's offset are kept as the same instant's
	// UTC clock.
	at := time.Date(2026, 1, 31, 23, 30, 0, 0, time.FixedZone("CET", 3600)) // 22:30 UTC
	if got, want := AddMonths(at, 1), time.Date(2026, 2, 28, 22, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("AddMonths(%v, 1) = %v, want %v", at, got, want)
	}
}

func TestSARDeadline(t *testing.T) {
	cases := []struct {
		received string
		extended int // months, 0 for none
		want     string
	}{
		{"2026-01-15", 0, "2026-02-15"},
		{"2026-01-31", 0, "2026-02-28"},
		{"2028-01-31", 0, "2028-02-29"},
		{"2026-12-31", 0, "2027-01-31"},
		{"2026-03-31", 0, "2026-04-30"},
		// An extension counts from the original deadline, the same way.
		{"2026-01-31", 2, "2026-04-28"},
		{"2026-01-31", 1, "2026-03-28"},
		{"2028-01-31", 1, "2028-03-29"},
		{"2026-12-31", 2, "2027-03-31"},
		{"2027-11-30", 2, "2028-02-29"},
		{"2026-11-26", 2, "2027-02-26"},
	}
	for _, c := range cases {
		a := &SubjectAccess{Received: parseDay(t, c.received)}
		if c.extended > 0 {
			a.Extension = &SARExtension{Months: c.extended}
		}
		if got := a.Deadline(); !got.Equal(parseDay(t, c.want)) {
			t.Errorf("received %s, extended by %d: deadline %s, want %s", c.received, c.extended, got.Format(time.DateOnly), c.want)
		}
	}
}

// monthLength is the Gregorian calendar's rule, written out apart from
// package time so that the property below does not check time by time.
func monthLength(y int, m time.Month) int {
	switch m {
	case time.April, time.June, time.September, time.November:
		return 30
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	}
	return 31
}

// AddMonths lands n months on, on the same day or the month's last day,
// never before its start, and never earlier for a later start.
func TestAddMonthsProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		y := rapid.IntRange(1970, 2400).Draw(rt, "year")
		m := time.Month(rapid.IntRange(1, 12).Draw(rt, "month"))
		d := rapid.IntRange(1, monthLength(y, m)).Draw(rt, "day")
		n := rapid.IntRange(0, 36).Draw(rt, "months")
		from := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		got := AddMonths(from, n)
		wantY, wantM := y+(int(m)-1+n)/12, time.Month((int(m)-1+n)%12+1)
		wantD := min(d, monthLength(wantY, wantM))
		if got.Year() != wantY || got.Month() != wantM || got.Day() != wantD || !isDay(got) {
			rt.Fatalf("%s + %d months = %s, want %04d-%02d-%02d", from.Format(time.DateOnly), n, got.Format(time.DateOnly), wantY, wantM, wantD)
		}
		if got.Before(from) {
			rt.Fatalf("%s + %d months = %s is earlier", from.Format(time.DateOnly), n, got.Format(time.DateOnly))
		}
		next := from.AddDate(0, 0, 1)
		if AddMonths(next, n).Before(got) {
			rt.Fatalf("a day later, %s + %d months is earlier than %s", next.Format(time.DateOnly), n, got.Format(time.DateOnly))
		}
		// An extension of 1 or 2 months counts from the original deadline.
		k := rapid.IntRange(1, MaxSARExtensionMonths).Draw(rt, "extension")
		a := &SubjectAccess{Received: from, Extension: &SARExtension{Months: k}}
		if want := AddMonths(AddMonths(from, 1), k); !a.Deadline().Equal(want) || a.Deadline().Before(a.OriginalDeadline()) {
			rt.Fatalf("received %s, extended by %d: deadline %s, want %s", from.Format(time.DateOnly), k, a.Deadline().Format(time.DateOnly), want.Format(time.DateOnly))
		}
	})
}

func TestSARDaysLeftAndOverdue(t *testing.T) {
	a := &SubjectAccess{Received: date(2026, 1, 31)} // deadline 2026-02-28
	cases := []struct {
		now     time.Time
		left    int
		overdue bool
	}{
		{time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC), 28, false},
		{time.Date(2026, 2, 27, 23, 59, 59, 0, time.UTC), 1, false},
		{time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), 0, false},
		{time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC), 0, false},
		{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), -1, true},
		{time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC), -31, true},
		// 00:30 in Prague on 1 March is still 28 February in UTC.
		{time.Date(2026, 3, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), 0, false},
	}
	for _, c := range cases {
		if got := a.DaysLeft(c.now); got != c.left {
			t.Errorf("at %v: %d days left, want %d", c.now, got, c.left)
		}
		if got := a.Overdue(c.now); got != c.overdue {
			t.Errorf("at %v: overdue %v, want %v", c.now, got, c.overdue)
		}
	}
	a.Extension = &SARExtension{Months: 2} // deadline 2026-04-28
	if got := a.DaysLeft(date(2026, 3, 1)); got != 58 || a.Overdue(date(2026, 3, 1)) {
		t.Errorf("extended: %d days left on 1 March, overdue %v; want 58, not overdue", got, a.Overdue(date(2026, 3, 1)))
	}
	a.Closure = &SARClosure{Answered: date(2026, 4, 30)}
	if a.Overdue(date(2026, 6, 1)) {
		t.Error("a closed request is overdue")
	}
}

// sarFed is a request federation with helpers for sar commands.
func (f *reqFed) openSAR(t testing.TB, by string, a *SubjectAccess, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindOpenSAR, at)
	c.SAR = a
	return f.users[by].sign(t, c)
}

func (f *reqFed) extendSAR(t testing.TB, by string, e *SARExtension, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindExtendSAR, at)
	c.SARExtension = e
	return f.users[by].sign(t, c)
}

func (f *reqFed) closeSAR(t testing.TB, by string, x *SARClosure, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindCloseSAR, at)
	c.SARClosure = x
	return f.users[by].sign(t, c)
}

// goodSAR was received the day before t0, for two hours of the entrance.
func goodSAR() *SubjectAccess {
	return &SubjectAccess{ID: "sar-1", Subject: "J. Novák / ref 2026-114", Received: date(2026, 11, 26),
		Selector: "praha-1/entrance", From: t0.Add(-2 * time.Hour), To: t0}
}

const filesHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func TestSAROpen(t *testing.T) {
	cases := []struct {
		name   string
		by     string
		mutate func(*SubjectAccess)
		want   string
	}{
		{name: "viewer", by: "dave", want: `signer "dave" has role viewer; subject access requests are kept by role admin`},
		{name: "approver", by: "bob", want: "has role approver; subject access requests are kept by role admin"},
		{name: "auditor", by: "erin", want: "has role auditor"},
		{name: "bad id", by: "alice", mutate: func(a *SubjectAccess) { a.ID = "sar 1" }, want: "subject access request id"},
		{name: "no subject", by: "alice", mutate: func(a *SubjectAccess) { a.Subject = "  " }, want: "needs a subject"},
		{name: "subject with control characters", by: "alice", mutate: func(a *SubjectAccess) { a.Subject = "x\x1b[2J" }, want: "control character"},
		{name: "no receipt date", by: "alice", mutate: func(a *SubjectAccess) { a.Received = time.Time{} }, want: "needs the date it was received"},
		{name: "receipt not a date", by: "alice", mutate: func(a *SubjectAccess) { a.Received = a.Received.Add(10 * time.Hour) }, want: "is not a date"},
		{name: "received in the future", by: "alice", mutate: func(a *SubjectAccess) { a.Received = date(2026, 11, 28) }, want: "a request cannot arrive in the future"},
		{name: "no range", by: "alice", mutate: func(a *SubjectAccess) { a.From = time.Time{} }, want: "needs a footage range"},
		{name: "reversed range", by: "alice", mutate: func(a *SubjectAccess) { a.From, a.To = a.To, a.From }, want: "the range is reversed or empty"},
		{name: "range in the future", by: "alice", mutate: func(a *SubjectAccess) { a.To = tc.Add(time.Minute) }, want: "a range in the future has no footage yet"},
		{name: "range too long", by: "alice", mutate: func(a *SubjectAccess) { a.From = a.To.Add(-MaxAccessSpan - time.Second) }, want: "longer than 744h0m0s"},
		{name: "unknown camera", by: "alice", mutate: func(a *SubjectAccess) { a.Selector = "praha-1/back-door" }, want: `camera selector "praha-1/back-door" matches no camera`},
		{name: "bad selector", by: "alice", mutate: func(a *SubjectAccess) { a.Selector = "" }, want: "want SITE/CAMERA"},
		{name: "cameras in payload differ", by: "alice", mutate: func(a *SubjectAccess) { a.Cameras = []string{"brno-1/door"} }, want: "but its selector matches"},
		{name: "carries a closure", by: "alice", mutate: func(a *SubjectAccess) { a.Closure = &SARClosure{} }, want: "carries only its id"},
		{name: "carries an opener", by: "alice", mutate: func(a *SubjectAccess) { a.OpenedBy = "frank" }, want: "carries only its id"},
	}
	f := newReqFed(t)
	for _, c := range cases {
		a := goodSAR()
		if c.mutate != nil {
			c.mutate(a)
		}
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.openSAR(t, c.by, a, tc), c.want) })
	}
	mustApply(t, f.s, f.openSAR(t, "frank", goodSAR(), tc))
	got := f.s.SubjectAccess["sar-1"]
	if got.OpenedBy != "frank" || !got.Opened.Equal(tc) || len(got.Cameras) != 1 || got.Cameras[0] != "praha-1/entrance" {
		t.Fatalf("stored %+v", got)
	}
	if d := got.Deadline(); !d.Equal(date(2026, 12, 26)) || got.DaysLeft(tc) != 29 {
		t.Fatalf("deadline %v, %d days left at %v; want 2026-12-26, 29", d, got.DaysLeft(tc), tc)
	}
	refused(t, f.s, f.openSAR(t, "alice", goodSAR(), tc), `subject access request "sar-1" exists`)
	if all := f.s.SubjectAccesses(); len(all) != 1 || all[0] == got || all[0].ID != "sar-1" {
		t.Fatalf("SubjectAccesses = %v, want a copy of sar-1", all)
	}
}

func TestSARExtendAndClose(t *testing.T) {
	f := newReqFed(t)
	ext := func(months int, reason string) *SARExtension {
		return &SARExtension{SAR: "sar-1", Months: months, Reason: reason}
	}
	const why = "footage of 40 cameras to review and blur"
	refused(t, f.s, f.extendSAR(t, "alice", ext(1, why), tc), `no subject access request "sar-1": it can be extended only after sar.open records it`)
	refused(t, f.s, f.closeSAR(t, "alice", &SARClosure{SAR: "sar-1", Answered: date(2026, 11, 27), Files: filesHash}, tc),
		`no subject access request "sar-1": it can be closed only after sar.open records it`)
	mustApply(t, f.s, f.openSAR(t, "alice", goodSAR(), tc))

	for _, c := range []struct {
		name string
		by   string
		e    *SARExtension
		at   time.Time
		want string
	}{
		{"by three months", "alice", ext(3, why), tc, "by 3 months: art. 12(3) allows at most 2"},
		{"by no months", "alice", ext(0, why), tc, "by 0 months: want 1 to 2"},
		{"without a reason", "alice", ext(2, ""), tc, "needs a reason"},
		{"by an approver", "bob", ext(2, why), tc, "subject access requests are kept by role admin"},
		{"after the deadline", "alice", ext(2, why), date(2026, 12, 27), "its deadline 2026-12-26 has passed"},
		{"naming another admin", "alice", &SARExtension{SAR: "sar-1", Months: 2, Reason: why, By: "frank"}, tc, `names "frank" but is signed by "alice"`},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.extendSAR(t, c.by, c.e, c.at), c.want) })
	}
	// On the deadline's last day, an extension is still in time.
	mustApply(t, f.s, f.extendSAR(t, "frank", ext(2, why), time.Date(2026, 12, 26, 23, 0, 0, 0, time.UTC)))
	a := f.s.SubjectAccess["sar-1"]
	if a.Extension == nil || a.Extension.By != "frank" || !a.Deadline().Equal(date(2027, 2, 26)) {
		t.Fatalf("extension %+v, deadline %v; want frank's, 2027-02-26", a.Extension, a.Deadline())
	}
	refused(t, f.s, f.extendSAR(t, "alice", ext(1, "more"), time.Date(2026, 12, 27, 0, 0, 0, 0, time.UTC)),
		`was already extended by 2 months on 2026-12-26 (`+why+"): art. 12(3) allows one extension")

	at := time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)
	closure := func(answered time.Time, hash string) *SARClosure {
		return &SARClosure{SAR: "sar-1", Answered: answered, Files: hash}
	}
	for _, c := range []struct {
		name string
		by   string
		x    *SARClosure
		want string
	}{
		{"answered before it was received", "alice", closure(date(2026, 11, 25), filesHash), "answered 2026-11-25, before it was received on 2026-11-26"},
		{"answered in the future", "alice", closure(date(2027, 1, 11), filesHash), "is after the command's time"},
		{"no answer date", "alice", closure(time.Time{}, filesHash), "needs the date it was answered"},
		{"answer not a date", "alice", closure(date(2027, 1, 9).Add(time.Hour), filesHash), "is not a date"},
		{"hash too short", "alice", closure(date(2027, 1, 9), filesHash[:62]), "SHA-256 as 64 lower-case hex digits"},
		{"hash upper case", "alice", closure(date(2027, 1, 9), strings.ToUpper(filesHash)), "64 lower-case hex digits"},
		{"by a viewer", "dave", closure(date(2027, 1, 9), filesHash), "has role viewer"},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.closeSAR(t, c.by, c.x, at), c.want) })
	}
	mustApply(t, f.s, f.closeSAR(t, "alice", closure(date(2027, 1, 9), filesHash), at))
	if x := a.Closure; x == nil || x.By != "alice" || !x.Time.Equal(at) || x.Files != filesHash || !x.Answered.Equal(date(2027, 1, 9)) {
		t.Fatalf("closure %+v", a.Closure)
	}
	if a.Overdue(date(2028, 1, 1)) {
		t.Fatal("a closed request is overdue")
	}
	refused(t, f.s, f.closeSAR(t, "alice", closure(date(2027, 1, 10), filesHash), at), `subject access request "sar-1" was closed on 2027-01-09 by alice`)
	refused(t, f.s, f.extendSAR(t, "alice", ext(1, why), at), "was closed on 2027-01-09")
	// A closed request stays: it is the record of the answer.
	f.advance(t, at.Add(400*24*time.Hour))
	if f.s.SubjectAccess["sar-1"] == nil {
		t.Fatal("a closed subject access request was pruned")
	}
}
