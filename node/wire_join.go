package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/join"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Glue between the node and node/join: the node's public join API, which
// the room now implements, and the adapters of the node to the room's
// interfaces.

// The room bounds a command's time as the node does; this fails to compile
// if the two bounds differ.
const _ = uint64(maxClockSkew-join.MaxClockSkew) + uint64(join.MaxClockSkew-maxClockSkew)

// Token is a decoded join token (join.Token).
type Token = join.Token

// TokenPeer is a datacenter (or another voter) a joining node contacts.
type TokenPeer = join.TokenPeer

// InviteSpec says who may join.
type InviteSpec = join.InviteSpec

// InviteResult is a join token and, for a datacenter or witness in a
// sealed federation, the proposal that must be approved before it works.
type InviteResult = join.InviteResult

// ErrBadToken is wrapped by every token error.
var ErrBadToken = join.ErrBadToken

// ErrJoinRefused is wrapped when a joined node found its token's signer
// not to check out against the policy.
var ErrJoinRefused = join.ErrRefused

// EncodeToken signs a token with the admin's key.
func EncodeToken(t *Token, sign func(msg []byte) ([]byte, error)) (string, error) {
	return join.EncodeToken(t, sign)
}

// DecodeToken parses and checks a token (see join.DecodeToken).
func DecodeToken(s string, now time.Time) (*Token, error) { return join.DecodeToken(s, now) }

// MakeInvite records an invite in the policy through the node running in
// dir, signed by admin, and returns the join token (see join.MakeInvite).
func MakeInvite(ctx context.Context, dir string, admin *keys.AdminKey, signer string, spec InviteSpec, now time.Time) (InviteResult, error) {
	return join.MakeInvite(ctx, dir, localNode(dir), admin, signer, spec, now)
}

// PrepareJoin readies dir to join the federation of a token: the node key,
// the anchor, and the datacenters to contact. It then sends the redeem to
// the datacenters, one after another, until one takes it.
func PrepareJoin(ctx context.Context, cfg Config, t *Token) (ApplyResult, error) {
	if err := cfg.Validate(); err != nil {
		return ApplyResult{}, err
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return ApplyResult{}, err
	}
	if fed, err := FederationOf(cfg.Dir); err != nil {
		return ApplyResult{}, err
	} else if fed != "" {
		return ApplyResult{}, fmt.Errorf("node: %s already belongs to federation %q", cfg.Dir, fed)
	}
	// The policy will know the node by the token's name, whatever the
	// directory is called.
	if err := writeNodeName(cfg.Dir, t.Name); err != nil {
		return ApplyResult{}, err
	}
	res, err := join.Prepare(ctx, join.Joiner{Dir: cfg.Dir, Listen: cfg.Listen, KeyPath: KeyPath(cfg.Dir), FederationFile: federationFile,
		CustodianKey: func() ([]byte, error) { return makeCustodianKey(cfg.Dir, cfg.Name) }}, t)
	return res, err
}

// localNode is the node running in a directory, reached through its API
// socket, for MakeInvite.
type localNode string

func (d localNode) Anchor() (*policy.Anchor, error) {
	a, err := readAnchor(string(d))
	if a == nil {
		return nil, err
	}
	ja := *a
	return &ja, nil
}

func (d localNode) FetchPolicy(ctx context.Context) (*policy.State, error) {
	return FetchPolicy(ctx, string(d))
}

func (d localNode) SubmitGoverned(ctx context.Context, st *policy.State, k *keys.AdminKey, signer string, c *policy.Command) (policy.ApplyResult, string, error) {
	res, proposal, err := SubmitGoverned(ctx, string(d), st, k, signer, c)
	return res, proposal, err
}

// joinNode is the running node as the room sees it: its policy replica,
// its Submit, and its audit journal.
type joinNode struct{ n *Node }

func (j joinNode) State() *policy.State     { return j.n.policy.State() }
func (j joinNode) Changed() <-chan struct{} { return j.n.policy.Changed() }
func (j joinNode) Sync(ctx context.Context) (*policy.State, error) {
	return j.n.syncPolicy(ctx)
}

func (j joinNode) Submit(ctx context.Context, env policy.Envelope) (policy.ApplyResult, error) {
	res, err := j.n.Submit(ctx, env)
	return res, err
}

func (j joinNode) Event(e audit.Event) { j.n.auditEvent(e) }

// isStoreJoin reports whether dir joined as a store.
func isStoreJoin(dir string) bool { return join.IsStoreJoin(dir) }

// joinedAs is the role this directory's node joined with, if it joined.
func joinedAs(dir string) policy.NodeRole { return join.JoinedAs(dir) }

// readSeed returns whom a node talks to until its policy replica names its
// peers (see join.ReadSeed).
func readSeed(dir string) ([]mesh.Peer, error) { return join.ReadSeed(dir) }

// writeLastPeers records the peers the policy gave (see readSeed).
func writeLastPeers(dir string, peers []mesh.Peer) error { return join.WriteLastPeers(dir, peers) }

// joinWasRefused returns ErrJoinRefused, with the reason, for a directory
// whose join was undone.
func joinWasRefused(dir string) error { return join.WasRefused(dir) }

// startJoinServer starts a datacenter's join service on its listen address.
func startJoinServer(n *Node, listen netip.AddrPort, ln net.Listener) (*join.Server, error) {
	return join.StartServer(join.ServerConfig{Listen: listen, Listener: ln, Submit: joinNode{n}, Policy: joinNode{n}, Audit: joinNode{n}})
}

// startJoinCheck starts the check of a joined node's token against the
// policy, if it has not passed yet; a failed check stops the node.
func (n *Node) startJoinCheck() error {
	return join.StartCheck(join.CheckConfig{Dir: n.cfg.Dir, Name: n.cfg.Name, Self: n.mesh.PublicKey().String(),
		FederationFile: federationFile, Policy: joinNode{n}, Audit: joinNode{n}, Logf: n.logf, Fail: n.fail, Stop: n.stop,
		Go: func(f func()) {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				f()
			}()
		}})
}

// raftMembers keeps, on the leader, the Raft configuration equal to the
// policy (join.Voters), until the node stops.
func (n *Node) raftMembers() {
	defer n.wg.Done()
	v := &join.Voters{Policy: joinNode{n}, Raft: n.raft, Mesh: n.mesh, RaftPort: RaftPort, Recheck: maxReconcileWait, Logf: n.logf}
	v.Run(n.stop)
}
