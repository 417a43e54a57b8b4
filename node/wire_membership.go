package node

import (
	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/membership"
)

// readmitting sets the mesh's peers, then has Raft re-check who may keep
// its open conns: the mesh cuts a removed peer, and Raft also drops a conn
// whose peer is still reachable but no longer a live member. Revoked
// peers get their notices first (revocation.go).
type readmitting struct {
	m *mesh.Mesh
	r *consensus.Node
	n *Node
}

func (x readmitting) SetPeers(p []mesh.Peer) error {
	return x.n.cutRevoked(p, func() error {
		stay := make(map[keys.NodePublic]bool, len(p))
		for _, q := range p {
			stay[q.PublicKey] = true
		}
		var dropped uint64
		for _, q := range x.m.PeerList() {
			if !stay[q.PublicKey] {
				dropped++
			}
		}
		err := x.m.SetPeers(p)
		if err == nil {
			x.n.cuts.peers.Add(dropped)
		}
		x.r.Readmit()
		return err
	})
}

// maxReconcileWait is membership's bound between reconciliations; the
// node's other policy loops use it too.
const maxReconcileWait = membership.MaxReconcileWait

// validName accepts the names an operator would give a node or a site.
func validName(s string) error { return membership.ValidName(s) }
