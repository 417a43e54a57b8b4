package nodetest

import (
	"sync"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Policy is an in-memory policy replica for a room's tests: Set replaces
// the state and closes the Changed channel, as the node's policy store
// does.
type Policy struct {
	mu      sync.Mutex
	st      *policy.State
	changed chan struct{}
}

// NewPolicy returns a replica holding st.
func NewPolicy(st *policy.State) *Policy { return &Policy{st: st, changed: make(chan struct{})} }

// State is the current state.
func (p *Policy) State() *policy.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Changed is closed at the next Set.
func (p *Policy) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Set replaces the state and wakes whoever waits on Changed.
func (p *Policy) Set(st *policy.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st = st
	close(p.changed)
	p.changed = make(chan struct{})
}

// Journal keeps audit events in memory.
type Journal struct {
	mu     sync.Mutex
	events []audit.Event
}

// Event records e.
func (j *Journal) Event(e audit.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

// Events is every event so far.
func (j *Journal) Events() []audit.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]audit.Event(nil), j.events...)
}

// Of is the events of one action, in order.
func (j *Journal) Of(action string) []audit.Event {
	var out []audit.Event
	for _, e := range j.Events() {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}
