package node

// The static peers file of a node not founded with init: watched, applied
// once it reads the same twice, its changes audited.

import (
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/policy/audit"
)

// watchPeers re-reads the peers file when its content changes, so that
// removing a line removes the peer within two poll intervals. A broken edit
// keeps the last good peer set and is reported in status.
func (n *Node) watchPeers() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PeersPoll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.ReloadPeers()
	}
}

// ReloadPeers applies the peers file now if it changed. A file that is
// missing or broken keeps the previous peers (a half-written edit must not
// cut a store off) and is reported in status and the log until fixed.
func (n *Node) ReloadPeers() {
	if n.cfg.PeersFile == "" {
		return
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	peers, h, err := membership.ReadPeersFile(n.cfg.PeersFile)
	n.mu.Lock()
	same := err == nil && h == n.peersHash
	// A new content is applied once two polls in a row read it: an edit
	// caught half-written (an editor truncates, then writes) parses as
	// fewer peers and must not cut them off.
	settling := err == nil && !same && h != n.peersSeen
	n.peersSeen = h
	n.mu.Unlock()
	if same || settling {
		return
	}
	old := n.mesh.PeerList()
	if err == nil {
		err = n.mesh.SetPeers(peers)
	}
	if err == nil {
		n.auditPeers(old, peers, "peers-file")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w (keeping the previous peers)", err)
		if n.peersErr == nil || n.peersErr.Error() != err.Error() {
			n.logf("node: %v", err)
		}
		n.peersErr = err
		return
	}
	n.peersHash, n.peersErr = h, nil
	n.logf("node: peers file reloaded: %d peers", len(peers))
}

// auditPeers records who joined and left this node's mesh.
func (n *Node) auditPeers(old, cur []mesh.Peer, actor string) {
	was := map[keys.NodePublic]bool{}
	for _, p := range old {
		was[p.PublicKey] = true
	}
	is := map[keys.NodePublic]bool{}
	for _, p := range cur {
		is[p.PublicKey] = true
		if !was[p.PublicKey] {
			n.auditEvent(audit.Event{Actor: actor, Action: "peer-add", Object: p.Name + " " + p.PublicKey.String(), Decision: audit.Allow})
		}
	}
	for _, p := range old {
		if !is[p.PublicKey] {
			n.auditEvent(audit.Event{Actor: actor, Action: "peer-remove", Object: p.Name + " " + p.PublicKey.String()})
		}
	}
}
