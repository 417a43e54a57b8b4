// Package mesh owns the node's encrypted network: a wireguard-go device on a
// userspace gVisor netstack (no root, no kernel module; netstack.go says why
// the tun device over gVisor is our own), the WireGuard peer
// set, the read-only UAPI socket that `wg show` reads, memberlist gossip
// over the mesh for liveness and endpoint discovery, and QUIC inside the
// mesh (quic.go: ALPN custos/1, certificates bound to the WireGuard peer
// key, an Admit the caller supplies). Optionally a relay path: a bind that
// falls back to DERP relays when direct UDP does not work (bind.go,
// relay.go, relays.go), and the relay server a datacenter runs
// (relay_server.go).
//
// Relays and NAT. Stores and admin nodes sit behind NAT; only datacenters
// have public addresses, and each serves a relay. Every node keeps a
// session to every datacenter's relay: a federation has a few datacenters,
// so that is a handful of TCP connections per node, and it spares the
// relays a mesh among themselves — any two nodes share every relay, so a
// packet is relayed by one server, and when a datacenter dies its peers
// simply use another (a silent death is caught by DERP pings within
// seconds).
//
// Who is a peer is decided by the caller through SetPeers (in Custos, the
// node turns the replicated policy into that set); gossip never adds a
// member. Every mesh address is derived from its WireGuard key
// (keys.MeshAddr) and each peer's AllowedIPs is exactly that /128, so a
// packet's source address proves which key sent it.
//
// The package never imports consensus, media or node.
package mesh
