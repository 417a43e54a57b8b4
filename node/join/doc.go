// Package join owns joining a federation: the join token (what an admin
// hands to whoever installs a node) and the invite it comes from; on the
// joining node, sending the redeem to a datacenter, the files that say whom
// to contact until the policy names its peers (join.json, last-peers.json),
// and the check, once its replica holds its own membership, that the
// token's signer is a current admin (else the join is undone); on a
// datacenter, the join service that takes redeems from anyone on the
// underlay; and, on the leader, keeping Raft's voters equal to the policy,
// a new voter replicating first as a non-voter.
//
// The join service is the one door of a federation open to strangers, so
// everything about it is bounded (connections, time, size, commits, and the
// audit entries its refusals write), and it accepts nothing but invite
// redeems, dry-run before they reach the leader. It never decides who may
// join: the policy does, through the Submitter the node gives it.
//
// It never imports the node: what it needs of it (the policy replica,
// consensus, the mesh, the audit journal, submitting a command, stopping
// the node) comes through the small interfaces below and in Config structs.
package join

import (
	"context"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// MaxClockSkew bounds a command's time against this node's clock (the
// node's own bound: its wire file checks the two agree).
const MaxClockSkew = 5 * time.Minute

// Policy is the node's replica of the policy.
type Policy interface {
	// State is the current state; callers must not modify it.
	State() *policy.State
	// Changed is closed at the next change.
	Changed() <-chan struct{}
	// Sync makes the replica current (a linearizable read) and returns it.
	Sync(ctx context.Context) (*policy.State, error)
}

// Submitter submits a signed command to the policy through consensus (on a
// node: Node.Submit).
type Submitter interface {
	Submit(ctx context.Context, env policy.Envelope) (policy.ApplyResult, error)
}

// Auditor appends to the node's audit journal; a failure is the node's to
// report.
type Auditor interface {
	Event(audit.Event)
}
