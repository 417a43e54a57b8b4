package policy

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Prague whatever the host has installed
)

// goodBreach was detected two hours before tc.
func goodBreach(id string) *Breach {
	return &Breach{ID: id, What: "the disk of store-praha-1 was stolen with three days of footage",
		Detected: tc.Add(-2 * time.Hour), Nature: "loss of confidentiality: encrypted footage taken",
		Categories: "customers and staff at the entrance; video of them", ApproxSubjects: 400, ApproxRecords: 18000,
		Consequences: "none likely: the footage is encrypted and no key left the datacenters",
		Measures:     "the store's key revoked; police report 123/2026"}
}

func (f *reqFed) openBreach(t testing.TB, by string, b *Breach, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindOpenBreach, at)
	c.Breach = b
	return f.users[by].sign(t, c)
}

func (f *reqFed) updateBreach(t testing.TB, by string, u *BreachUpdate, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindUpdateBreach, at)
	c.BreachUpdate = u
	return f.users[by].sign(t, c)
}

// closeBreach signs x as by; a closure without notification is
// governance in the sealed federation, so it goes as by's proposal (which
// checks it at once) — closeNotNotified has the quorum approve it.
func (f *reqFed) closeBreach(t testing.TB, by string, x *BreachClosure, at time.Time) Envelope {
	t.Helper()
	c := cmd(KindCloseBreach, at)
	c.BreachClosure = x
	if x.NotNotifiedReason != "" {
		env, _ := f.proposal(t, by, c, at)
		return env
	}
	return f.users[by].sign(t, c)
}

// closeNotNotified closes a breach never notified as the quorum does: by
// proposes, bob and carol approve.
func (f *reqFed) closeNotNotified(t testing.TB, by string, x *BreachClosure, at time.Time) {
	t.Helper()
	c := cmd(KindCloseBreach, at)
	c.BreachClosure = x
	env, id := f.proposal(t, by, c, at)
	mustApply(t, f.s, env)
	for _, a := range []string{"bob", "carol"} {
		mustApply(t, f.s, f.approveProposal(t, a, id, f.digest(id), at))
	}
	if f.s.Proposals[id].Executed.IsZero() {
		t.Fatalf("the quorum's approval did not close %s", x.Breach)
	}
}

