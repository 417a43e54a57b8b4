package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The exports a node made survive its restart; a damaged file is reported
// and the node goes on without it; records older than any request's life
// are dropped.
func TestExportedLogPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exported.json")
	l, err := openExported(path)
	if err != nil || len(l.list()) != 0 {
		t.Fatalf("a missing file: %v %v", l.list(), err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	old := Exported{Request: "r-old", At: t0, Node: "desk", Exporter: "alice", File: "/tmp/old.ts"}
	cur := Exported{Request: "r1", At: t0.Add(exportedKeep + time.Hour), Node: "desk", Exporter: "alice", File: "/tmp/r1.ts"}
	if err := l.add(old); err != nil {
		t.Fatal(err)
	}
	if err := l.add(cur); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}
	back, err := openExported(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.list(); len(got) != 1 || got[0] != cur {
		t.Fatalf("read back %+v, want only %+v (the older one is past every request's life)", got, cur)
	}
	if e, ok := back.get("r1"); !ok || !strings.Contains(e.Sentence(), `request "r1" was already exported at 2026-12-09T11:00:00Z on node desk by alice, to /tmp/r1.ts`) {
		t.Errorf("sentence: %q", e.Sentence())
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := openExported(path); err == nil || !strings.Contains(err.Error(), "damaged") || l == nil || len(l.list()) != 0 {
		t.Fatalf("damaged file: %v", err)
	}
}
