package release

// Running exports, as status shows them.

import (
	"sort"
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// ExportProgress is a running export, as status shows it: how much of the
// requested footage (per camera, by time) is written.
type ExportProgress struct {
	Request  string  `json:"request"`
	Fraction float64 `json:"fraction"` // 0..1
	Bytes    int64   `json:"ciphertext_bytes"`
}

// exportTracker follows one running export.
type exportTracker struct {
	mu      sync.Mutex
	p       ExportProgress
	from    time.Time
	span    time.Duration // of one camera's range
	cameras int
	done    map[string]time.Duration // per camera, footage covered
}

func (p *exportTracker) add(cam string, end time.Time, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Bytes += n
	if d := min(end.Sub(p.from), p.span); d > p.done[cam] {
		p.done[cam] = d
	}
	var sum time.Duration
	for _, d := range p.done {
		sum += d
	}
	p.p.Fraction = float64(sum) / float64(p.span*time.Duration(p.cameras))
}

func (p *exportTracker) snapshot() ExportProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

// exportsRunning are this node's exports in progress.
type exportsRunning struct {
	mu  sync.Mutex
	ids map[string]*exportTracker
}

func (e *exportsRunning) start(r *policy.Request) *exportTracker {
	p := &exportTracker{p: ExportProgress{Request: r.ID}, from: r.From, span: max(r.To.Sub(r.From), time.Nanosecond),
		cameras: max(len(r.Cameras), 1), done: map[string]time.Duration{}}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ids == nil {
		e.ids = map[string]*exportTracker{}
	}
	e.ids[r.ID] = p
	return p
}

func (e *exportsRunning) end(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.ids, id)
}

func (e *exportsRunning) list() []ExportProgress {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ExportProgress, 0, len(e.ids))
	for _, p := range e.ids {
		out = append(out, p.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Request < out[j].Request })
	return out
}
