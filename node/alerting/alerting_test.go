package alerting

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// now is 20:30 in Prague (CET): the usual hours ended half an hour ago.
var now = time.Date(2026, 12, 2, 19, 30, 0, 0, time.UTC)

func testState() *policy.State {
	return &policy.State{FederationID: "f", Nodes: map[string]*policy.Node{
		"dc-a":     {Name: "dc-a", PublicKey: "nodekey:01", Role: policy.RoleDatacenter},
		"store-a":  {Name: "store-a", PublicKey: "nodekey:02", Role: policy.RoleStore},
		"store-b":  {Name: "store-b", PublicKey: "nodekey:03", Role: policy.RoleStore},
		"admin-1":  {Name: "admin-1", PublicKey: "nodekey:04", Role: policy.RoleAdminNode},
		"viewer-1": {Name: "viewer-1", PublicKey: "nodekey:05", Role: policy.RoleAdminNode},
		"inst-1": {Name: "inst-1", PublicKey: "nodekey:06", Role: policy.RoleInstaller,
			Window: policy.Window{From: now.Add(-5 * time.Hour), Until: now.Add(-time.Hour)}},
	}}
}

// store is a store's real journal, whose lines a datacenter holds a copy of.
type store struct {
	t    *testing.T
	name string
	j    *audit.Journal
	dir  string
}

