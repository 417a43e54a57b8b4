// Package alerts owns the evaluation of the policy's alert rules
// (policy.AlertRules) over audit journal entries: which actors exported in
// bulk, opened footage outside the usual hours, were refused in bursts,
// acted as an installer outside its window, or approved requests faster
// than anyone reads them. It is pure: entries in, alerts out, no clock
// and no files (node/alerting reads the journals and records the alerts).
//
// It imports policy and policy/audit only.
package alerts

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// MaxSkew is how far ahead of now an entry's time may be and still count;
// a later one waits until now reaches it.
const MaxSkew = 5 * time.Minute

// Alert is one rule's finding about one subject (an actor) over a window.
type Alert struct {
	Rule    string    `json:"rule"`    // policy.Rule…
	Subject string    `json:"subject"` // the actor: a user's or a node's name
	Start   time.Time `json:"start"`   // the first entry that counts
	End     time.Time `json:"end"`     // the last one
	Count   int       `json:"count"`   // segments, accesses, denials, entries or approvals
	Detail  string    `json:"detail"`  // one line for a human; ends with the window (ParseRaised)
}

// Key names the alert across evaluations: rule, subject and the minute its
// window starts. More entries of the same burst keep the key.
func (a Alert) Key() string {
	return a.Rule + " " + a.Subject + " " + a.Start.UTC().Truncate(time.Minute).Format(time.RFC3339)
}

// Object is the audit object of the alert: rule and subject.
func (a Alert) Object() string { return a.Rule + " " + a.Subject }

// Overlaps reports whether a and b are the same rule about the same subject
// over windows that share a moment: what was raised once must not be
// raised again when later entries move a window.
func (a Alert) Overlaps(b Alert) bool {
	return a.Rule == b.Rule && a.Subject == b.Subject && !a.Start.After(b.End) && !b.Start.After(a.End)
}

const windowMark = "; window "

// ParseRaised reads back an alert from the object and reason of the audit
// entry that recorded it (Object, Detail); ok is false for anything else.
func ParseRaised(object, reason string) (a Alert, ok bool) {
	rule, subject, found := strings.Cut(object, " ")
	i := strings.LastIndex(reason, windowMark)
	if !found || i < 0 {
		return Alert{}, false
	}
	from, to, found := strings.Cut(reason[i+len(windowMark):], "/")
	start, err1 := time.Parse(time.RFC3339, from)
	end, err2 := time.Parse(time.RFC3339, to)
	if !found || err1 != nil || err2 != nil {
		return Alert{}, false
	}
	return Alert{Rule: rule, Subject: subject, Start: start, End: end, Detail: reason}, true
}

// Horizon is how far back from now Evaluate looks: twice the longest
// window of the rules, so a burst that began a window ago is whole.
func Horizon(rules policy.AlertRules) time.Duration { return 2 * rules.Lookback() }

// Evaluate applies rules to entries (from any number of journals, in any
// order, the same entry possibly more than once) as of now, and returns
// the alerts, by start. st names nodes (their roles, windows and keys).
func Evaluate(rules policy.AlertRules, st *policy.State, entries []audit.Entry, now time.Time) []Alert {
	es := prepare(entries, now.Add(-Horizon(rules)), now.Add(MaxSkew))
	var out []Alert
	out = append(out, bulkExports(rules, st, es)...)
	out = append(out, offHours(rules, st, es)...)
	out = append(out, refusedBursts(rules, st, es)...)
	out = append(out, installers(rules, st, es)...)
	out = append(out, fastApprovals(rules, es)...)
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Subject, b.Subject))
	})
	return out
}

