// Package node is the composition root of a Custos node: it validates the
// configuration, loads the node key, starts the mesh in dependency order,
// turns the desired peer set (for now a static peers file, later the
// replicated policy) into mesh peers, and serves the local API that
// `custos status` reads, on a unix socket in the data directory.
//
// Shutdown runs in reverse order; a partial start is undone.
package node
