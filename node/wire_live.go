package node

// The glue between the node and node/live: the store's live server and the
// viewer's side, made of the node's policy, journal, recorders and service
// client.

import (
	"context"
	"io"

	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// liveAudit is the node's journal as live.Auditor.
type liveAudit struct{ n *Node }

func (a liveAudit) Event(e audit.Event) { a.n.auditEvent(e) }

func (a liveAudit) Ready(actor, action, object string) error {
	return a.n.auditReady(actor, action, object)
}

// liveStores is the node's service client as live.Stores.
type liveStores struct{ n *Node }

func (s liveStores) Call(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, live.Conn, error) {
	rd, conn, err := s.n.callNode(ctx, st, target, op, q)
	if err != nil {
		return nil, nil, err
	}
	return rd, conn, nil
}

// liveServer serves op "live"; a node that records nothing (n.rec nil,
// fixed before the service starts) serves no live view.
func (n *Node) liveServer() *live.Server {
	s := &live.Server{Policy: n.policy, Audit: liveAudit{n}, Caller: n.callerName, Sync: n.syncPolicy, Net: n.mesh,
		Cut: func() { n.cuts.live.Add(1) }, Now: n.now, Fresh: n.clockFresh}
	if n.rec != nil {
		s.Hubs = n.rec
	}
	return s
}

func (n *Node) liveViewer() *live.Viewer {
	return &live.Viewer{Policy: n.policy, Stores: liveStores{n}, Net: n.mesh}
}

// Live watches camera from its site's store and writes MPEG-TS to out until
// ctx ends (a nil error), the store ends the stream (Ended says why) or
// something fails.
func (n *Node) Live(ctx context.Context, camera string, out io.Writer, opts live.Options) (live.Result, error) {
	return n.liveViewer().Watch(ctx, camera, out, opts)
}
