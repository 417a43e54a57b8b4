package node

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/custos-cctv/custos/policy"
)

// policyStore is the Raft state machine over policy.State, and the read
// side every local decision uses. Apply works on a copy and swaps it in, so
// readers (Authorize, membership) always see one whole state, never one
// being changed; a state is a few kilobytes, so the copy is cheap next to a
// consensus round.
//
// Reads are from the local replica: as fresh as the last command this node
// applied. That is what deny-by-default needs — a revocation takes effect
// here when it arrives, and a window closes by the local clock regardless.
// A linearizable read (consensus leader check plus barrier) is needed only
// where a decision must reflect every committed command, such as redeeming
// an invite or releasing keys; those go through the log anyway.
type policyStore struct {
	mu      sync.Mutex // serializes Apply, Restore and the changed channel
	cur     atomic.Pointer[policy.State]
	changed chan struct{}
	// onApply, if set, sees every command applied or refused (for audit).
	onApply func(c *policy.Command, err error)
}

func newPolicyStore() *policyStore {
	p := &policyStore{changed: make(chan struct{})}
	p.cur.Store(&policy.State{})
	return p
}

// State returns the current state. Callers must not modify it.
func (p *policyStore) State() *policy.State { return p.cur.Load() }

// Changed returns a channel closed at the next change.
func (p *policyStore) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// ApplyResult is what Apply returns to the submitter, JSON-encoded.
type ApplyResult struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Applied bool   `json:"applied"`
	Reason  string `json:"reason,omitempty"`
}

// Apply applies one log entry. A refused command is a normal, deterministic
// outcome: it changes nothing and is reported in the result, not as an
// error (an error here would mean the replica itself is broken).
func (p *policyStore) Apply(cmd []byte, index uint64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := clone(p.cur.Load())
	if err != nil {
		return nil, err
	}
	var res ApplyResult
	env, err := policy.DecodeEnvelope(cmd)
	var c *policy.Command
	if err == nil {
		c, err = next.Apply(env)
	}
	if c != nil {
		res.ID, res.Kind = c.ID, c.Kind
	}
	if err != nil {
		res.Reason = err.Error()
	} else {
		res.Applied = true
		p.cur.Store(next)
		close(p.changed)
		p.changed = make(chan struct{})
	}
	if p.onApply != nil {
		p.onApply(c, err)
	}
	return json.Marshal(res)
}

func (p *policyStore) Snapshot() ([]byte, error) { return p.cur.Load().Marshal() }

func (p *policyStore) Restore(b []byte) error {
	var s policy.State
	if err := s.Unmarshal(b); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.Store(&s)
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

func clone(s *policy.State) (*policy.State, error) {
	b, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("node: copy policy state: %w", err)
	}
	var n policy.State
	if err := n.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("node: copy policy state: %w", err)
	}
	return &n, nil
}
