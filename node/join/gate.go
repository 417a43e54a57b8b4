package join

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// auditGate decides which repeated refusals of unauthenticated or junk input
// reach the audit journal, whose entries are fsynced and replicated: each
// key (a source and a reason) once per interval, and all keys together no
// faster than a fixed rate, so neither one source nor a crowd of them can
// write to the journal faster than that (DESIGN §4 invariant 14). What it
// holds back is counted, and the next audited refusal says how many.
type auditGate struct {
	every   time.Duration
	maxKeys int
	limiter *rate.Limiter

	mu   sync.Mutex
	seen map[string]*gateEntry
	lost int // refusals of any key held back by the overall rate or size
}

type gateEntry struct {
	at      time.Time // last audited
	skipped int       // refusals of this key since then, not audited
}

// newAuditGate audits each key at most once per every, and at most burst
// refusals at once, perSec a second after that, remembering up to maxKeys
// keys.
func newAuditGate(every time.Duration, perSec float64, burst, maxKeys int) *auditGate {
	return &auditGate{every: every, maxKeys: maxKeys, limiter: rate.NewLimiter(rate.Limit(perSec), burst), seen: map[string]*gateEntry{}}
}

// pass reports whether a refusal of key is to be audited now and, if so, a
// note on what was held back since (empty if nothing was).
func (g *auditGate) pass(key string, now time.Time) (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.seen[key]
	if e != nil && now.Sub(e.at) < g.every {
		e.skipped++
		return false, ""
	}
	if e == nil && len(g.seen) >= g.maxKeys {
		for k, old := range g.seen {
			if now.Sub(old.at) >= g.every {
				delete(g.seen, k)
			}
		}
		if len(g.seen) >= g.maxKeys {
			g.lost++
			return false, ""
		}
	}
	if !g.limiter.AllowN(now, 1) {
		if e != nil {
			e.skipped++
		} else {
			g.lost++
		}
		return false, ""
	}
	var note string
	if e != nil && e.skipped > 0 {
		note = fmt.Sprintf("; %d more like it since %s not audited", e.skipped, e.at.UTC().Format(time.RFC3339))
	}
	if g.lost > 0 {
		note += fmt.Sprintf("; %d other refusals not audited", g.lost)
	}
	g.lost = 0
	g.seen[key] = &gateEntry{at: now}
	return true, note
}
