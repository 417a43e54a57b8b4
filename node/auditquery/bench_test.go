package auditquery

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

// BenchmarkAuditQuery times what a datacenter does for one query over one
// store's 30-day journal copy of 100 000 entries (the answer: the 300 live
// views of one camera): read-lines is the baseline, the same file read line
// by line with nothing decoded; scan decodes and checks every entry's hash
// and matches it.
func BenchmarkAuditQuery(b *testing.B) {
	dir := b.TempDir()
	j, err := audit.Open(dir, audit.Options{Node: "store-praha-1"})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	t0 := time.Now().Add(-30 * 24 * time.Hour)
	batch := make([]audit.Event, 1000)
	for i := 0; i < n; i += len(batch) {
		for k := range batch {
			x := i + k
			obj, action := fmt.Sprintf("praha-1/cam-%d", x%7), "serve-segments"
			if x%7 == 3 && x%47 == 0 {
				action = "live-view"
			}
			batch[k] = audit.Event{Time: t0.Add(time.Duration(x) * 25 * time.Second), Actor: "admin-alice", Action: action, Object: obj,
				Decision: audit.Allow, Reason: "12 segments, 3145728 bytes of ciphertext"}
		}
		if _, err := j.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	es, err := j.After(0, 0)
	j.Close()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "store-praha-1.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, e := range es {
		l, _ := e.Line()
		w.Write(l)
	}
	w.Flush()
	f.Close()
	perQuery := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(time.Since(start))/float64(b.N)/float64(time.Millisecond), "ms/query")
	}
	b.Run("read-lines", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			r, lines := bufio.NewReaderSize(f, 64<<10), 0
			for {
				if _, err := r.ReadSlice('\n'); err != nil {
					break
				}
				lines++
			}
			f.Close()
			if lines != n {
				b.Fatalf("%d lines", lines)
			}
		}
		perQuery(b, start)
	})
	b.Run("scan", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			c := NewCollector(NewMatcher(nil, &Query{Action: "live-view", Object: "praha-1/cam-3", Limit: MaxLimit}))
			if err := c.ScanFile(path, "praha-1"); err != nil {
				b.Fatal(err)
			}
			if got := len(c.Rows()); got == 0 || got > n/47 {
				b.Fatalf("%d rows", got)
			}
		}
		perQuery(b, start)
	})
}