func TestBreachOpen(t *testing.T) {
	cases := []struct {
		name   string
		by     string
		mutate func(*Breach)
		want   string
	}{
		{name: "viewer", by: "dave", want: `signer "dave" has role viewer; the breach register is kept by role admin`},
		{name: "approver", by: "bob", want: `signer "bob" has role approver; the breach register is kept by role admin`},
		{name: "auditor", by: "erin", want: `signer "erin" has role auditor; the breach register is kept by role admin`},
		{name: "bad id", by: "alice", mutate: func(b *Breach) { b.ID = "b 1" }, want: `breach id: name "b 1" has ' '`},
		{name: "nothing happened", by: "alice", mutate: func(b *Breach) { b.What = "" }, want: `breach "b-1": needs a description of what happened`},
		{name: "what too long", by: "alice", mutate: func(b *Breach) { b.What = strings.Repeat("x", MaxBreachText+1) }, want: "description of what happened of 2049 bytes is longer than 2048"},
		{name: "what with an escape", by: "alice", mutate: func(b *Breach) { b.What = "disk\x1b[2J" }, want: `description of what happened has control character '\x1b'`},
		{name: "not detected", by: "alice", mutate: func(b *Breach) { b.Detected = time.Time{} }, want: "needs the time it was detected (the 72-hour clock starts then)"},
		{name: "detected in the future", by: "alice", mutate: func(b *Breach) { b.Detected = tc.Add(time.Second) },
			want: `breach "b-1": detected 2026-11-27T09:00:01Z is after the command's time 2026-11-27T09:00:00Z: a breach cannot be detected in the future`},
		{name: "blank nature", by: "alice", mutate: func(b *Breach) { b.Nature = " \n" }, want: "needs a nature"},
		{name: "categories with a NUL", by: "alice", mutate: func(b *Breach) { b.Categories = "staff\x00" }, want: `categories has control character '\x00'`},
		{name: "consequences too long", by: "alice", mutate: func(b *Breach) { b.Consequences = strings.Repeat("x", MaxBreachText+1) }, want: "consequences of 2049 bytes is longer than 2048"},
		{name: "measures with an override", by: "alice", mutate: func(b *Breach) { b.Measures = "revoked\u202e" }, want: `measures has invisible formatting character '\u202e'`},
		{name: "contact with a bell", by: "alice", mutate: func(b *Breach) { b.Contact = "dpo\a" }, want: `contact has control character '\a'`},
		{name: "negative subjects", by: "alice", mutate: func(b *Breach) { b.ApproxSubjects = -1 }, want: "approximate number of subjects -1: want 0 (not known) to 1000000000000"},
		{name: "too many records", by: "alice", mutate: func(b *Breach) { b.ApproxRecords = MaxBreachCount + 1 }, want: "approximate number of records 1000000000001: want 0 (not known) to 1000000000000"},
		{name: "already notified", by: "alice", mutate: func(b *Breach) { b.Notified = tc }, want: "a new breach carries no notification: record it with breach.update"},
		{name: "with a late reason", by: "alice", mutate: func(b *Breach) { b.LateReason = "weekend" }, want: "a new breach carries no notification"},
		{name: "with an opener", by: "alice", mutate: func(b *Breach) { b.OpenedBy = "frank" }, want: "a new breach carries only what happened"},
		{name: "already closed", by: "alice", mutate: func(b *Breach) { b.Closure = &BreachClosure{} }, want: "a new breach carries only what happened"},
	}
	f := newReqFed(t)
	for _, c := range cases {
		b := goodBreach("b-1")
		if c.mutate != nil {
			c.mutate(b)
		}
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.openBreach(t, c.by, b, tc), c.want) })
	}
	c := cmd(KindOpenBreach, tc)
	refused(t, f.s, f.users["alice"].sign(t, c), "no breach")

	// Detected in Prague's zone, at the command's very time: stored in UTC.
	prague := mustZone(t, "Europe/Prague")
	b := goodBreach("b-2")
	b.Detected = tc.In(prague)
	mustApply(t, f.s, f.openBreach(t, "frank", b, tc))
	got := f.s.Breaches["b-2"]
	if got.Detected != tc || got.OpenedBy != "frank" || got.Opened != tc || got.Contact != "" || got.Closure != nil {
		t.Fatalf("stored %+v", got)
	}
	refused(t, f.s, f.openBreach(t, "alice", goodBreach("b-2"), tc), `breach "b-2" exists`)

	// The contact point defaults to the DPO, or the controller without one;
	// one given is kept.
	mustApply(t, f.s, f.setController(t, "alice", goodController(), tc))
	mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-3"), tc))
	b = goodBreach("b-1")
	b.Contact = "security desk, +420 222 000 111"
	mustApply(t, f.s, f.openBreach(t, "alice", b, tc))
	for id, want := range map[string]string{
		"b-3": "Mgr. Jana Dvořáková, dpo@novak.cz, +420 (777) 123-456",
		"b-1": "security desk, +420 222 000 111",
	} {
		if got := f.s.Breaches[id].Contact; got != want {
			t.Errorf("breach %s: contact %q, want %q", id, got, want)
		}
	}

	open := f.s.OpenBreaches()
	if ids := breachIDs(open); !slices.Equal(ids, []string{"b-1", "b-2", "b-3"}) {
		t.Fatalf("OpenBreaches = %v, want b-1, b-2, b-3", ids)
	}
	open[0].What = "changed"
	if f.s.Breaches["b-1"].What == "changed" {
		t.Fatal("OpenBreaches returned the state's own records")
	}
}

