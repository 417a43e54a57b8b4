package consensus

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsm adapts a StateMachine to raft.FSM. It also records the index of the
// last command applied, which Sync waits on: raft's own AppliedIndex counts
// entries handed to the FSM goroutine, not entries the state machine has
// consumed.
type fsm struct {
	sm      StateMachine
	applied atomic.Uint64 // index of the last command applied or restored
}

var _ raft.FSM = (*fsm)(nil)

// applyResult is what fsm.Apply returns through raft's ApplyFuture.
type applyResult struct {
	result []byte
	err    error
}

func (f *fsm) Apply(l *raft.Log) any {
	res, err := f.sm.Apply(l.Data, l.Index)
	f.applied.Store(l.Index)
	return applyResult{result: res, err: err}
}

// Snapshot format (inside raft's snapshot file, which carries its own CRC):
//
//	offset size field
//	0      1    version, 1
//	1      8    index of the last command applied, big endian
//	9      n    the state machine's snapshot
const (
	snapshotVersion    = 1
	snapshotHeaderSize = 9
	// maxSnapshot bounds what Restore reads into memory.
	maxSnapshot = 1 << 30
)

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	state, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("consensus: snapshot: %w", err)
	}
	b := make([]byte, snapshotHeaderSize, snapshotHeaderSize+len(state))
	b[0] = snapshotVersion
	binary.BigEndian.PutUint64(b[1:], f.applied.Load())
	return fsmSnapshot(append(b, state...)), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSnapshot+1))
	if err != nil {
		return fmt.Errorf("consensus: restore: %w", err)
	}
	if len(b) > maxSnapshot {
		return fmt.Errorf("consensus: restore: snapshot over %d bytes", maxSnapshot)
	}
	if len(b) < snapshotHeaderSize || b[0] != snapshotVersion {
		return fmt.Errorf("consensus: restore: not a version %d snapshot", snapshotVersion)
	}
	if err := f.sm.Restore(b[snapshotHeaderSize:]); err != nil {
		return fmt.Errorf("consensus: restore: %w", err)
	}
	f.applied.Store(binary.BigEndian.Uint64(b[1:]))
	return nil
}

// fsmSnapshot is an immutable encoded snapshot.
type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}
