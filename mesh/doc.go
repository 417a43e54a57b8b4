// Package mesh owns the node's encrypted network: a wireguard-go device on a
// userspace gVisor netstack (no root, no kernel module; netstack.go says why
// the tun device over gVisor is our own), the WireGuard peer
// set, the read-only UAPI socket that `wg show` reads, memberlist gossip
// over the mesh for liveness and endpoint discovery, and QUIC inside the
// mesh (quic.go: ALPN custos/1, certificates bound to the WireGuard peer
// key, an Admit the caller supplies). Optionally a relay path: a bind that
// falls back to a DERP relay when direct UDP does not work (bind.go,
// relay.go), and the relay server a datacenter runs (relay_server.go).
//
// Who is a peer is decided by the caller through SetPeers (in Custos, the
// node turns the replicated policy into that set); gossip never adds a
// member. Every mesh address is derived from its WireGuard key
// (keys.MeshAddr) and each peer's AllowedIPs is exactly that /128, so a
// packet's source address proves which key sent it.
//
// The package never imports consensus, media or node.
package mesh
