// Package node is the composition root of a Custos node. It validates the
// configuration, claims the data directory, loads the node key, and starts
// the rooms below it in dependency order, wiring each to the others through
// the small interfaces the room declares (the wire_*.go files):
//
//	node/policystore   the replicated policy's state machine and its audit
//	node/membership    the policy's peers into the mesh; the static peers file
//	node/join          tokens, invites, the join service, voter staging
//	node/recording     a store's cameras, media store and camera secrets
//	node/replication   a store's footage to the datacenters, and their replicas
//	node/release       serving an approved scope, custodians' answers, export, recovery
//	node/live          live view, store side and viewer side
//	node/rpc           node-to-node requests over the mesh's QUIC (shared)
//	node/custody       which store key a seal verifies under (shared)
//
// node itself keeps what only the whole node can do: consensus over the
// policy (federation.go), the node service that registers the rooms' ops
// (service.go), the local API on an owner-only unix socket and its client
// (api.go, apiclient.go), and status. Start runs in dependency order,
// shutdown in reverse; a partial start is undone. No room imports node or
// another room except rpc and custody (e2e's TestDeps enforces it);
// node/demo runs whole federations on this machine, a client of node as cmd
// is.
package node
