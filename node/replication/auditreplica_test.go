package replication

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
