package node

// The node service: the rpc ops (node/rpc) every federation node serves on
// its mesh address at ServicePort over authenticated QUIC. Only live
// members of the local policy get a connection (admitService), and every
// op checks again, per request, who asks and for what (node/release's
// store.go and datacenter.go): deny by default.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// ServicePort is the mesh UDP port of the node service (QUIC).
const ServicePort = 7001

// service is the running node service and what its clients share.
type service struct {
	ln  *mesh.QUICListener
	rpc *rpc.Server
	wg  chan error // serve's result
	// ctx ends when the node starts closing: exports and calls made on
	// behalf of the local API stop with it.
	ctx    context.Context
	cancel context.CancelFunc
}

// startService listens on ServicePort and serves the ops.
func startService(n *Node, port uint16) (*service, error) {
	ln, err := n.mesh.ListenQUIC(port, mesh.QUICConfig{Admit: n.admitService})
	if err != nil {
		return nil, fmt.Errorf("node: service: %w", err)
	}
	s := &service{ln: ln, rpc: rpc.NewServer(n.logf), wg: make(chan error, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rpc.Handle(release.OpEpochs, n.rel.HandleEpochs)
	s.rpc.Handle(release.OpSegments, n.rel.HandleSegments)
	s.rpc.Handle(release.OpRelease, n.rel.HandleRelease)
	s.rpc.Handle(opReplicate, n.handleReplicate)
	s.rpc.Handle(opReplicateGet, n.handleReplicateGet)
	s.rpc.Handle(live.Op, n.liveServer().Handle)
	s.rpc.Handle(opRevoked, n.handleRevoked)
	s.rpc.Handle(erasure.OpReceipt, n.handleErasureReceipt)
	s.rpc.Handle(auditquery.Op, n.handleAuditQuery)
	s.rpc.Handle(opAuditAlerts, n.handleAuditAlerts)
	s.rpc.Handle(opVersion, n.handleVersion)
	s.rpc.Handle(opTime, n.handleTime)
	go func() { s.wg <- s.rpc.Serve(ln) }()
	return s, nil
}

// stopClients cancels what runs on behalf of local callers (exports).
func (s *service) stopClients() { s.cancel() }

// close stops serving: handlers first, then the listener.
func (s *service) close() {
	s.cancel()
	s.rpc.Close()
	s.ln.Close()
	<-s.wg
}

// admitService lets a peer connect only if its key is a live member of the
// policy this node holds now. Fail closed: no policy, no member. (A node
// that is no member itself still admits members, to hear its revocation
// notice; callerName refuses them every op.) While the replica catches up
// (a datacenter pulls from a store that just joined), the refusal is
// expected and passing (mesh.ErrNotYet): the peer retries.
func (n *Node) admitService(peer keys.NodePublic) error {
	st := n.policy.State()
	name := st.NameOfKey(peer.String())
	if name == "" && membership.CatchingUp(st, n.mesh.PublicKey().String()) {
		return fmt.Errorf("%w: %s: the policy replica is still catching up", mesh.ErrNotYet, peer.ShortString())
	}
	if name == "" {
		return fmt.Errorf("%s is no member of the policy", peer.ShortString())
	}
	if !policy.Member(st, name, n.now()) {
		return fmt.Errorf("node %q is not a live member", name)
	}
	return nil
}

// callerName is the live member peer is, or an rpc denial; a node that is
// no live member itself denies everyone. Every op that serves footage, a
// stream, a key or a replica asks it first.
func (n *Node) callerName(st *policy.State, peer keys.NodePublic) (string, error) {
	if err := n.notServing(st, n.now()); err != nil {
		return "", &rpc.Error{Code: rpc.Denied, Message: err.Error()}
	}
	name := st.NameOfKey(peer.String())
	if name == "" || !policy.Member(st, name, n.now()) {
		return "", &rpc.Error{Code: rpc.Denied, Message: "you are not a live member of the federation"}
	}
	return name, nil
}

// selfName is this node's name in the policy st (found by key).
func (n *Node) selfName(st *policy.State) string {
	return st.NameOfKey(n.mesh.PublicKey().String())
}

// syncPolicy makes the local replica at least as new as the leader's
// commit index (a linearizable read): an approval or revocation committed
// anywhere is seen before anything is served or released on its strength.
func (n *Node) syncPolicy(ctx context.Context) (*policy.State, error) {
	if n.raft == nil {
		return nil, errors.New("this node runs from a static peers file, not a replicated policy")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.raft.Sync(ctx); err != nil {
		return nil, fmt.Errorf("cannot confirm the policy is current (no quorum?): %w", err)
	}
	return n.policy.State(), nil
}

// dialNode opens a service connection to the live member name.
func (n *Node) dialNode(ctx context.Context, st *policy.State, name string) (*mesh.QUICConn, error) {
	nd := st.Nodes[name]
	if nd == nil || !policy.Member(st, name, n.now()) {
		return nil, fmt.Errorf("node %q is not a live member", name)
	}
	pub, err := keys.ParseNodePublic(nd.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	addr := netip.AddrPortFrom(n.mesh.AddrOf(pub), ServicePort)
	return n.dialReach(ctx, name, pub, func(ctx context.Context) (*mesh.QUICConn, error) {
		return n.mesh.DialQUIC(ctx, addr, mesh.QUICConfig{Admit: func(got keys.NodePublic) error {
			if got != pub {
				return fmt.Errorf("expected %s, reached %s", name, got.ShortString())
			}
			return nil
		}})
	})
}

// auditServe records a serve decision: allow with what went out, or deny
// with why.
func (n *Node) auditServe(actor, action, object string, err error, detail string) {
	e := audit.Event{Actor: actor, Action: action, Object: object, Decision: audit.Allow, Reason: detail}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	n.auditEvent(e)
}

// callNode opens op with body q (JSON) on node target; the caller closes
// the reader and the connection.
func (n *Node) callNode(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, *mesh.QUICConn, error) {
	conn, err := n.dialNode(ctx, st, target)
	if err != nil {
		return nil, nil, err
	}
	rd, err := rpc.CallJSON(ctx, conn, op, q)
	if err != nil {
		return nil, nil, err
	}
	return rd, conn, nil
}
