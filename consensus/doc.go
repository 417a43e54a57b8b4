// Package consensus runs hashicorp/raft for Custos: it replicates a
// deterministic state machine (the policy) over the mesh, keeps the Raft log,
// stable and snapshot stores on disk, and forwards commands submitted on any
// node to the leader.
//
// # What it owns, what it must not do
//
// The package knows nothing of Custos' concrete types. It reaches the rest of
// the system through three small interfaces that it defines and the node
// wires: a [Network] (TCP on mesh addresses), an [Admit] decision (who may
// speak Raft with us), and a [StateMachine] (what is replicated). It imports
// nothing of the project — in particular never mesh, media or node — and a
// test enforces that. It does not decide who is a member: the node turns the
// committed policy into [Node.AddVoter], [Node.AddNonvoter] and [Node.Remove]
// calls on the leader, and into the Admit decision on every node.
//
// # Roles
//
// The datacenters and the witness are voters; stores and admin devices are
// non-voters: they receive every committed entry, apply it to their own
// replica and keep enforcing the last policy they have when cut off. Any node
// may [Node.Submit] a command; a non-leader forwards it to the leader over the
// mesh and returns the leader's result.
//
// # Admission, fail closed
//
// Admit is asked on every outgoing connection before it is made (so not one
// byte reaches a peer we do not admit) and on every incoming connection before
// anything is read from it (a refused connection is closed, and accepting goes
// on). A nil Admit refuses every peer. The mesh address it is given is the one
// WireGuard authenticated, so Admit is an identity check, not an IP filter.
//
// # Wire format
//
// Raft and forwarding share one TCP port (Config.Addr's port; the node calls
// it RaftPort). The first byte of every connection, written by the dialer,
// selects the protocol:
//
//	'R' (0x52)  hashicorp/raft's NetworkTransport protocol (msgpack RPCs) follows
//	'F' (0x46)  Custos forwarding frames follow
//
// A connection whose first byte is neither, or that sends none within
// Config.IOTimeout, is closed.
//
// A forwarding connection carries a sequence of exchanges, one at a time,
// each a request and its answer. Every frame is
//
//	offset  size  field
//	0       1     version, 1
//	1       1     kind
//	2       4     body length n, big endian, at most MaxFrameBody
//	6       n     body
//
// Request kinds (requester to leader):
//
//	0x01 submit    body = wait in ms (uint32 BE, > 0) ‖ command
//	0x02 readIndex body = wait in ms (uint32 BE, > 0); asks for an index that
//	               covers every command committed before the request
//
// Answer kinds (leader to requester):
//
//	0x80 accepted  empty; the leader has read the whole request and is about
//	               to act on it; the final answer follows
//	0x81 ok        body = the state machine's result (submit) or the index
//	               as uint64 BE (readIndex)
//	0x82 rejected  body = the refusal's text (the state machine's Apply or the
//	               leader's Vet)
//	0x83 retry     body = reason; nothing was applied (not the leader, queue
//	               full): try again, possibly at another leader
//	0x84 unknown   body = reason; the command may or may not be committed
//	               (leadership lost or shutdown while committing)
//	0x85 invalid   body = reason; the request was malformed or too large
//
// The leader answers retry or invalid at once, or accepted and then one of
// ok, rejected, retry or unknown. The accepted frame is what makes retrying
// safe: a connection that ends before it (a stale pooled connection, a leader
// that went away, a leader whose Admit refused us) carried nothing that was
// applied, so the requester retries; one that ends after it leaves the
// outcome unknown (ErrOutcomeUnknown). The requester asks the leader to wait
// at most its own remaining time, a little less, so the answer arrives before
// it gives up. A frame whose version is not 1, whose kind is unknown, or whose
// length is over the cap ends the connection (after an invalid answer). Texts
// are capped at MaxErrorText bytes of printable UTF-8. Every read and write
// has a deadline; an idle forwarding connection is closed after two minutes.
//
// # Storage
//
// Under Config.Dir:
//
//	raft/wal/        raft-wal: the Raft log and the stable store (term, vote)
//	raft/snapshots/  file snapshots, the newest two kept
//
// raft-wal is pure Go (no CGO), writes append-only segment files with one
// fsync per batch and reads from them without a B-tree, and is faster and
// smaller than the BoltDB log store; the raft-boltdb/v2 alternative would in
// addition need hashicorp/go-metrics pinned to v0.5.4. Segments are
// preallocated at 8 MiB, plenty for a policy log whose entries are small.
//
// # Timeouts
//
// The defaults (see [Config]) are twice hashicorp/raft's LAN defaults: a
// heartbeat timeout of 2 s, an election timeout of 2 s and a leader lease of
// 1 s. Voters are the datacenters and the witness, on links with round trips
// of tens of milliseconds; the margin is for round trips that stretch on a
// loaded machine (with a 500 ms lease, leadership flapped for tens of
// seconds). A follower that hears nothing from the leader for 2–4 s starts a
// pre-vote, so losing the leader costs about three to five seconds of write
// unavailability (`make bench` measures it beside plain raft); reads of the
// local replica go on throughout. Tests shorten all of them.
//
// # Reads
//
// Every node reads its own replica: that is what enforcement does, and it may
// be a little behind the leader. That is correct for authorization (a node
// enforces the last policy it has, also when cut off). Where a read must
// reflect every write committed before it started — the admin console showing
// the result of a grant just submitted elsewhere, or a check that must not act
// on stale state, such as "is this request still open" before a custodian
// re-encrypts a share to it — call [Node.Sync] first (any node), or
// [Node.VerifyLeader] (on the leader). [Node.Barrier] is for the leader after
// it gains leadership, before it acts on its replica (for example to reconcile
// Raft membership with the policy).
package consensus
