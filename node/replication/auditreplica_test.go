package replication

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// A datacenter's copy of a store's audit journal takes only lines that
// verify and chain on: junk, a wrong count, a gap or a rewritten entry is
// refused with nothing appended; a line cut short by a crash is dropped when
// the copy is opened again, and the chain continues from the last whole one.
func TestAuditReplicaRefusesBrokenChains(t *testing.T) {
	src := t.TempDir()
	j, err := audit.Open(src, audit.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range 6 {
		if _, err := j.Append(audit.Event{Actor: "store", Action: "test", Object: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := j.After(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	line := func(e audit.Entry) []byte {
		b, err := e.Line()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lines := func(es ...audit.Entry) []byte {
		var b []byte
		for _, e := range es {
			b = append(b, line(e)...)
		}
		return b
	}
	dir := t.TempDir()
	a, err := openAuditReplica(dir, "store")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.append(lines(es[0], es[1]), 2); err != nil {
		t.Fatal(err)
	}
	tampered := es[2]
	tampered.Object = "edited"
	for _, bad := range []struct {
		name  string
		b     []byte
		count int
		want  string
	}{
		{"junk", []byte("not json\n"), 1, "audit"},
		{"wrong count", lines(es[2]), 2, "header says 2"},
		{"a gap", lines(es[3]), 1, "does not chain"},
		{"an edited entry", lines(tampered), 1, "hash"},
		{"a replayed entry", lines(es[1]), 1, "does not chain"},
	} {
		if err := a.append(bad.b, bad.count); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error saying %q", bad.name, err, bad.want)
		}
	}
	if a.seq() != 2 {
		t.Fatalf("after refusals the copy holds up to %d, want 2", a.seq())
	}
	// A crash mid-append leaves half a line; reopening cuts it off.
	path := filepath.Join(dir, "store.jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(line(es[2])[:20])
	f.Close()
	a, err = openAuditReplica(dir, "store")
	if err != nil || a.seq() != 2 {
		t.Fatalf("reopened after a torn line: seq %d, %v", a.seq(), err)
	}
	if err := a.append(lines(es[2:]...), 4); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := lines(es...); !bytes.Equal(got, want) {
		t.Errorf("the copy is not the journal's lines byte for byte:\n%s\nwant\n%s", got, want)
	}
}

// A datacenter's copies of the stores' journals keep entries exactly as
// long as the policy says the journals themselves do: older entries at the
// start go (a revoked store's copy too), the copy keeps chaining on, what
// went is recorded, and nothing is pruned before the node holds a policy.
func TestAuditReplicaPrunedByPolicyRetention(t *testing.T) {
	now := time.Now().UTC()
	journal := func(node string, ages ...time.Duration) []byte {
		j, err := audit.Open(t.TempDir(), audit.Options{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for i, age := range ages {
			if _, err := j.Append(audit.Event{Time: now.Add(-age), Actor: node, Action: "test", Object: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		es, err := j.After(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, e := range es {
			l, _ := e.Line()
			b = append(b, l...)
		}
		return b
	}
	day := 24 * time.Hour
	pst := &policy.State{Federation: "f", FederationID: "fid"}
	tr := newTestReplica(t, pst)
	dir := filepath.Dir(tr.ar.path)
	tr.r.d.AuditDir = dir
	tr.r.d.AuditKeep = func(st *policy.State) time.Duration { return st.AuditKeep() }
	storeLines := journal("store", 40*day, 35*day, 31*day, 10*day, time.Minute)
	if err := tr.ar.append(storeLines, 5); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gone.jsonl"), journal("gone", 50*day, 45*day), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []audit.Entry {
		b, err := os.ReadFile(filepath.Join(dir, name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Entry
		for l := range bytes.Lines(b) {
			e, err := audit.DecodeEntry(l)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}

	// No policy yet: nothing happens.
	pst.FederationID = ""
	if tr.r.pruneAudit(now) {
		t.Fatal("pruned without a policy")
	}
	if n := len(read("store")); n != 5 {
		t.Fatalf("%d entries left without a policy, want 5", n)
	}
	pst.FederationID = "fid"

	// A longer retention keeps everything.
	pst.AuditRetention = 60 * day
	if !tr.r.pruneAudit(now) || len(read("store")) != 5 || len(read("gone")) != 2 {
		t.Fatal("a 60-day retention pruned entries of at most 50 days")
	}

	pst.AuditRetention = 0 // the default 30 days
	if !tr.r.pruneAudit(now) {
		t.Fatal("did not prune with a policy")
	}
	kept := read("store")
	if len(kept) != 2 || kept[0].Seq != 4 {
		t.Fatalf("kept %d entries from seq %d, want 2 from seq 4", len(kept), kept[0].Seq)
	}
	if n := len(read("gone")); n != 0 {
		t.Fatalf("the revoked store's copy kept %d entries past retention", n)
	}
	// The copy still chains on from where it was.
	if got := tr.ar.seq(); got != 5 {
		t.Fatalf("copy at seq %d after the prune, want 5", got)
	}
	more := journal("store", 40*day, 35*day, 31*day, 10*day, time.Minute, 0)
	parts := bytes.SplitAfter(more, []byte("\n"))
	if err := tr.ar.append(parts[5], 1); err != nil {
		t.Fatalf("the pruned copy refuses the next entry: %v", err)
	}
	es, err := tr.dj.After(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var prunes []string
	for _, e := range es {
		if e.Action == "audit-prune" {
			prunes = append(prunes, e.Object+": "+e.Reason)
		}
	}
	if len(prunes) != 2 || !strings.Contains(strings.Join(prunes, "\n"), "replica store: 3 entries") {
		t.Fatalf("audited prunes %q, want one per copy (3 entries of store's)", prunes)
	}
	// Once pruned, pruning again drops and records nothing.
	tr.r.pruneAudit(now)
	if es2, _ := tr.dj.After(0, 0); len(es2) != len(es) {
		t.Fatalf("a second prune recorded %d more events", len(es2)-len(es))
	}
}
