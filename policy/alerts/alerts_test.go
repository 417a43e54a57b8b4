package alerts

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// noon is 13:00 in Prague (CET): inside the default usual hours.
var noon = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func state() *policy.State {
	return &policy.State{Nodes: map[string]*policy.Node{
		"store-a": {Name: "store-a", PublicKey: "nodekey:aa", Role: policy.RoleStore},
		"admin-1": {Name: "admin-1", PublicKey: "nodekey:bb", Role: policy.RoleAdminNode},
		"inst-1": {Name: "inst-1", PublicKey: "nodekey:cc", Role: policy.RoleInstaller,
			Window: policy.Window{From: noon.Add(-2 * time.Hour), Until: noon.Add(2 * time.Hour)}},
	}}
}

// journal numbers events as one node's journal would.
type journal struct {
	node string
	seq  uint64
	out  []audit.Entry
}

func (j *journal) add(at time.Time, actor, action, object, decision, reason string) {
	j.seq++
	j.out = append(j.out, audit.Entry{Seq: j.seq, Event: audit.Event{Time: at, Node: j.node, Actor: actor, Action: action,
		Object: object, Decision: decision, Reason: reason}})
}

func ofRule(as []Alert, rule string) []Alert {
	var out []Alert
	for _, a := range as {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

func one(t *testing.T, as []Alert, rule, subject string, count int) Alert {
	t.Helper()
	got := ofRule(as, rule)
	if len(got) != 1 || got[0].Subject != subject || got[0].Count != count {
		t.Fatalf("%s alerts = %+v, want one about %s counting %d", rule, got, subject, count)
	}
	return got[0]
}

func none(t *testing.T, as []Alert, rule string) {
	t.Helper()
	if got := ofRule(as, rule); len(got) != 0 {
		t.Fatalf("%s alerts = %+v, want none", rule, got)
	}
}

func TestBulkExports(t *testing.T) {
	rules := policy.DefaultAlertRules()
	j := &journal{node: "store-a"}
	// 5 requests of 100 segments within 50 minutes: 500, not more than 500.
	for i := range 5 {
		j.add(noon.Add(time.Duration(i)*10*time.Minute), "admin-1", "serve-segments", "cam", audit.Allow, "100 segments, 1000 bytes of ciphertext")
	}
	// Refused and others' serves do not count.
	j.add(noon.Add(51*time.Minute), "admin-1", "serve-segments", "cam", audit.Deny, "200 segments, 1 bytes of ciphertext")
	j.add(noon.Add(52*time.Minute), "admin-2", "serve-segments", "cam", audit.Allow, "200 segments, 1 bytes of ciphertext")
	none(t, Evaluate(rules, state(), j.out, noon.Add(time.Hour)), policy.RuleBulkExport)
	// One more segment within the hour of the first.
	j.add(noon.Add(59*time.Minute), "admin-1", "serve-segments", "cam", audit.Allow, "1 segments, 10 bytes of ciphertext")
	a := one(t, Evaluate(rules, state(), j.out, noon.Add(time.Hour)), policy.RuleBulkExport, "admin-1", 501)
	if !a.Start.Equal(noon) || !a.End.Equal(noon.Add(59*time.Minute)) || !strings.Contains(a.Detail, "5010 bytes") {
		t.Fatalf("alert %+v", a)
	}
	// An hour later the first request is out of the window: 401 + the next.
	k := &journal{node: "store-a"}
	for i := range 6 {
		k.add(noon.Add(time.Duration(i)*15*time.Minute), "admin-1", "serve-segments", "cam", audit.Allow, "100 segments, 1 bytes of ciphertext")
	}
	none(t, Evaluate(rules, state(), k.out, noon.Add(2*time.Hour)), policy.RuleBulkExport)
	// Off is off.
	rules.BulkExports = 0
	none(t, Evaluate(rules, state(), j.out, noon.Add(time.Hour)), policy.RuleBulkExport)
}

func TestOffHoursAcrossDST(t *testing.T) {
	rules := policy.DefaultAlertRules()
	j := &journal{node: "store-a"}
	// Sunday 29 March 2026, Prague moves from CET to CEST at 02:00.
	// 05:30 UTC is 07:30 CEST: usual, though it was 06:30 the day before.
	sunday := time.Date(2026, 3, 29, 5, 30, 0, 0, time.UTC)
	j.add(sunday, "node:admin-1", "live-view", "praha/cam", audit.Allow, "start; grant g1")
	j.add(sunday.Add(-24*time.Hour), "node:admin-1", "live-view", "praha/cam", audit.Allow, "start; grant g1")
	// A live view's end, a refusal and a plain fact at night do not count.
	night := sunday.Add(-90 * time.Minute) // 06:00 CEST
	j.add(night, "node:admin-1", "live-view", "praha/cam", audit.Allow, "ended after 10s")
	j.add(night, "node:admin-1", "live-view", "praha/cam", audit.Deny, "no grant")
	j.add(night, "dc-a", "node-start", "x", "", "")
	none(t, Evaluate(rules, state(), j.out, sunday.Add(time.Minute)), policy.RuleOffHours)
	a := one(t, Evaluate(rules, state(), j.out, sunday.Add(-24*time.Hour+time.Minute)), policy.RuleOffHours, "admin-1", 1)
	if !a.Start.Equal(sunday.Add(-24*time.Hour)) || !strings.Contains(a.Detail, "06:30 CET") {
		t.Fatalf("alert %+v, want Saturday's 06:30 CET view", a)
	}
	// Several accesses within the hour make one alert; a key release and
	// a serve of segments are footage access too.
	k := &journal{node: "dc-a"}
	at := time.Date(2026, 12, 2, 22, 0, 0, 0, time.UTC) // 23:00 CET
	k.add(at, "admin-1", "key-release", "r-1", audit.Allow, "share")
	k.add(at.Add(10*time.Minute), "admin-1", "serve-segments", "cam", audit.Allow, "3 segments, 9 bytes of ciphertext")
	k.add(at.Add(70*time.Minute), "admin-1", "serve-segments", "cam", audit.Allow, "3 segments, 9 bytes of ciphertext")
	got := ofRule(Evaluate(rules, state(), k.out, at.Add(80*time.Minute)), policy.RuleOffHours)
	if len(got) != 2 || got[0].Count != 2 || got[1].Count != 1 {
		t.Fatalf("off-hours alerts %+v, want one of 2 then one of 1", got)
	}
	rules.UsualHours = policy.AlertOff
	none(t, Evaluate(rules, state(), k.out, at.Add(80*time.Minute)), policy.RuleOffHours)
}

func TestRefusedBursts(t *testing.T) {
	rules := policy.DefaultAlertRules()
	j := &journal{node: "store-a"}
	for i := range 10 {
		j.add(noon.Add(time.Duration(i)*time.Minute), "node:admin-1", "live-view", "cam", audit.Deny, "no grant")
	}
	// Alerts are no one's refusals.
	j.add(noon.Add(9*time.Minute), "dc-a", "alert", "x y", audit.Deny, "z")
	none(t, Evaluate(rules, state(), j.out, noon.Add(10*time.Minute)), policy.RuleRefusedBurst)
	// The eleventh, after the first left the window: still 10.
	j.add(noon.Add(10*time.Minute), "node:admin-1", "live-view", "cam", audit.Deny, "no grant")
	none(t, Evaluate(rules, state(), j.out, noon.Add(11*time.Minute)), policy.RuleRefusedBurst)
	j.add(noon.Add(10*time.Minute+time.Second), "nodekey:bb", "live-view", "cam", audit.Deny, "no grant")
	one(t, Evaluate(rules, state(), j.out, noon.Add(11*time.Minute)), policy.RuleRefusedBurst, "admin-1", 11)
	// A refused command is recorded by every node: it counts once.
	var all []audit.Entry
	for _, n := range []string{"dc-a", "dc-b", "store-a"} {
		k := &journal{node: n}
		for i := range 11 {
			k.add(noon.Add(time.Duration(i)*time.Second), "mallory", "policy-change", fmt.Sprintf("grant.add c%d", i%6), audit.Deny, "not an admin")
		}
		all = append(all, k.out...)
	}
	none(t, Evaluate(rules, state(), all, noon.Add(time.Minute)), policy.RuleRefusedBurst)
}

func TestInstallerOutsideWindow(t *testing.T) {
	rules := policy.DefaultAlertRules()
	j := &journal{node: "store-a"}
	j.add(noon, "node:inst-1", "live-view", "cam", audit.Allow, "start; installer")
	j.add(noon.Add(-2*time.Hour), "inst-1", "join", "x", audit.Allow, "")
	none(t, Evaluate(rules, state(), j.out, noon.Add(3*time.Hour)), policy.RuleInstallerTime)
	// By key, at the end of its window (Until is outside).
	j.add(noon.Add(2*time.Hour), "nodekey:cc", "live-view", "cam", audit.Deny, "window over")
	j.add(noon.Add(2*time.Hour+time.Minute), "node:inst-1", "live-view", "cam", audit.Deny, "window over")
	a := one(t, Evaluate(rules, state(), j.out, noon.Add(3*time.Hour)), policy.RuleInstallerTime, "inst-1", 2)
	if !strings.Contains(a.Detail, "installer inst-1 outside its window") {
		t.Fatalf("detail %q", a.Detail)
	}
	rules.InstallerWindows = policy.AlertOff
	none(t, Evaluate(rules, state(), j.out, noon.Add(3*time.Hour)), policy.RuleInstallerTime)
}

func TestFastApprovals(t *testing.T) {
	rules := policy.DefaultAlertRules()
	var all []audit.Entry
	for _, n := range []string{"dc-a", "store-a", "store-b"} {
		k := &journal{node: n}
		for i := range 5 {
			k.add(noon.Add(time.Duration(i)*time.Minute), "bob", "policy-change", fmt.Sprintf("request.approve c-%d", i), audit.Allow, "")
		}
		k.add(noon.Add(5*time.Minute), "bob", "policy-change", "proposal.approve c-9", audit.Allow, "")
		k.add(noon.Add(5*time.Minute), "bob", "policy-change", "request.approve c-8", audit.Deny, "expired")
		all = append(all, k.out...)
	}
	none(t, Evaluate(rules, state(), all, noon.Add(6*time.Minute)), policy.RuleFastApprovals)
	k := &journal{node: "store-c"}
	k.add(noon.Add(9*time.Minute), "bob", "policy-change", "request.approve c-5", audit.Allow, "")
	one(t, Evaluate(rules, state(), append(all, k.out...), noon.Add(10*time.Minute)), policy.RuleFastApprovals, "bob", 6)
}

// The same burst evaluated again, with its entries twice, shuffled, and
// after more of it arrived, keeps its key.
func TestDedupAndStableKey(t *testing.T) {
	rules := policy.DefaultAlertRules()
	j := &journal{node: "store-a"}
	for i := range 12 {
		j.add(noon.Add(time.Duration(i)*time.Second), "eve", "live-view", "cam", audit.Deny, "no grant")
	}
	first := one(t, Evaluate(rules, state(), j.out, noon.Add(time.Minute)), policy.RuleRefusedBurst, "eve", 12)
	twice := append(slices.Clone(j.out), j.out...)
	rand.Shuffle(len(twice), func(a, b int) { twice[a], twice[b] = twice[b], twice[a] })
	again := one(t, Evaluate(rules, state(), twice, noon.Add(time.Minute)), policy.RuleRefusedBurst, "eve", 12)
	if again.Key() != first.Key() {
		t.Fatalf("key %s, then %s", first.Key(), again.Key())
	}
	j.add(noon.Add(20*time.Second), "eve", "live-view", "cam", audit.Deny, "no grant")
	later := one(t, Evaluate(rules, state(), j.out, noon.Add(time.Minute)), policy.RuleRefusedBurst, "eve", 13)
	if later.Key() != first.Key() || !later.Overlaps(first) {
		t.Fatalf("a grown burst changed its key: %s, then %s", first.Key(), later.Key())
	}
	// The recorded alert reads back.
	back, ok := ParseRaised(later.Object(), later.Detail)
	if !ok || back.Key() != later.Key() || !back.End.Equal(later.End) {
		t.Fatalf("ParseRaised = %+v, %v; want %+v", back, ok, later)
	}
	if _, ok := ParseRaised("x", "no window"); ok {
		t.Fatal("ParseRaised read an entry that is no alert")
	}
}

// Properties: the order and duplication of entries never matter; alerts of
// one rule and subject never overlap; every alert's count exceeds its
// limit; nothing alerts on entries that are all within the rules.
func TestEvaluateProperties(t *testing.T) {
	rules := policy.DefaultAlertRules()
	rules.RefusedMax, rules.FastApprovals = 3, 2
	st := state()
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 80).Draw(rt, "n")
		var es []audit.Entry
		seqs := map[string]uint64{}
		for range n {
			node := rapid.SampledFrom([]string{"store-a", "dc-a", "dc-b"}).Draw(rt, "node")
			seqs[node]++
			at := noon.Add(time.Duration(rapid.IntRange(-7200, 3600).Draw(rt, "sec")) * time.Second)
			e := audit.Entry{Seq: seqs[node], Event: audit.Event{Time: at, Node: node,
				Actor: rapid.SampledFrom([]string{"alice", "bob", "node:inst-1", "admin-1"}).Draw(rt, "actor")}}
			switch rapid.IntRange(0, 3).Draw(rt, "kind") {
			case 0:
				e.Action, e.Decision, e.Reason = "serve-segments", audit.Allow, fmt.Sprintf("%d segments, 1 bytes of ciphertext", rapid.IntRange(1, 300).Draw(rt, "segs"))
			case 1:
				e.Action, e.Decision = "live-view", audit.Deny
			case 2:
				e.Action, e.Decision, e.Object = "policy-change", audit.Allow, fmt.Sprintf("request.approve c-%d", rapid.IntRange(0, 9).Draw(rt, "req"))
			case 3:
				e.Action, e.Decision, e.Reason = "live-view", audit.Allow, "start; g"
			}
			es = append(es, e)
		}
		now := noon.Add(time.Hour)
		got := Evaluate(rules, st, es, now)
		mixed := append(slices.Clone(es), es...)
		perm := rapid.Permutation(mixed).Draw(rt, "perm")
		if again := Evaluate(rules, st, perm, now); !slices.EqualFunc(got, again, func(a, b Alert) bool { return a == b }) {
			rt.Fatalf("order or duplicates changed the alerts:\n%+v\n%+v", got, again)
		}
		keys := map[string]bool{}
		for i, a := range got {
			if keys[a.Key()] {
				rt.Fatalf("key %s twice", a.Key())
			}
			keys[a.Key()] = true
			for _, b := range got[i+1:] {
				if a.Overlaps(b) {
					rt.Fatalf("overlapping alerts %+v and %+v", a, b)
				}
			}
			limit := map[string]int{policy.RuleBulkExport: rules.BulkExports, policy.RuleRefusedBurst: rules.RefusedMax,
				policy.RuleFastApprovals: rules.FastApprovals}[a.Rule]
			if a.Count <= limit {
				rt.Fatalf("alert %+v counts no more than its limit %d", a, limit)
			}
			if a.End.Sub(a.Start) >= rules.Lookback() {
				rt.Fatalf("alert %+v spans more than its window", a)
			}
		}
	})
}
