package consensus

import (
	"sync"
	"time"
)

// commitBuckets are the upper bounds, in seconds, of the commit latency
// histogram: from a loopback commit (about half a millisecond) to the
// 5 s a command may wait for a leader.
var commitBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// CommitBuckets returns the histogram's upper bounds, in seconds.
func CommitBuckets() []float64 { return commitBuckets[:] }

// Latency is a histogram of the commits this node led: how long each
// command took from raft.Apply on the leader to its commit and apply.
// Counts are cumulative per bucket, as Prometheus wants them; commits
// slower than the last bound are in Count only.
type Latency struct {
	Count      uint64   `json:"count"`
	SumSeconds float64  `json:"sum_seconds"`
	Buckets    []uint64 `json:"buckets,omitempty"` // Buckets[i] counts commits ≤ CommitBuckets()[i]
}

type latencyHist struct {
	mu  sync.Mutex
	n   uint64
	sum float64
	per [len(commitBuckets)]uint64 // not cumulative; one per CommitBuckets entry
}

func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	h.sum += s
	for i, le := range commitBuckets {
		if s <= le {
			h.per[i]++
			break
		}
	}
}

func (h *latencyHist) read() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := Latency{Count: h.n, SumSeconds: h.sum, Buckets: make([]uint64, len(commitBuckets))}
	var cum uint64
	for i := range commitBuckets {
		cum += h.per[i]
		l.Buckets[i] = cum
	}
	return l
}
