package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// The audit table fits 120 columns: node keys the policy knows become
// names, others a short key, and long text is cut; --wide keeps all of it.
func TestAuditTableFits120Columns(t *testing.T) {
	known := "nodekey:" + strings.Repeat("ab", 32)
	unknown := "nodekey:" + strings.Repeat("cd", 32)
	reason := "refused: " + strings.Repeat("a very long reason that a remote node wrote, ", 12) + "END"
	st := &policy.State{Nodes: map[string]*policy.Node{"store-1": {Name: "store-1", PublicKey: known}}}
	now := time.Now()
	entries := []audit.Entry{
		{Seq: 1, Event: audit.Event{Time: now, Actor: known, Action: "join", Object: "store-1", Decision: "allow", Reason: "redeemed invite"}},
		{Seq: 2, Event: audit.Event{Time: now, Actor: unknown, Action: "live-view", Object: "praha-1/door " + strings.Repeat("x", 80), Decision: "deny", Reason: reason}},
		{Seq: 3, Event: audit.Event{Time: now, Actor: "alice", Action: "policy-change", Object: "grant.add c-1", Decision: "deny", Reason: "needs \x1b[2J role admin"}},
	}
	var def, wide strings.Builder
	writeAudit(&def, entries, st, false)
	writeAudit(&wide, entries, st, true)
	for l := range strings.Lines(def.String()) {
		if n := utf8.RuneCountInString(strings.TrimSuffix(l, "\n")); n > 120 {
			t.Errorf("a line of %d columns:\n%s", n, l)
		}
	}
	out := def.String()
	if !strings.Contains(lineOf(out, "1 "), "store-1") || strings.Contains(out, known) ||
		!strings.Contains(out, unknown[:16]+"…") || strings.Contains(out, unknown) || strings.Contains(out, "END") ||
		!strings.Contains(lineOf(out, "2 "), "…") || strings.Contains(out, "\x1b") {
		t.Errorf("default audit table:\n%s", out)
	}
	checkZoned(t, "audit", out)
	w := wide.String()
	if !strings.Contains(w, reason) || !strings.Contains(w, known) || !strings.Contains(w, unknown) || strings.Contains(w, "\x1b") {
		t.Errorf("audit --wide lost text:\n%s", w)
	}
}

// checkAuditWidth: with a long reason in the journal (a refused grant with
// a long ID), no line of the audit table is over 120 columns; --wide keeps
// the whole reason.
func checkAuditWidth(t *testing.T, dir, alice string) {
	t.Helper()
	setPass(t, "a long enough passphrase")
	long := "g-" + strings.Repeat("long-grant-id-", 4) + "end"
	nobody := "nobody-" + strings.Repeat("x", 50)
	code, _, errOut := runCLI("grant", "--to", "user:"+nobody, "--action", "live", "--cameras", "*", "--forever", "--id", long, "--dir", dir, "--as", alice)
	if code != 4 || !strings.Contains(errOut, "refused by the policy: grant "+strconv.Quote(long)+": no active user") {
		t.Fatalf("a grant to nobody: exit %d %s", code, errOut)
	}
	code, out, _ := runCLI("audit", "--dir", dir)
	if code != 0 || !strings.Contains(out, "…") {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
	for l := range strings.Lines(out) {
		if n := utf8.RuneCountInString(strings.TrimSuffix(l, "\n")); n > 120 {
			t.Errorf("audit prints a line of %d columns:\n%s", n, l)
		}
	}
	checkZoned(t, "audit", out)
	code, wide, _ := runCLI("audit", "--dir", dir, "--wide")
	if code != 0 || !strings.Contains(wide, strconv.Quote(long)+": no active user "+strconv.Quote(nobody)) {
		t.Errorf("audit --wide lost the long reason:\n%s", wide)
	}
}

// checkAuditQuery: audit query asks for what it needs before it signs
// anything, and a datacenter's directory is no admin node to carry it.
func checkAuditQuery(t *testing.T, dir, alice string) {
	t.Helper()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", dir}, "--dir and --as are required"},
		{[]string{"--dir", dir, "--as", alice, "--limit", "0"}, "--limit 0"},
		{[]string{"--dir", dir, "--as", alice, "--since", "yesterday"}, "since"},
	} {
		if code, _, errOut := runCLI(append([]string{"audit", "query"}, c.args...)...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("audit query %q: exit %d %s, want 2 naming %q", c.args, code, errOut, c.want)
		}
	}
	code, _, errOut := runCLI("audit", "query", "--dir", dir, "--as", alice, "--action", "live-view")
	if code == 0 || !strings.Contains(errOut, "carried by admin nodes") {
		t.Errorf("audit query through a datacenter: exit %d %s, want a refusal naming admin nodes", code, errOut)
	}
}

// An audit query's answer prints as the journal does, led by the node
// that recorded each entry, and says what it left out and who did not
// answer.
func TestAuditQueryTable(t *testing.T) {
	now := time.Now()
	long := "start; " + strings.Repeat("a long grant purpose ", 10)
	ans := node.AuditAnswer{Rows: []auditquery.Row{
		{Site: "praha-1", Entry: audit.Entry{Seq: 7, Event: audit.Event{Time: now, Node: "store-praha-1", Actor: "admin-alice", Action: "live-view", Object: "praha-1/entrance", Decision: "allow", Reason: long}}},
		{Entry: audit.Entry{Seq: 3, Event: audit.Event{Time: now, Node: "dc-a", Actor: "user:dora", Action: "audit-query", Object: "action=live-view", Decision: "allow"}}},
	}, More: 12, Datacenter: []string{"dc-a"}, Failed: map[string]string{"dc-b": "no route"}}
	var b strings.Builder
	writeAuditRows(&b, ans, nil, false)
	out := b.String()
	for l := range strings.Lines(out) {
		if n := utf8.RuneCountInString(strings.TrimSuffix(l, "\n")); n > 120 {
			t.Errorf("a line of %d columns:\n%s", n, l)
		}
	}
	if !strings.HasPrefix(out, "NODE") || !strings.HasPrefix(lineOf(out, "store-praha-1"), "store-praha-1") || !strings.Contains(lineOf(out, "dc-a "), "user:dora") ||
		!strings.Contains(out, "12 older entries") || !strings.Contains(out, "datacenter dc-b did not answer: no route") {
		t.Errorf("audit query table:\n%s", out)
	}
}
