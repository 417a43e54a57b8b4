package replication

// Replication, the store's side: the uplink budget, what each datacenter
// acknowledged, and the refusals audited.

import (
	"context"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Source is a store's replication state: the uplink budget and what
// each datacenter acknowledged.
type Source struct {
	d       SourceDeps
	cfg     Config
	limiter *rate.Limiter // nil: unlimited

	mu      sync.Mutex
	acks    map[string]map[string]replCursor // datacenter → camera → held
	lastAck map[string]time.Time             // datacenter → last pull or fetch
	refused map[string]refusal               // datacenter → last audited refusal
}

type refusal struct {
	reason string
	at     time.Time
}

// NewSource makes a store's side; it runs nothing of its own.
func NewSource(cfg Config, d SourceDeps) *Source {
	r := &Source{d: d, cfg: cfg, acks: map[string]map[string]replCursor{},
		lastAck: map[string]time.Time{}, refused: map[string]refusal{}}
	if cfg.UplinkBytesPerSec > 0 {
		// A burst of a quarter second (at least 64 KiB) keeps the pace
		// smooth without making small budgets unusable.
		burst := max(int(cfg.UplinkBytesPerSec/4), 64<<10)
		r.limiter = rate.NewLimiter(rate.Limit(cfg.UplinkBytesPerSec), burst)
	}
	return r
}

// refuse audits a refused datacenter: once, then again when the reason
// changes or replRefusalAudit has passed, so a retrying datacenter cannot
// flood the journal.
func (r *Source) refuse(dc string, why error) {
	r.mu.Lock()
	last, seen := r.refused[dc]
	due := !seen || last.reason != why.Error() || time.Since(last.at) > replRefusalAudit
	if due {
		r.refused[dc] = refusal{reason: why.Error(), at: time.Now()}
	}
	r.mu.Unlock()
	if due {
		r.d.Logf("node: replication to %s refused: %v", dc, why)
		r.d.Audit(audit.Event{Actor: dc, Action: "replicate", Object: r.d.Name, Decision: audit.Deny, Reason: why.Error()})
		if r.d.Outside != nil && outsideJurisdiction(r.d.Policy.State(), dc, r.d.now()) {
			r.d.Outside(dc, why)
		}
	}
}

// outsideJurisdiction reports whether a refusal of dc is for its
// jurisdiction: a live datacenter in a jurisdiction the policy keeps no
// data in (policy.ReplicaTarget's last check).
func outsideJurisdiction(st *policy.State, dc string, now time.Time) bool {
	nd := st.Nodes[dc]
	return nd != nil && nd.Role == policy.RoleDatacenter && policy.Member(st, dc, now) && !st.DataJurisdictionAllowed(nd.Jurisdiction)
}

// RefuseOutside audits, once, each datacenter of the policy that the
// store will not replicate to (nor split key shares to): a datacenter in a
// jurisdiction the policy keeps no data in is refused whether or not it
// ever asks.
func (r *Source) RefuseOutside(st *policy.State) {
	for name, nd := range st.Nodes {
		if nd.Role != policy.RoleDatacenter || nd.Revoked || st.DataJurisdictionAllowed(nd.Jurisdiction) {
			continue
		}
		r.mu.Lock()
		_, seen := r.refused[name]
		r.mu.Unlock()
		if !seen {
			r.refuse(name, policy.ReplicaTarget(st, name, r.d.now()))
		}
	}
}

// ack records what datacenter dc holds; the first pull of a session is
// audited (a pull every few seconds is not).
func (r *Source) ack(dc, site string, held map[string]replCursor) {
	r.mu.Lock()
	first := time.Since(r.lastAck[dc]) > replStaleAfter
	m := r.acks[dc]
	if m == nil {
		m = map[string]replCursor{}
		r.acks[dc] = m
	}
	for cam, c := range held {
		if strings.HasPrefix(cam, site+"/") {
			m[cam] = c
		}
	}
	r.lastAck[dc] = time.Now()
	delete(r.refused, dc)
	r.mu.Unlock()
	if first {
		r.d.Audit(audit.Event{Actor: dc, Action: "replicate", Object: r.d.Name, Decision: audit.Allow,
			Reason: "datacenter in an allowed jurisdiction pulls ciphertext, epoch records and audit"})
	}
}

// contact notes that datacenter dc is fetching (it is reachable).
func (r *Source) contact(dc string) {
	r.mu.Lock()
	r.lastAck[dc] = time.Now()
	r.mu.Unlock()
}

// pace waits until n bytes fit the uplink budget.
func (r *Source) pace(ctx context.Context, n int) error {
	if r.limiter == nil {
		return nil
	}
	for n > 0 {
		k := min(n, r.limiter.Burst())
		if err := r.limiter.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