func breachIDs(bs []*Breach) []string {
	var ids []string
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	return ids
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestBreachUpdate(t *testing.T) {
	f := newReqFed(t)
	detected := tc.Add(-2 * time.Hour) // 07:00Z; the deadline is 2026-11-30T07:00Z
	refused(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-1", Nature: "x"}, tc),
		`no breach "b-1": it can be updated only after breach.open records it`)
	mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-1"), tc))

	at := tc.Add(time.Hour)
	up := func(mutate func(*BreachUpdate)) *BreachUpdate {
		u := &BreachUpdate{Breach: "b-1"}
		mutate(u)
		return u
	}
	for _, c := range []struct {
		name string
		by   string
		u    *BreachUpdate
		at   time.Time
		want string
	}{
		{"nothing", "alice", up(func(*BreachUpdate) {}), at, `updating breach "b-1": the update changes nothing`},
		{"by a viewer", "dave", up(func(u *BreachUpdate) { u.Nature = "x" }), at, "the breach register is kept by role admin"},
		{"by an auditor", "erin", up(func(u *BreachUpdate) { u.Nature = "x" }), at, "the breach register is kept by role admin"},
		{"naming another admin", "alice", up(func(u *BreachUpdate) { u.Nature, u.By = "x", "frank" }), at, `names "frank" but is signed by "alice"`},
		{"before the breach was opened", "alice", up(func(u *BreachUpdate) { u.Nature = "x" }), tc.Add(-time.Minute),
			`command time 2026-11-27T08:59:00Z is before breach "b-1" was opened at 2026-11-27T09:00:00Z`},
		{"detected moved to the future", "alice", up(func(u *BreachUpdate) { u.Detected = at.Add(time.Minute) }), at,
			"detected 2026-11-27T10:01:00Z is after the command's time 2026-11-27T10:00:00Z"},
		{"blank nature", "alice", up(func(u *BreachUpdate) { u.Nature = "\t" }), at, "needs a nature"},
		{"negative records", "alice", up(func(u *BreachUpdate) { u.ApproxRecords = -5 }), at, "approximate number of records -5"},
		{"late reason with an escape", "alice", up(func(u *BreachUpdate) { u.LateReason = "\x1b" }), at, `late reason has control character '\x1b'`},
		{"notified before detected", "alice", up(func(u *BreachUpdate) { u.Notified = detected.Add(-time.Second) }), at,
			"notified 2026-11-27T06:59:59Z is before detected 2026-11-27T07:00:00Z"},
		{"notified in the future", "alice", up(func(u *BreachUpdate) { u.Notified = at.Add(time.Second) }), at,
			"notified 2026-11-27T10:00:01Z is after the command's time 2026-11-27T10:00:00Z"},
		{"notified late without a reason", "alice", up(func(u *BreachUpdate) { u.Notified = detected.Add(74*time.Hour + 5*time.Minute) }), detected.Add(80 * time.Hour),
			"notified 2026-11-30T09:05:00Z, 74h 5m after detection, past art. 33(1)'s 72h 0m: a late notification needs the reasons for the delay (late reason)"},
		{"a minute late without a reason", "alice", up(func(u *BreachUpdate) { u.Notified = detected.Add(72*time.Hour + time.Minute) }), detected.Add(80 * time.Hour),
			"72h 1m after detection"},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.updateBreach(t, c.by, c.u, c.at), c.want) })
	}

	// An update changes what it names and nothing else.
	before := *f.s.Breaches["b-1"]
	mustApply(t, f.s, f.updateBreach(t, "frank", &BreachUpdate{Breach: "b-1", Nature: "theft", ApproxSubjects: 520}, at))
	b := f.s.Breaches["b-1"]
	want := before
	want.Nature, want.ApproxSubjects, want.UpdatedBy, want.Updated = "theft", 520, "frank", at
	if *b != want {
		t.Fatalf("after the update:\n%+v\nwant\n%+v", *b, want)
	}

	// Notified exactly 72 hours after detection is in time ("not later
	// than 72 hours") and needs no reason.
	onTime := detected.Add(BreachNotifyWithin)
	mustApply(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-1", Notified: onTime}, onTime))
	if !b.Notified.Equal(onTime) || b.NotifiedLate() {
		t.Fatalf("notified %v, late %v; want %v, in time", b.Notified, b.NotifiedLate(), onTime)
	}
	// Moving the detection earlier makes that notification late: the
	// whole entry is checked again, so it needs the reason too.
	later := onTime.Add(time.Hour)
	refused(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-1", Detected: detected.Add(-time.Minute)}, later),
		"72h 1m after detection, past art. 33(1)'s 72h 0m: a late notification needs the reasons for the delay")
	mustApply(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-1", Detected: detected.Add(-time.Minute),
		LateReason: "the theft was first reported to the store manager, who told the controller a minute later"}, later))
	if !b.NotifiedLate() || b.Deadline() != detected.Add(-time.Minute+BreachNotifyWithin) {
		t.Fatalf("after moving the detection: late %v, deadline %v", b.NotifiedLate(), b.Deadline())
	}
}

