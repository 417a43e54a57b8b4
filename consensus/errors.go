package consensus

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the errors
// returned wrap them with the operation and the cause.
var (
	// ErrRejected: the command was refused, by the state machine's Apply
	// (it is committed, and refused identically on every replica) or by
	// the leader's Vet (nothing was committed). The text after it is the
	// refusal's own.
	ErrRejected = errors.New("consensus: command rejected")

	// ErrNoLeader: no leader could be reached before the deadline. This
	// node may not be a member (yet), its peers may refuse it, or the
	// voters may have lost their quorum.
	ErrNoLeader = errors.New("consensus: no leader reachable (this node may not be a member yet, may be refused by its peers, or the voters have no quorum)")

	// ErrNotLeader: the operation runs on the leader only and this node
	// is not it.
	ErrNotLeader = errors.New("consensus: this node is not the leader")

	// ErrOutcomeUnknown: the command was handed to the leader but its
	// fate is unknown (leadership lost or connection broken while
	// committing). It may be committed. Policy commands carry unique ids,
	// so resubmitting is safe: a duplicate is refused.
	ErrOutcomeUnknown = errors.New("consensus: outcome unknown, the command may or may not be committed")

	// ErrNotAdmitted: Admit refused the peer.
	ErrNotAdmitted = errors.New("consensus: peer not admitted")

	// ErrTooLarge: a command or result is over MaxCommand.
	ErrTooLarge = errors.New("consensus: command too large")

	// ErrAlreadyBootstrapped: Bootstrap on a node that already has Raft
	// state (a log, a snapshot or a term).
	ErrAlreadyBootstrapped = errors.New("consensus: already bootstrapped")

	// ErrClosed: the node is closed, or Raft shut down because this node
	// was removed from the cluster.
	ErrClosed = errors.New("consensus: closed")
)
