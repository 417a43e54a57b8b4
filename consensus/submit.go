package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Submit commits cmd and returns what the state machine's Apply returned
// for it. On the leader it applies directly; elsewhere it forwards cmd to the
// leader over the mesh. While no leader is known, or the leader changes
// before it takes cmd, Submit retries until ctx ends (or SubmitTimeout, if
// ctx has no deadline).
//
// Errors: ErrRejected (Apply or the leader's Vet refused cmd; the text is
// the refusal's), ErrNoLeader, ErrOutcomeUnknown, ErrTooLarge, ErrClosed.
// Submit returns when the leader has applied cmd; this node's own replica
// may apply it a moment later (Sync waits for that).
func (n *Node) Submit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) > MaxCommand {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(cmd), MaxCommand)
	}
	return n.onLeader(ctx, "submit", kindSubmit, cmd, func(ctx context.Context) ([]byte, error) {
		return n.applyLocal(ctx, cmd)
	})
}

// Sync waits until this node's replica reflects every command committed
// before the call: the leader confirms its leadership (by committing a
// barrier entry) and names the index of its last applied command, and Sync
// waits until this node has applied it. A read of the replica after Sync
// returns nil is linearizable. It works on any node. A leader lost under
// the read only makes it ask again; with no leader before ctx ends it fails
// with ErrNoLeader.
func (n *Node) Sync(ctx context.Context) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	body, err := n.onLeader(ctx, "sync", kindReadIndex, nil, n.readIndexLocal)
	if err != nil {
		return err
	}
	index, err := parseIndex(body)
	if err != nil {
		return fmt.Errorf("consensus: sync: %w", err)
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for n.fsm.applied.Load() < index {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("consensus: sync: applied %d of %d: %w", n.fsm.applied.Load(), index, ctx.Err())
		case <-n.ctx.Done():
			return fmt.Errorf("%w: sync", ErrClosed)
		}
	}
	return nil
}

// retryError marks a failure after which nothing was applied, so another
// try (perhaps at another leader) is safe.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// rejectedError is a refusal by Apply or Vet. Its text is the same on the
// submitting node whether the leader was local or remote.
type rejectedError struct {
	text  string
	cause error // nil when the refusal came over the wire
}

func (e *rejectedError) Error() string { return ErrRejected.Error() + ": " + e.text }

func (e *rejectedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrRejected}
	}
	return []error{ErrRejected, e.cause}
}

// onLeader runs local if this node leads, or sends a request of kind with
// payload to the leader, retrying while nothing was applied.
func (n *Node) onLeader(ctx context.Context, op string, kind frameKind, payload []byte, local func(context.Context) ([]byte, error)) ([]byte, error) {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	start := time.Now()
	backoff := 5 * time.Millisecond
	var last error
	for {
		if n.raft.State() == raft.Shutdown {
			return nil, fmt.Errorf("%w: %s: raft is shut down (closed, or removed from the cluster)", ErrClosed, op)
		}
		addr, id := n.raft.LeaderWithID()
		var res []byte
		var err error
		switch {
		case id == "":
			err = &retryError{errors.New("no leader known")}
		case string(id) == n.cfg.ID:
			res, err = local(ctx)
		default:
			res, err = n.forward(ctx, string(addr), kind, payload)
		}
		if kind == kindReadIndex && errors.Is(err, ErrOutcomeUnknown) && ctx.Err() == nil {
			// A read changes nothing, so a leader lost under it (its
			// barrier failed, or it never answered) only means: ask again.
			err = &retryError{err}
		}
		var re *retryError
		if !errors.As(err, &re) {
			if err != nil && !errors.Is(err, ErrRejected) {
				err = fmt.Errorf("consensus: %s: %w", op, err)
			}
			return res, err
		}
		last = re.err
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 250*time.Millisecond)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s gave up after %v: %v", ErrNoLeader, op, time.Since(start).Round(time.Millisecond), last)
		case <-n.ctx.Done():
			return nil, fmt.Errorf("%w: %s", ErrClosed, op)
		}
	}
}

// applyLocal commits cmd through this node's Raft, which must lead.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) ([]byte, error) {
	if n.cfg.Vet != nil {
		if err := n.cfg.Vet(cmd); err != nil {
			return nil, &rejectedError{text: err.Error(), cause: err}
		}
	}
	left, err := timeLeft(ctx)
	if err != nil {
		// Nothing was handed to raft.
		return nil, &retryError{fmt.Errorf("no time left to commit: %w", err)}
	}
	began := time.Now()
	f := n.raft.Apply(cmd, left)
	if err := wait(ctx, f); err != nil {
		return nil, n.commitErr(ctx, err)
	}
	n.commits.observe(time.Since(began))
	r, ok := f.Response().(applyResult)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected apply response %T", ErrOutcomeUnknown, f.Response())
	}
	if r.err != nil {
		return nil, &rejectedError{text: r.err.Error(), cause: r.err}
	}
	if len(r.result) > MaxCommand {
		return nil, fmt.Errorf("%w: the command was applied but its result is %d bytes, at most %d", ErrTooLarge, len(r.result), MaxCommand)
	}
	return r.result, nil
}

// readIndexLocal commits a barrier on this node, which must lead, and
// returns the index of the last command it has applied.
func (n *Node) readIndexLocal(ctx context.Context) ([]byte, error) {
	left, err := timeLeft(ctx)
	if err != nil {
		return nil, &retryError{fmt.Errorf("no time left to commit a barrier: %w", err)}
	}
	if err := wait(ctx, n.raft.Barrier(left)); err != nil {
		return nil, n.commitErr(ctx, err)
	}
	return indexBody(n.fsm.applied.Load()), nil
}

// commitErr classifies a failed Apply or Barrier: retryable when raft says
// nothing was appended, ErrOutcomeUnknown when it may have been.
func (n *Node) commitErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return &retryError{err}
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
	return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
}