func TestBreachClose(t *testing.T) {
	f := newReqFed(t)
	detected := tc.Add(-2 * time.Hour)
	closure := func(id string, closed time.Time, outcome, reason string) *BreachClosure {
		return &BreachClosure{Breach: id, Closed: closed, Outcome: outcome, NotNotifiedReason: reason}
	}
	const why = "the footage is encrypted and no key share left the datacenters: unlikely to result in a risk"
	refused(t, f.s, f.closeBreach(t, "alice", closure("b-1", tc, "done", why), tc), `no breach "b-1": it can be closed only after breach.open records it`)
	mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-1"), tc))
	mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-2"), tc))
	at := tc.Add(time.Hour)
	for _, c := range []struct {
		name string
		by   string
		x    *BreachClosure
		want string
	}{
		{"by a viewer", "dave", closure("b-1", at, "done", why), "needs role admin or approver"},
		{"by a viewer, notified", "dave", closure("b-1", at, "done", ""), "the breach register is kept by role admin"},
		{"no closing time", "alice", closure("b-1", time.Time{}, "done", why), `closing breach "b-1": needs the time it was closed`},
		{"closed before detected", "alice", closure("b-1", detected.Add(-time.Second), "done", why),
			"closed 2026-11-27T06:59:59Z is before detected 2026-11-27T07:00:00Z"},
		{"closed in the future", "alice", closure("b-1", at.Add(time.Second), "done", why),
			"closed 2026-11-27T10:00:01Z is after the command's time 2026-11-27T10:00:00Z"},
		{"no outcome", "alice", closure("b-1", at, " ", why), `closing breach "b-1": needs an outcome`},
		{"outcome too long", "alice", closure("b-1", at, strings.Repeat("x", MaxBreachText+1), why), "outcome of 2049 bytes is longer than 2048"},
		{"never notified, no reason", "alice", closure("b-1", at, "done", ""),
			`closing breach "b-1": the supervisory authority was not notified; record when it was (breach.update) or why it need not be (unlikely to result in a risk to rights and freedoms, art. 33(1))`},
		{"reason with an escape", "alice", closure("b-1", at, "done", "\x1b[2J"), `reason for not notifying has control character '\x1b'`},
		{"another time", "alice", &BreachClosure{Breach: "b-1", Closed: at, Outcome: "done", NotNotifiedReason: why, Time: tc}, "is not the command's time"},
	} {
		t.Run(c.name, func(t *testing.T) { refused(t, f.s, f.closeBreach(t, c.by, c.x, at), c.want) })
	}

	// Not notified, with the reason it need not be: closed, and the reason
	// is the record.
	// One admin alone cannot: it stops the clock for good.
	c := cmd(KindCloseBreach, at)
	c.BreachClosure = closure("b-1", at, "disk replaced", why)
	refused(t, f.s, f.users["frank"].sign(t, c), "needs the quorum's approval")
	f.closeNotNotified(t, "frank", closure("b-1", at.In(mustZone(t, "Europe/Prague")), "disk replaced", why), at)
	b1 := f.s.Breaches["b-1"]
	if x := b1.Closure; x == nil || x.By != "frank" || x.Time != at || x.Closed != at || x.NotNotifiedReason != why || x.Outcome != "disk replaced" {
		t.Fatalf("closure %+v", b1.Closure)
	}
	if b1.Overdue(at.Add(100 * time.Hour)) {
		t.Fatal("a closed breach is overdue")
	}
	refused(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-1", Nature: "x"}, at), `breach "b-1" was closed at 2026-11-27T10:00:00Z by frank`)
	refused(t, f.s, f.closeBreach(t, "alice", closure("b-1", at, "again", why), at), `breach "b-1" was closed at`)

	// Notified: it closes without a reason, and refuses one.
	mustApply(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-2", Notified: at}, at))
	refused(t, f.s, f.closeBreach(t, "alice", closure("b-2", at, "done", why), at),
		`closing breach "b-2": it was notified at 2026-11-27T10:00:00Z, so it has no reason for not being notified`)
	mustApply(t, f.s, f.closeBreach(t, "alice", closure("b-2", at, "done", ""), at))

	mustApply(t, f.s, f.openBreach(t, "alice", goodBreach("b-0"), at))
	if ids := breachIDs(f.s.OpenBreaches()); !slices.Equal(ids, []string{"b-0"}) {
		t.Fatalf("OpenBreaches = %v, want b-0", ids)
	}
	if ids := breachIDs(f.s.BreachRegister()); !slices.Equal(ids, []string{"b-0", "b-1", "b-2"}) {
		t.Fatalf("BreachRegister = %v, want b-0, b-1, b-2", ids)
	}
	// The register is kept for good.
	f.advance(t, at.Add(400*24*time.Hour))
	if len(f.s.Breaches) != 3 {
		t.Fatalf("%d breaches after a year, want 3", len(f.s.Breaches))
	}
}

func TestFormatLeft(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0h 0m left"}, // the deadline itself is in time
		{59 * time.Second, "0h 0m left"},
		{time.Minute, "0h 1m left"},
		{-time.Nanosecond, "overdue 0h 0m"},
		{-59 * time.Second, "overdue 0h 0m"},
		{-time.Minute, "overdue 0h 1m"},
		{72 * time.Hour, "72h 0m left"},
		{69*time.Hour + 58*time.Minute + 59*time.Second, "69h 58m left"},
		{-(3*time.Hour + 10*time.Minute + 59*time.Second), "overdue 3h 10m"},
		{-(3*time.Hour + 10*time.Minute), "overdue 3h 10m"},
		{1000 * time.Hour, "1000h 0m left"},
		{math.MaxInt64, "2562047h 47m left"},
		{math.MinInt64, "overdue 2562047h 47m"},
	} {
		if got := FormatLeft(c.d); got != c.want {
			t.Errorf("FormatLeft(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestBreachClock(t *testing.T) {
	b := &Breach{Detected: tc}
	cases := []struct {
		now     time.Time
		left    string
		overdue bool
	}{
		{tc, "72h 0m left", false},
		{tc.Add(2*time.Minute + 30*time.Second), "71h 57m left", false},
		{tc.Add(72 * time.Hour), "0h 0m left", false},
		{tc.Add(72*time.Hour + time.Second), "overdue 0h 0m", true},
		{tc.Add(75*time.Hour + 10*time.Minute), "overdue 3h 10m", true},
	}
	for _, c := range cases {
		if got := FormatLeft(b.Left(c.now)); got != c.left {
			t.Errorf("at %v: %q, want %q", c.now, got, c.left)
		}
		if got := b.Overdue(c.now); got != c.overdue {
			t.Errorf("at %v: overdue %v, want %v", c.now, got, c.overdue)
		}
	}
	b.Notified = tc.Add(73 * time.Hour)
	if b.Overdue(tc.Add(100*time.Hour)) || !b.NotifiedLate() {
		t.Fatalf("notified an hour late: overdue %v, late %v; want false, true", b.Overdue(tc.Add(100*time.Hour)), b.NotifiedLate())
	}
}

// The 72 hours are elapsed time: across the end of daylight saving time the
// deadline's wall clock is an hour earlier than the detection's, and across
// its start an hour later. A wall-clock addition (three calendar days at
// the same hour) would give an hour too much or too little.
func TestBreachDeadlineAcrossDST(t *testing.T) {
	prague := mustZone(t, "Europe/Prague")
	for _, c := range []struct {
		name               string
		detected, deadline time.Time
	}{
		{"summer time ends on 25 October", time.Date(2026, 10, 24, 10, 0, 0, 0, prague), time.Date(2026, 10, 27, 9, 0, 0, 0, prague)},
		{"summer time starts on 28 March", time.Date(2027, 3, 27, 10, 0, 0, 0, prague), time.Date(2027, 3, 30, 11, 0, 0, 0, prague)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &Breach{Detected: c.detected}
			if got := b.Deadline(); !got.Equal(c.deadline) {
				t.Fatalf("deadline %v, want %v", got.In(prague), c.deadline)
			}
			if d := c.deadline.Sub(c.detected); d != 72*time.Hour {
				t.Fatalf("the test's own deadline is %v after detection", d)
			}
			if naive := c.detected.AddDate(0, 0, 3); naive.Equal(c.deadline) {
				t.Fatal("the wall-clock deadline equals the elapsed one: the case crosses no change")
			}
			// An hour before the deadline's local hour is an hour left.
			if got := FormatLeft(b.Left(c.deadline.Add(-time.Hour))); got != "1h 0m left" {
				t.Fatalf("an hour before the deadline: %q", got)
			}
		})
	}
	t.Run("spelled out", func(t *testing.T) {
		detected, err := time.Parse(time.RFC3339, "2026-10-24T10:00:00+02:00")
		if err != nil {
			t.Fatal(err)
		}
		b := &Breach{Detected: detected}
		if got := b.Deadline().In(prague).Format(time.RFC3339); got != "2026-10-27T09:00:00+01:00" {
			t.Fatalf("deadline %s, want 2026-10-27T09:00:00+01:00", got)
		}
		at := time.Date(2026, 10, 27, 8, 30, 0, 0, prague)
		if got := FormatLeft(b.Left(at)); got != "0h 30m left" {
			t.Fatalf("at 08:30 on the 27th: %q, want 0h 30m left", got)
		}
		at = time.Date(2026, 10, 27, 9, 30, 0, 0, prague) // within a wall-clock deadline of 10:00, overdue in fact
		if got := FormatLeft(b.Left(at)); got != "overdue 0h 30m" || !b.Overdue(at) {
			t.Fatalf("at 09:30 on the 27th: %q, overdue %v; want overdue 0h 30m", got, b.Overdue(at))
		}
	})
	// Through Apply: a notification at 09:30 on the 27th is late, and needs
	// its reason, though it is before 10:00 on the wall clock.
	t.Run("through Apply", func(t *testing.T) {
		f := newReqFed(t)
		b := goodBreach("b-dst")
		b.Detected = time.Date(2026, 10, 24, 10, 0, 0, 0, prague)
		mustApply(t, f.s, f.openBreach(t, "alice", b, tc))
		notified := time.Date(2026, 10, 27, 9, 30, 0, 0, prague)
		refused(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-dst", Notified: notified}, tc),
			"notified 2026-10-27T08:30:00Z, 72h 30m after detection, past art. 33(1)'s 72h 0m")
		mustApply(t, f.s, f.updateBreach(t, "alice", &BreachUpdate{Breach: "b-dst", Notified: time.Date(2026, 10, 27, 9, 0, 0, 0, prague)}, tc))
		if got := f.s.Breaches["b-dst"]; got.NotifiedLate() || got.Deadline() != time.Date(2026, 10, 27, 8, 0, 0, 0, time.UTC) {
			t.Fatalf("notified at the deadline: late %v, deadline %v", got.NotifiedLate(), got.Deadline())
		}
	})
}