func newStore(t *testing.T, name string) *store {
	dir := t.TempDir()
	j, err := audit.Open(dir, audit.Options{Node: name, Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &store{t: t, name: name, j: j, dir: dir}
}

func (s *store) add(at time.Time, actor, action, object, decision, reason string) {
	s.t.Helper()
	if _, err := s.j.Append(audit.Event{Time: at, Actor: actor, Action: action, Object: object, Decision: decision, Reason: reason}); err != nil {
		s.t.Fatal(err)
	}
}

// lines are the journal's lines as the file holds them.
func (s *store) lines() [][]byte {
	b, err := os.ReadFile(filepath.Join(s.dir, "audit", "journal.jsonl"))
	if err != nil {
		s.t.Fatal(err)
	}
	ls := bytes.SplitAfter(b, []byte("\n"))
	return ls[:len(ls)-1] // after the last newline: nothing
}

// replicate writes the datacenter's copy: lines from the first-th on.
func (s *store) replicate(dir string, first int) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(dir, s.name+".jsonl"), bytes.Join(s.lines()[first:], nil), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func at(localHHMM string) time.Time {
	var h, m int
	fmt.Sscanf(localHHMM, "%d:%d", &h, &m)
	return time.Date(2026, 12, 2, h-1, m, 0, 0, time.UTC) // CET is UTC+1
}

type fixture struct {
	t      *testing.T
	dcDir  string
	repl   string
	own    *audit.Journal
	clock  time.Time
	policy *policy.State
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dcDir: t.TempDir(), clock: now, policy: testState()}
	f.repl = filepath.Join(f.dcDir, "replicas", "audit")
	if err := os.MkdirAll(f.repl, 0o700); err != nil {
		t.Fatal(err)
	}
	f.open()
	t.Cleanup(func() { f.own.Close() })
	return f
}

func (f *fixture) open() {
	j, err := audit.Open(f.dcDir, audit.Options{Node: "dc-a"})
	if err != nil {
		f.t.Fatal(err)
	}
	f.own = j
}

func (f *fixture) runner() *Runner {
	return New(Deps{Name: "dc-a", Dir: f.repl, Journal: f.own, Policy: func() *policy.State { return f.policy },
		Now: func() time.Time { return f.clock }, Logf: f.t.Logf})
}

// recorded are the alert entries of the datacenter's own journal, by object.
func (f *fixture) recorded() map[string]int {
	f.t.Helper()
	es, err := f.own.Since(time.Time{})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range es {
		if e.Action == Action {
			if e.Actor != "dc-a" || e.Decision != audit.Deny || e.Node != "dc-a" {
				f.t.Fatalf("alert entry %+v", e)
			}
			out[e.Object]++
		}
	}
	return out
}

// Each rule raises exactly one alert entry from real replicated journals;
// nothing under a threshold; nothing twice, after more of the same burst,
// a restart, or a copy pruned and read again.
func TestEachRuleRaisesOnce(t *testing.T) {
	f := newFixture(t)
	a, b := newStore(t, "store-a"), newStore(t, "store-b")
	// Over: 501 segments to admin-1 within the hour.
	a.add(at("19:00"), "admin-1", "serve-segments", "praha/cam 19:00", audit.Allow, "300 segments, 3000 bytes of ciphertext")
	a.add(at("19:40"), "admin-1", "serve-segments", "praha/cam 19:40", audit.Allow, "201 segments, 2010 bytes of ciphertext")
	// Under: 500 to admin-2.
	b.add(at("19:00"), "admin-2", "serve-segments", "brno/cam", audit.Allow, "250 segments, 1 bytes of ciphertext")
	b.add(at("19:10"), "admin-2", "serve-segments", "brno/cam", audit.Allow, "250 segments, 1 bytes of ciphertext")
	// Over: 11 refusals of eve within 10 minutes, across both stores; under: 10 of frank.
	for i := range 11 {
		s := []*store{a, b}[i%2]
		s.add(at("19:20").Add(time.Duration(i)*time.Second), "node:eve", "live-view", "praha/cam", audit.Deny, "no grant")
	}
	for i := range 10 {
		b.add(at("19:20").Add(time.Duration(i)*time.Second), "frank", "serve-segments", "brno/cam", audit.Deny, "no request")
	}
	// Over: installer inst-1 after its window (by key); under: inside it.
	a.add(at("17:00"), "nodekey:06", "live-view", "praha/cam", audit.Allow, "start; installer")
	a.add(at("19:50"), "node:inst-1", "live-view", "praha/cam", audit.Deny, "window over")
	// Over: bob approves 6 requests within 10 minutes, each recorded by
	// both stores and the datacenter; under: carol approves 5.
	for i := range 6 {
		for _, s := range []*store{a, b} {
			s.add(at("19:30").Add(time.Duration(i)*time.Minute), "bob", "policy-change", fmt.Sprintf("request.approve c-b%d", i), audit.Allow, "")
		}
		f.own.Append(audit.Event{Time: at("19:30").Add(time.Duration(i) * time.Minute), Actor: "bob", Action: "policy-change",
			Object: fmt.Sprintf("request.approve c-b%d", i), Decision: audit.Allow})
	}
	for i := range 5 {
		a.add(at("19:30").Add(time.Duration(i)*time.Minute), "carol", "policy-change", fmt.Sprintf("request.approve c-c%d", i), audit.Allow, "")
	}
	// Over: a live view started at 20:10, after the usual hours; under:
	// one that started at 19:59 and ended at 20:05.
	a.add(at("19:59"), "node:admin-1", "live-view", "praha/cam", audit.Allow, "start; grant g1")
	a.add(at("20:05"), "node:admin-1", "live-view", "praha/cam", audit.Allow, "ended after 6m")
	a.add(at("20:10"), "node:viewer-1", "live-view", "praha/cam", audit.Allow, "start; grant g2")
	a.replicate(f.repl, 0)
	b.replicate(f.repl, 0)

	r := f.runner()
	raised := r.Check()
	want := map[string]int{
		policy.RuleBulkExport + " admin-1":   1,
		policy.RuleRefusedBurst + " eve":     1,
		policy.RuleInstallerTime + " inst-1": 1,
		policy.RuleFastApprovals + " bob":    1,
		policy.RuleOffHours + " viewer-1":    1,
	}
	check := func(when string) {
		t.Helper()
		got := f.recorded()
		if len(got) != len(want) {
			t.Fatalf("%s: alert entries %v, want %v", when, got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Fatalf("%s: alert entries %v, want %v", when, got, want)
			}
		}
	}
	check("first pass")
	if len(raised) != len(want) {
		t.Fatalf("Check returned %d alerts, want %d: %+v", len(raised), len(want), raised)
	}
	for _, al := range raised {
		if al.Rule == policy.RuleBulkExport && al.Count != 501 {
			t.Fatalf("bulk export %+v, want 501 segments", al)
		}
	}

	// Again, a minute later: nothing new.
	f.clock = f.clock.Add(time.Minute)
	if got := r.Check(); len(got) != 0 {
		t.Fatalf("second pass raised %+v", got)
	}
	// More of the same bursts arrive: still nothing new.
	a.add(at("19:20").Add(20*time.Second), "node:eve", "live-view", "praha/cam", audit.Deny, "no grant")
	a.add(at("19:45"), "admin-1", "serve-segments", "praha/cam", audit.Allow, "10 segments, 100 bytes of ciphertext")
	a.add(at("20:12"), "node:viewer-1", "serve-segments", "praha/cam", audit.Allow, "1 segments, 10 bytes of ciphertext")
	a.replicate(f.repl, 0)
	if got := r.Check(); len(got) != 0 {
		t.Fatalf("more of the same bursts raised %+v", got)
	}
	check("after more entries")

	// A restart: a new runner on the reopened journal raises nothing.
	if err := f.own.Close(); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.clock = f.clock.Add(time.Minute)
	r = f.runner()
	if got := r.Check(); len(got) != 0 {
		t.Fatalf("after a restart raised %+v", got)
	}
	check("after a restart")

	// The copy of store-a is pruned (shorter): read again, nothing new.
	a.replicate(f.repl, 2)
	if got := r.Check(); len(got) != 0 {
		t.Fatalf("after a prune raised %+v", got)
	}
	check("after a prune")

	// A new burst later is a new alert.
	f.clock = now.Add(90 * time.Minute)
	for i := range 11 {
		b.add(f.clock.Add(-5*time.Minute+time.Duration(i)*time.Second), "node:eve", "live-view", "brno/cam", audit.Deny, "no grant")
	}
	b.replicate(f.repl, 0)
	got := r.Check()
	if len(got) != 1 || got[0].Rule != policy.RuleRefusedBurst || got[0].Subject != "eve" {
		t.Fatalf("a new burst raised %+v, want one refused-burst of eve", got)
	}
	want[policy.RuleRefusedBurst+" eve"] = 2
	check("after a new burst")

	// Status reads them back, from the journal and from the runner,
	// which read the five of before its restart from the journal.
	sums, err := Raised(f.own, "dc-a", now.Add(-24*time.Hour))
	if err != nil || len(sums) != 6 {
		t.Fatalf("Raised = %d summaries (%v), want 6", len(sums), err)
	}
	if s := sums[0]; s.Node != "dc-a" || s.Rule == "" || s.Subject == "" || s.Detail == "" {
		t.Fatalf("summary %+v", s)
	}
	if rec := r.Recent(now.Add(-24 * time.Hour)); len(rec) != 6 || rec[5] != sums[5] || rec[0] != sums[0] {
		t.Fatalf("Recent = %+v, want %+v", rec, sums)
	}
	if rec := r.Recent(f.clock.Add(-time.Minute)); len(rec) != 1 || rec[0].Subject != "eve" || !rec[0].Time.Equal(f.clock) {
		t.Fatalf("Recent of the last minute = %+v, want the new burst's, at the runner's clock", rec)
	}
	// A day later they are no longer shown.
	f.clock = f.clock.Add(25 * time.Hour)
	r.Check()
	if rec := r.Recent(time.Time{}); len(rec) != 0 {
		t.Fatalf("a day later Recent = %+v", rec)
	}
}

// A line that does not decode (or is cut) is skipped, and an unterminated
// last line waits for its end; the runner keeps going.
func TestBadAndPartialLines(t *testing.T) {
	f := newFixture(t)
	a := newStore(t, "store-a")
	for i := range 11 {
		a.add(at("19:20").Add(time.Duration(i)*time.Second), "node:eve", "live-view", "praha/cam", audit.Deny, "no grant")
	}
	lines := a.lines()
	var b []byte
	b = append(b, "{not json}\n"...)
	b = append(b, bytes.Repeat([]byte("x"), audit.MaxLineBytes+10)...)
	b = append(b, '\n')
	for _, l := range lines[:10] {
		b = append(b, l...)
	}
	last := lines[10]
	b = append(b, last[:len(last)-5]...)
	path := filepath.Join(f.repl, "store-a.jsonl")
	os.WriteFile(path, b, 0o600)
	r := f.runner()
	if got := r.Check(); len(got) != 0 {
		t.Fatalf("10 whole refusals raised %+v", got)
	}
	os.WriteFile(path, append(b, last[len(last)-5:]...), 0o600)
	if got := r.Check(); len(got) != 1 {
		t.Fatalf("the completed 11th raised %+v, want one alert", got)
	}
}

// No policy yet: nothing is read or raised.
func TestNoPolicyNoAlerts(t *testing.T) {
	f := newFixture(t)
	f.policy = &policy.State{}
	if got := f.runner().Check(); got != nil {
		t.Fatalf("raised %+v without a policy", got)
	}
}

// Start and Close run and stop the loop.
func TestStartClose(t *testing.T) {
	f := newFixture(t)
	r := Start(Deps{Name: "dc-a", Dir: f.repl, Journal: f.own, Policy: func() *policy.State { return f.policy }, Every: time.Hour})
	r.Close()
	r.Close()
	New(Deps{}).Close() // never started: returns
}

// before reads a line's time without decoding it, and says no when unsure.
func TestBefore(t *testing.T) {
	line := []byte(`{"seq":7,"time":"2026-12-02T18:00:00.5Z","node":"s","actor":"a","action":"x","object":"","decision":"","reason":"","prev":"00","hash":"00"}`)
	if !before(line, now) || before(line, now.Add(-2*time.Hour)) {
		t.Fatal("before misreads the time")
	}
	for _, l := range []string{`{}`, `{"seq":7,"time":"yesterday"}`, `{"seq":7,"time":"2026-12-02T18:00:00Z`} {
		if before([]byte(l), now) {
			t.Errorf("before(%s) = true", l)
		}
	}
}

// A flood of alerts is recorded at most MaxPerPass a pass, none lost.
func TestAlertsPerPassAreBounded(t *testing.T) {
	f := newFixture(t)
	a := newStore(t, "store-a")
	actors := MaxPerPass + 5
	for i := range actors {
		for k := range 11 {
			a.add(at("19:00").Add(time.Duration(k)*time.Second), fmt.Sprintf("x%d", i), "live-view", "praha/cam", audit.Deny, "no grant")
		}
	}
	a.replicate(f.repl, 0)
	r := f.runner()
	if got := r.Check(); len(got) != MaxPerPass {
		t.Fatalf("first pass raised %d, want %d", len(got), MaxPerPass)
	}
	if got := r.Check(); len(got) != 5 {
		t.Fatalf("second pass raised %d, want 5", len(got))
	}
	if got := f.recorded(); len(got) != actors {
		t.Fatalf("%d subjects alerted, want %d", len(got), actors)
	}
}
