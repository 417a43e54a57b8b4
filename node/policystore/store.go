// Package policystore owns the replicated policy's state machine side: the
// Raft FSM over policy.State (Apply, Snapshot, Restore), the anchor that
// pins the genesis a node accepts, and the journaling of every command a
// replica applies or refuses, each exactly once, in batches off Raft's
// apply path.
//
// It never submits commands, never talks to consensus or the mesh, and
// never lets a state in without policy.Apply's checks: a snapshot is
// replayed envelope by envelope, so a compromised leader cannot skip
// verification.
package policystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Store is the Raft state machine over policy.State, and the read
// side every local decision uses. Apply works on a copy and swaps it in, so
// readers (Authorize, membership) always see one whole state, never one
// being changed. The copy is policy.State.Successor, which shares the
// values of the maps that grow with a federation (sites, cameras) instead
// of copying each.
//
// Reads are from the local replica: as fresh as the last command this node
// applied. That is what deny-by-default needs — a revocation takes effect
// here when it arrives, and a window closes by the local clock regardless.
// A linearizable read (consensus leader check plus barrier) is needed only
// where a decision must reflect every committed command, such as redeeming
// an invite or releasing keys; those go through the log anyway.
type Store struct {
	mu      sync.Mutex // serializes Apply, Restore and the changed channel
	cur     atomic.Pointer[policy.State]
	changed chan struct{}
	// log holds every applied envelope. A snapshot is this log, and a
	// restore replays it through policy.Apply, so that a snapshot sent by
	// a compromised leader is checked signature by signature like any log
	// entry: there is no path into the state that skips verification.
	log [][]byte
	// anchor, if set, is the genesis this node accepts: its federation,
	// first admin and founding node. A genesis that differs is refused.
	anchor *policy.Anchor
	// OnApply, if set, sees every command applied or refused (for audit).
	// Set it before the store is used.
	OnApply func(c *policy.Command, err error)
	// OnRestore, if set, sees the applied commands of each snapshot
	// restored, in order: Raft applies none of them one by one here, and
	// every replica must journal every applied command.
	OnRestore func(cmds []*policy.Command)

	applied map[string]uint64 // by kind, since the store was made; guarded by mu
	refused uint64            // guarded by mu
	stall   *Stall            // guarded by mu
}

// Stall is where a replica stopped: the first command of a protocol newer
// than this release's. Applying it, or refusing it, would make this
// replica's state differ from the upgraded ones', so the replica applies
// nothing from there on and refuses to snapshot (so Raft keeps the log
// for the upgraded release to apply after a restart). The node serves
// nothing meanwhile: its view of who may do what has stopped.
type Stall struct {
	Index uint64    `json:"index"` // the Raft index; 0 in a snapshot
	Kind  string    `json:"kind"`
	Need  int       `json:"need"` // the protocol it needs
	At    time.Time `json:"at"`
}

func (s *Stall) Error() string {
	return fmt.Sprintf("the policy replica stopped at entry %d: a %s command needs protocol %d and this release speaks %d; upgrade custos on this node", s.Index, s.Kind, s.Need, policy.Protocol)
}

// Stalled is where the replica stopped, or nil.
func (p *Store) Stalled() *Stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stall
}

// stallAt records where the replica stops, if err says a command is
// newer than this release; the caller holds mu.
func (p *Store) stallAt(index uint64, err error) bool {
	var ne *policy.NewerError
	if !errors.As(err, &ne) {
		return false
	}
	if p.stall == nil {
		p.stall = &Stall{Index: index, Kind: ne.Kind, Need: ne.Need, At: time.Now().UTC()}
	}
	return true
}

// New returns an empty store that accepts only the genesis anchor pins
// (any genesis if anchor is nil).
func New(anchor *policy.Anchor) *Store {
	p := &Store{changed: make(chan struct{}), anchor: anchor}
	p.cur.Store(&policy.State{})
	return p
}

