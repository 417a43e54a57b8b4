// Package consensus will own hashicorp/raft for Custos: the FSM over the
// policy state, the stream layer over mesh TCP that checks each peer's
// identity on dial and accept, the durable log, stable and snapshot stores,
// and forwarding of commands to the leader.
//
// Empty until the replicated-policy issue.
package consensus
