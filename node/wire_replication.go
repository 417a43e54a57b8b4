package node

// The glue between the node and node/replication: the room's Deps made of
// the node's policy, journal, naming and dialling, and the handlers the
// service registers.

import (
	"context"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

const (
	opReplicate    = replication.OpReplicate
	opReplicateGet = replication.OpReplicateGet
)

// replicationDeps is what both sides of replication take from n.
func replicationDeps(n *Node) replication.Deps {
	return replication.Deps{
		Name:   n.cfg.Name,
		Policy: n.policy,
		Self:   n.selfName,
		Audit:  n.auditEvent,
		Logf:   n.logf,
		Now:    n.now,
	}
}

// newReplSource is a store's side; it reads the recordings once the
// recorders run (n.rec).
func newReplSource(n *Node, cfg replication.Config) *replication.Source {
	return replication.NewSource(cfg, replication.SourceDeps{
		Deps: replicationDeps(n),
		Media: func() *store.Store {
			if n.rec == nil {
				return nil
			}
			return n.rec.Store()
		},
		Journal: n.audit,
		Caller:  n.callerName,
		Outside: func(dc string, why error) { n.draftBreach(policy.EventReplicaJurisdiction, dc, why.Error()) },
	})
}

// startReplicas opens the datacenter's media store and runs its pullers.
func startReplicas(n *Node, cfg replication.Config) (*replication.Replicas, error) {
	st, err := openMedia(n, "replicas", store.Options{Blobs: n.cfg.ReplicaBlobs})
	if err != nil {
		return nil, err
	}
	return replication.StartReplicas(st, cfg, replication.ReplicaDeps{
		Deps:     replicationDeps(n),
		AuditDir: filepath.Join(n.cfg.Dir, "replicas", "audit"),
		Dial:     n.dialNode,
		Follow: func(stop <-chan struct{}, retainEvery time.Duration, retain, reconcile func()) {
			followPolicy(n, stop, nil, retainEvery, retain, reconcile)
		},
		Retain: func(s *store.Store) { retainStore(n, s) },
		AuditKeep: func(st *policy.State) time.Duration {
			return max(st.AuditKeep(), n.cfg.AuditRetention)
		},
		AuditBroken: func(name string, err error) { n.draftBreach(policy.EventAuditChain, name, err.Error()) },
	}), nil
}

// handleReplicate serves a datacenter's pull; a node that is not a store
// (n.repl nil) refuses it.
func (n *Node) handleReplicate(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	return n.repl.HandleReplicate(ctx, peer, body, w)
}

// handleReplicateGet serves one segment a datacenter's pull named.
func (n *Node) handleReplicateGet(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	return n.repl.HandleReplicateGet(ctx, peer, body, w)
}
