package node

// The glue between the node and node/release: the node's policy, peers,
// audit journal and footage as the release service's interfaces, and the
// node's methods the local API and the tests call.

import (
	"context"
	"path/filepath"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// newRelease makes the node's release service. Its interfaces read the
// node's parts when called: the policy, the recordings and the replicas
// start after it.
func newRelease(n *Node) *release.Service {
	w := releaseWire{n}
	return release.New(release.Config{Name: n.cfg.Name, CustodianKey: CustodianKeyPath(n.cfg.Dir), Logf: n.logf, Corrupt: &n.corruptSegments,
		Exported: filepath.Join(n.cfg.Dir, exportedFile)},
		release.Deps{Policy: w, Peers: w, Audit: w, Holdings: w, Keys: n.relKeys, Now: n.now, Fresh: n.clockFresh})
}

// exportedFile, in the data directory, lists the exports this node made
// (release/exported.go).
const exportedFile = "exported.json"

// Exported lists the exports this node made, oldest first: a request's
// one-time key served one of them and was wiped.
func (n *Node) Exported() []release.Exported { return n.rel.Exported() }

// releaseWire is the node as release.Policy, release.Peers,
// release.Auditor and release.Holdings.
type releaseWire struct{ n *Node }

func (w releaseWire) State() *policy.State     { return w.n.policy.State() }
func (w releaseWire) Changed() <-chan struct{} { return w.n.policy.Changed() }
func (w releaseWire) Sync(ctx context.Context) (*policy.State, error) {
	return w.n.syncPolicy(ctx)
}

func (w releaseWire) Caller(st *policy.State, peer keys.NodePublic) (string, error) {
	return w.n.callerName(st, peer)
}
func (w releaseWire) Self(st *policy.State) string { return w.n.selfName(st) }
func (w releaseWire) Dial(ctx context.Context, st *policy.State, name string) (*mesh.QUICConn, error) {
	return w.n.dialNode(ctx, st, name)
}
func (w releaseWire) Call(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, *mesh.QUICConn, error) {
	return w.n.callNode(ctx, st, target, op, q)
}

func (w releaseWire) Event(e audit.Event) { w.n.auditEvent(e) }
func (w releaseWire) Serve(actor, action, object string, err error, detail string) {
	w.n.auditServe(actor, action, object, err, detail)
}
func (w releaseWire) Ready(actor, action, object string) error {
	return w.n.auditReady(actor, action, object)
}

// Served is the store of encrypted recordings this node serves: a store's
// own, or a datacenter's replicas (playback when the store is offline).
func (w releaseWire) Served() release.Media {
	switch {
	case w.n.rec != nil:
		return w.n.rec.Store()
	case w.n.replicas != nil:
		return w.n.replicas.Store()
	}
	return nil
}

func (w releaseWire) Replicas() release.Media {
	if w.n.replicas == nil {
		return nil
	}
	return w.n.replicas.Store()
}

// Export runs an export; a policy refusal comes back as Refused.
func (n *Node) Export(ctx context.Context, req release.ExportRequest) (release.ExportResult, error) {
	if n.svc == nil {
		return release.ExportResult{}, release.ErrNoPolicy
	}
	return n.rel.Export(ctx, n.svc.ctx, req)
}

// RecoverRecords returns the segments of request id's scope for the
// recovery key to answer for (release.Service.RecoverRecords).
func (n *Node) RecoverRecords(ctx context.Context, id string) ([][]byte, error) {
	if n.svc == nil {
		return nil, release.ErrNoPolicy
	}
	return n.rel.RecoverRecords(ctx, n.svc.ctx, id)
}

// AddRecoveredShares keeps the recovery key's answers sealed to request
// id's one-time key, for its export (release.Service.AddRecoveredShares).
func (n *Node) AddRecoveredShares(id string, sealed [][]byte) (int, error) {
	if n.policy == nil {
		return 0, release.ErrNoPolicy
	}
	return n.rel.AddRecoveredShares(id, sealed)
}

// NewReleaseKey makes a one-time release key in this node's memory and
// returns its public half (hex), for a request to carry.
func (n *Node) NewReleaseKey() (string, error) {
	if n.policy == nil {
		return "", release.ErrNoPolicy
	}
	return n.rel.NewKey()
}

// HeldReleaseKeys is how many one-time release keys the node holds in
// memory (each is wiped once used, expired or the node stops).
func (n *Node) HeldReleaseKeys() int { return n.relKeys.Count() }

// sweepReleaseKeys runs the release keys' sweep until the node stops.
func (n *Node) sweepReleaseKeys() {
	defer n.wg.Done()
	n.rel.SweepKeys(n.stop)
}