// prepare drops duplicates (same node and sequence number) and entries
// outside [from, to], and sorts the rest by time, node and sequence.
func prepare(entries []audit.Entry, from, to time.Time) []*audit.Entry {
	type id struct {
		node string
		seq  uint64
	}
	seen := make(map[id]bool, len(entries))
	out := make([]*audit.Entry, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		k := id{e.Node, e.Seq}
		if seen[k] || e.Time.Before(from) || e.Time.After(to) {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *audit.Entry) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}

// actor is the name behind an entry's actor: "node:NAME" and a node's
// "nodekey:…" are the node's name; anything else is as written.
func actor(st *policy.State, a string) string {
	if n, ok := strings.CutPrefix(a, "node:"); ok && n != "" {
		return n
	}
	if strings.HasPrefix(a, "nodekey:") && st != nil {
		if n := st.NameOfKey(a); n != "" {
			return n
		}
	}
	return a
}

// point is one entry that counts for a subject, weighing w.
type point struct {
	e *audit.Entry
	w int
}

// span is a window slide found: its points and their weight.
type span struct {
	pts    []point
	weight int
}

// slide finds, in pts (sorted by time), each window of length window whose
// weight exceeds limit: it starts at the earliest point of the first
// window over the limit and takes every point up to window after it. The
// next one starts after it, so spans never overlap and a burst that grows
// keeps its start.
func slide(pts []point, window time.Duration, limit int) []span {
	var out []span
	left, sum := 0, 0
	for j := 0; j < len(pts); j++ {
		sum += pts[j].w
		for pts[j].e.Time.Sub(pts[left].e.Time) >= window {
			sum -= pts[left].w
			left++
		}
		if sum <= limit {
			continue
		}
		end := j
		for end+1 < len(pts) && pts[end+1].e.Time.Sub(pts[left].e.Time) < window {
			end++
			sum += pts[end].w
		}
		out = append(out, span{pts: pts[left : end+1], weight: sum})
		left, sum, j = end+1, 0, end
	}
	return out
}

// bySubject groups the entries keep accepts by the subject it names, in
// time order; weight 0 drops an entry.
func bySubject(es []*audit.Entry, keep func(*audit.Entry) (subject string, weight int)) (map[string][]point, []string) {
	m := map[string][]point{}
	for _, e := range es {
		if s, w := keep(e); w > 0 && s != "" {
			m[s] = append(m[s], point{e, w})
		}
	}
	subjects := make([]string, 0, len(m))
	for s := range m {
		subjects = append(subjects, s)
	}
	slices.Sort(subjects)
	return m, subjects
}

func alertsOf(rule string, m map[string][]point, subjects []string, window time.Duration, limit int, detail func(subject string, s span) string) []Alert {
	var out []Alert
	for _, subj := range subjects {
		for _, s := range slide(m[subj], window, limit) {
			a := Alert{Rule: rule, Subject: subj, Start: s.pts[0].e.Time, End: s.pts[len(s.pts)-1].e.Time, Count: s.weight}
			a.Detail = clip(detail(subj, s), 600) + windowMark + stamp(a.Start) + "/" + stamp(a.End)
			out = append(out, a)
		}
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// clip cuts s to at most n bytes at a character boundary, so that the
// window always fits an audit field.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// bulkExports: more than rules.BulkExports segments served to one actor
// within an hour.
func bulkExports(rules policy.AlertRules, st *policy.State, es []*audit.Entry) []Alert {
	if rules.BulkExports <= 0 {
		return nil
	}
	bytes := map[*audit.Entry]int64{}
	m, subjects := bySubject(es, func(e *audit.Entry) (string, int) {
		if e.Action != "serve-segments" || e.Decision != audit.Allow {
			return "", 0
		}
		var n int
		var b int64
		if _, err := fmt.Sscanf(e.Reason, "%d segments, %d bytes", &n, &b); err != nil || n <= 0 {
			return "", 0
		}
		bytes[e] = b
		return actor(st, e.Actor), n
	})
	return alertsOf(policy.RuleBulkExport, m, subjects, policy.BulkExportWindow, rules.BulkExports, func(subj string, s span) string {
		var total int64
		for _, p := range s.pts {
			total += bytes[p.e]
		}
		return fmt.Sprintf("%d segments (%d bytes of ciphertext) served to %s in %d requests within an hour, more than %d",
			s.weight, total, subj, len(s.pts), rules.BulkExports)
	})
}

// footageAccess is an entry that opened footage: a live view's start, a
// serve of segments, a key release.
func footageAccess(e *audit.Entry) bool {
	if e.Decision != audit.Allow {
		return false
	}
	switch e.Action {
	case "live-view":
		return strings.HasPrefix(e.Reason, "start;")
	case "serve-segments", "key-release":
		return true
	}
	return false
}

// offHours: footage access outside the usual hours, grouped per actor and
// hour.
func offHours(rules policy.AlertRules, st *policy.State, es []*audit.Entry) []Alert {
	if rules.UsualHours == policy.AlertOff {
		return nil
	}
	loc, err := rules.Location()
	if err != nil {
		return nil
	}
	usual := rules.UsualFunc()
	m, subjects := bySubject(es, func(e *audit.Entry) (string, int) {
		if !footageAccess(e) || usual(e.Time) {
			return "", 0
		}
		return actor(st, e.Actor), 1
	})
	return alertsOf(policy.RuleOffHours, m, subjects, policy.PerEntryAlertGroup, 0, func(subj string, s span) string {
		first := s.pts[0].e
		return fmt.Sprintf("%d footage accesses outside the usual hours %s %s, the first %s %s at %s local",
			s.weight, rules.UsualHours, rules.TimeZone, first.Action, first.Object, first.Time.In(loc).Format("2006-01-02 15:04 MST"))
	})
}

// refusedBursts: more than rules.RefusedMax denials of one actor within
// rules.RefusedWindow. A refused policy command is recorded by every node
// that applies the log: it counts once. Alerts themselves are denials of
// no one.
func refusedBursts(rules policy.AlertRules, st *policy.State, es []*audit.Entry) []Alert {
	if rules.RefusedMax <= 0 {
		return nil
	}
	commands := map[string]bool{}
	m, subjects := bySubject(es, func(e *audit.Entry) (string, int) {
		if e.Decision != audit.Deny || e.Action == "alert" {
			return "", 0
		}
		if e.Action == "policy-change" {
			if commands[e.Object] {
				return "", 0
			}
			commands[e.Object] = true
		}
		return actor(st, e.Actor), 1
	})
	return alertsOf(policy.RuleRefusedBurst, m, subjects, rules.RefusedWindow, rules.RefusedMax, func(subj string, s span) string {
		last := s.pts[len(s.pts)-1].e
		return fmt.Sprintf("%d refusals of %s within %v, more than %d; the last: %s %s: %s",
			s.weight, subj, rules.RefusedWindow, rules.RefusedMax, last.Action, last.Object, clip(last.Reason, 200))
	})
}

// installers: any entry of an installer node outside its window.
func installers(rules policy.AlertRules, st *policy.State, es []*audit.Entry) []Alert {
	if rules.InstallerWindows != policy.AlertOn || st == nil {
		return nil
	}
	m, subjects := bySubject(es, func(e *audit.Entry) (string, int) {
		name := actor(st, e.Actor)
		n := st.Nodes[name]
		if n == nil || n.Role != policy.RoleInstaller || n.Window.Contains(e.Time) {
			return "", 0
		}
		return name, 1
	})
	return alertsOf(policy.RuleInstallerTime, m, subjects, policy.PerEntryAlertGroup, 0, func(subj string, s span) string {
		w := st.Nodes[subj].Window
		first := s.pts[0].e
		return fmt.Sprintf("%d entries of installer %s outside its window %s to %s, the first %s %s (%s)",
			s.weight, subj, bound(w.From), bound(w.Until), first.Action, first.Object, first.Decision)
	})
}

func bound(t time.Time) string {
	if t.IsZero() {
		return "open"
	}
	return stamp(t)
}

// fastApprovals: one user approving more than rules.FastApprovals distinct
// requests within rules.FastApprovalsWindow. Every node records the same
// approval: each command counts once, at its earliest entry.
func fastApprovals(rules policy.AlertRules, es []*audit.Entry) []Alert {
	if rules.FastApprovals <= 0 {
		return nil
	}
	seen := map[string]bool{}
	m, subjects := bySubject(es, func(e *audit.Entry) (string, int) {
		if e.Action != "policy-change" || e.Decision != audit.Allow || !strings.HasPrefix(e.Object, policy.KindApproveRequest+" ") || seen[e.Object] {
			return "", 0
		}
		seen[e.Object] = true
		return e.Actor, 1
	})
	return alertsOf(policy.RuleFastApprovals, m, subjects, rules.FastApprovalsWindow, rules.FastApprovals, func(subj string, s span) string {
		return fmt.Sprintf("%s approved %d requests within %v, more than %d", subj, s.weight, rules.FastApprovalsWindow, rules.FastApprovals)
	})
}
