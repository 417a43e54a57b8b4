package policystore

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// CmdAudit journals the policy commands this replica applies or refuses,
// each once, however they reach it: applied from the Raft log, replayed
// from the log after a restart, or installed with a snapshot.
//
// A snapshot holds every applied envelope (Store), so a replica that
// restores one can journal exactly the commands it never journaled itself:
// those that arrived only in the snapshot (a follower that fell behind the
// leader's log), and those applied here whose queued journal line a crash
// (kill -9) lost after Raft had compacted its log behind a local snapshot.
// We chose this over carrying the state's Applied counter or a bounded list
// of recent commands in the snapshot: the counter says how many are missing
// but not which, and any bound is a hole for a follower that fell further
// behind. What the journal already holds is known by command ID.
type CmdAudit struct {
	q         *Queue
	retention time.Duration
	now       func() time.Time

	mu sync.Mutex
	// applied holds the IDs journaled as applied, read from the journal
	// at start and added as they are queued: an ID applies at most once
	// (the replay window), so it is never forgotten while the node runs.
	applied map[string]bool
	// refused counts, per ID, refusals the journal held at start that
	// Raft's replay after a restart has not met again.
	refused map[string]int
}

// NewCmdAudit reads what j already holds and journals through q; set its
// Record and Restored as a Store's OnApply and OnRestore.
func NewCmdAudit(j *audit.Journal, q *Queue) (*CmdAudit, error) {
	entries, err := j.Since(time.Time{})
	if err != nil {
		return nil, err
	}
	a := &CmdAudit{q: q, retention: j.Retention(), now: time.Now, applied: map[string]bool{}, refused: map[string]int{}}
	for _, e := range entries {
		if e.Action != "policy-change" {
			continue
		}
		_, id, ok := strings.Cut(e.Object, " ")
		if !ok {
			continue
		}
		if e.Decision == audit.Deny {
			a.refused[id]++
		} else {
			a.applied[id] = true
		}
	}
	return a, nil
}

// expired reports whether c is older than the journal keeps entries: its
// line, if there ever was one, may have been pruned, and one written now
// would be pruned at once.
func (a *CmdAudit) expired(c *policy.Command) bool {
	return c.Time.Before(a.now().Add(-a.retention))
}

// Record is Store.OnApply.
func (a *CmdAudit) Record(c *policy.Command, err error) {
	e := audit.Event{Action: "policy-change", Decision: audit.Allow}
	if c != nil {
		a.mu.Lock()
		skip := a.expired(c)
		switch {
		case skip:
		case err == nil && a.applied[c.ID]:
			skip = true
		case err == nil:
			a.applied[c.ID] = true
		case a.refused[c.ID] > 0:
			a.refused[c.ID]--
			skip = true
		}
		a.mu.Unlock()
		if skip {
			return
		}
		e.Actor, e.Object = commandActor(c), c.Kind+" "+c.ID
	}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	a.q.Enqueue(e)
}

// Restored is Store.OnRestore: cmds are the applied commands of the
// snapshot just installed, in order.
func (a *CmdAudit) Restored(cmds []*policy.Command) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range cmds {
		if a.applied[c.ID] || a.expired(c) {
			continue
		}
		a.applied[c.ID] = true
		a.q.Enqueue(audit.Event{Actor: commandActor(c), Action: "policy-change", Object: c.Kind + " " + c.ID, Decision: audit.Allow,
			Reason: fmt.Sprintf("applied from a Raft snapshot; command time %s", c.Time.UTC().Format(time.RFC3339))})
	}
}

func commandActor(c *policy.Command) string {
	if c.Signer == "" {
		return c.Kind
	}
	return c.Signer
}
