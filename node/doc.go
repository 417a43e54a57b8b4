// Package node is the composition root of a Custos node: it validates the
// configuration, loads the node key, starts the mesh, consensus over the
// replicated policy (federation.go, node/policystore), membership (the
// policy's peers into the mesh, by the node's own clock: node/membership), joining
// (join.go, token.go), a store's recording (recording.go), the QUIC
// service for key release and export (service*.go, release*.go,
// export*.go), and the local API that the CLI talks to, on an owner-only
// unix socket in the data directory. Nodes not founded with init run from
// a static peers file (node/membership's peersfile.go).
//
// Start runs in dependency order; shutdown in reverse; a partial start is
// undone.
package node