// WithState returns a store that holds st with no log behind it (its
// snapshot replays nothing): for tests of code that reads a given policy.
// Nothing checked st; a node never builds its store this way.
func WithState(st *policy.State) *Store {
	p := New(nil)
	p.cur.Store(st)
	return p
}

// State returns the current state. Callers must not modify it. A node that
// runs from a static peers file has no store: its state is nil.
func (p *Store) State() *policy.State {
	if p == nil {
		return nil
	}
	return p.cur.Load()
}

// Changed returns a channel closed at the next change.
func (p *Store) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Apply applies one log entry. A refused command is a normal, deterministic
// outcome: it changes nothing and is reported in the result, not as an
// error (an error here would mean the replica itself is broken).
func (p *Store) Apply(cmd []byte, index uint64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall != nil {
		// Nothing after the stop: the commands that follow may depend on
		// the one this release cannot apply.
		return json.Marshal(policy.ApplyResult{Reason: p.stall.Error()})
	}
	next, err := clone(p.cur.Load())
	if err != nil {
		return nil, err
	}
	var res policy.ApplyResult
	env, err := policy.DecodeEnvelope(cmd)
	var c *policy.Command
	if err == nil {
		err = p.anchor.Check(env)
	}
	if err == nil {
		c, err = next.Apply(env)
	}
	if c != nil {
		res.ID, res.Kind = c.ID, c.Kind
	}
	if err != nil && p.stallAt(index, err) {
		res.Reason = p.stall.Error()
		return json.Marshal(res)
	}
	if err != nil {
		res.Reason = err.Error()
		p.refused++
	} else {
		res.Applied = true
		if p.applied == nil {
			p.applied = map[string]uint64{}
		}
		p.applied[c.Kind]++
		p.log = append(p.log, bytes.Clone(cmd))
		p.cur.Store(next)
		close(p.changed)
		p.changed = make(chan struct{})
	}
	if p.OnApply != nil {
		p.OnApply(c, err)
	}
	return json.Marshal(res)
}

// Counts are the commands Raft handed this replica one by one since it
// was made, applied (by kind) and refused; a snapshot's are not counted.
func (p *Store) Counts() (applied map[string]uint64, refused uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.applied), p.refused
}

// snapshotV1 is the snapshot format: the applied envelopes, in order.
type snapshotV1 struct {
	Version int      `json:"v"`
	Log     [][]byte `json:"log"`
}

// Snapshot returns every applied envelope, in order (snapshotV1).
func (p *Store) Snapshot() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall != nil {
		return nil, fmt.Errorf("node: no policy snapshot while %v", p.stall)
	}
	return json.Marshal(snapshotV1{Version: 1, Log: p.log})
}

// Restore rebuilds the state by replaying the snapshot's envelopes through
// policy.Apply; one that does not apply (a forged or tampered entry, a
// foreign genesis) fails the whole restore and leaves the state as it was.
func (p *Store) Restore(b []byte) error {
	var snap snapshotV1
	if err := json.Unmarshal(b, &snap); err != nil || snap.Version != 1 {
		return fmt.Errorf("node: policy snapshot: not a version 1 snapshot")
	}
	var s policy.State
	cmds := make([]*policy.Command, 0, len(snap.Log))
	for i, raw := range snap.Log {
		env, err := policy.DecodeEnvelope(raw)
		if err == nil {
			err = p.anchor.Check(env)
		}
		var c *policy.Command
		if err == nil {
			c, err = s.Apply(env)
		}
		if err != nil {
			// A newer entry stops the replica (the state stays as it was,
			// and Raft is told the restore failed); anything else is
			// only a bad snapshot.
			p.mu.Lock()
			p.stallAt(0, err)
			p.mu.Unlock()
			return fmt.Errorf("node: policy snapshot entry %d: %w", i, err)
		}
		cmds = append(cmds, c)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = snap.Log
	p.cur.Store(&s)
	close(p.changed)
	p.changed = make(chan struct{})
	if p.OnRestore != nil {
		p.OnRestore(cmds)
	}
	return nil
}

func clone(s *policy.State) (*policy.State, error) { return s.Successor(), nil }
