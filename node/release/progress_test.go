package release

import (
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Progress is the share of the requested footage written, per camera by
// time, shown in status while the export runs and gone after.
func TestExportProgress(t *testing.T) {
	var e exportsRunning
	from := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	r := &policy.Request{ID: "r1", From: from, To: from.Add(10 * time.Second), Cameras: []string{"a/1", "a/2"}}
	p := e.start(r)
	p.add("a/1", from.Add(5*time.Second), 100)
	p.add("a/1", from.Add(4*time.Second), 100) // out of order: no step back
	p.add("a/2", from.Add(30*time.Second), 50) // past the range: counts to its end
	got := e.list()
	if len(got) != 1 || got[0].Request != "r1" || got[0].Bytes != 250 || got[0].Fraction != 0.75 {
		t.Fatalf("progress = %+v, want r1 at 0.75 with 250 bytes", got)
	}
	e.end("r1")
	if got := e.list(); len(got) != 0 {
		t.Fatalf("after the end: %+v", got)
	}
}
