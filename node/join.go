package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Joining. A new node cannot reach anyone inside the mesh, since nobody has
// its key yet, so it hands its redeem to a datacenter over the underlay: TCP
// on the datacenter's listen address (the port number WireGuard uses for
// UDP). The redeem carries no secret, only a proof that binds the joining
// node's key, so the channel needs no encryption: someone who copies it can
// only admit the same key. The datacenter accepts nothing but redeems, and
// its leader dry-runs each one (vet) before it enters the log.

const (
	joinMaxRequest = policy.MaxEnvelope
	joinTimeout    = 15 * time.Second
	joinMaxConns   = 4
	// joinAnswerMargin: the datacenter gives up committing a redeem this
	// long before the joiner gives up waiting, so the joiner hears how it
	// ended (if it stopped listening first and asked the next datacenter,
	// a redeem that did commit would look like a spent invite).
	joinAnswerMargin = 3 * time.Second
)

// joinFile records, on a joining node, whom to contact until the policy
// names its peers.
const joinFile = "join.json"

type joinInfo struct {
	Datacenters []TokenPeer `json:"datacenters"`
	Voters      []TokenPeer `json:"voters,omitempty"` // the token's other voters
	Role        string      `json:"role,omitempty"`   // what the invite made this node
}

// isStoreJoin reports whether dir joined as a store: such a node records
// from its first start, before its replica names its role.
func isStoreJoin(dir string) bool { return joinedAs(dir) == policy.RoleStore }

// joinedAs is the role this directory's node joined with, if it joined.
func joinedAs(dir string) policy.NodeRole {
	b, err := os.ReadFile(filepath.Join(dir, joinFile))
	if err != nil {
		return ""
	}
	var ji joinInfo
	if json.Unmarshal(b, &ji) != nil {
		return ""
	}
	return policy.NodeRole(ji.Role)
}

type joinServer struct {
	ln  net.Listener
	wg  sync.WaitGroup
	sem chan struct{}
}

func startJoinServer(n *Node, listen netip.AddrPort) (*joinServer, error) {
	ln, err := net.Listen("tcp", listen.String())
	if err != nil {
		return nil, fmt.Errorf("node: join service on TCP %s: %w", listen, err)
	}
	js := &joinServer{ln: ln, sem: make(chan struct{}, joinMaxConns)}
	js.wg.Add(1)
	go func() {
		defer js.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case js.sem <- struct{}{}:
			default:
				c.Close() // busy: the joiner retries
				continue
			}
			js.wg.Add(1)
			go func() {
				defer js.wg.Done()
				defer func() { <-js.sem }()
				n.serveJoin(c)
			}()
		}
	}()
	return js, nil
}

func (js *joinServer) close() {
	js.ln.Close()
	js.wg.Wait()
}

func (n *Node) serveJoin(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(joinTimeout))
	b, err := io.ReadAll(io.LimitReader(c, joinMaxRequest+1))
	res := ApplyResult{}
	defer func() { json.NewEncoder(c).Encode(res) }()
	if err != nil || len(b) > joinMaxRequest {
		res.Reason = "join request unreadable or too large"
		return
	}
	env, err := policy.DecodeEnvelope(b)
	var cmd *policy.Command
	if err == nil {
		cmd, err = policy.DecodeCommand(env.Body)
	}
	if err == nil && cmd.Kind != policy.KindRedeemInvite {
		err = errors.New("the join service takes only invite redeems")
	}
	if err != nil {
		res.Reason = err.Error()
		n.auditEvent(audit.Event{Actor: c.RemoteAddr().String(), Action: "join", Decision: audit.Deny, Reason: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout-joinAnswerMargin)
	defer cancel()
	res, err = n.Submit(ctx, env)
	if err != nil {
		res.Reason = err.Error()
	}
	d := audit.Allow
	if !res.Applied {
		d = audit.Deny
	}
	n.auditEvent(audit.Event{Actor: cmd.Redeem.PublicKey, Action: "join", Object: "invite " + cmd.Redeem.Invite, Decision: d, Reason: res.Reason})
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
	if fed, _ := FederationOf(cfg.Dir); fed != "" {
		return ApplyResult{}, fmt.Errorf("node: %s already belongs to federation %q", cfg.Dir, fed)
	}
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(cfg.Dir))
	if err != nil {
		return ApplyResult{}, fmt.Errorf("node: %w", err)
	}
	pub := priv.Public()
	priv.Zero()
	var custodian []byte
	if t.Role == string(policy.RoleDatacenter) {
		if custodian, err = makeCustodianKey(cfg.Dir, cfg.Name); err != nil {
			return ApplyResult{}, err
		}
	}
	env, err := t.Redeem(pub, cfg.Listen.String(), custodian, time.Now())
	if err != nil {
		return ApplyResult{}, err
	}
	var res ApplyResult
	var lastErr error
	for _, dc := range t.Datacenters {
		res, lastErr = sendJoin(ctx, dc.Endpoint, env)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return ApplyResult{}, fmt.Errorf("node: no datacenter took the join: %w", lastErr)
	}
	if !res.Applied {
		return res, nil
	}
	jb, _ := json.Marshal(joinInfo{Datacenters: t.Datacenters, Voters: t.Voters, Role: t.Role})
	if err := os.WriteFile(filepath.Join(cfg.Dir, joinFile), jb, 0o600); err != nil {
		return res, err
	}
	ab, _ := json.Marshal(t.Anchor)
	return res, os.WriteFile(filepath.Join(cfg.Dir, federationFile), ab, 0o600)
}

func sendJoin(ctx context.Context, endpoint string, env policy.Envelope) (ApplyResult, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return ApplyResult{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(env.Marshal()); err != nil {
		return ApplyResult{}, err
	}
	c.(*net.TCPConn).CloseWrite()
	var res ApplyResult
	if err := json.NewDecoder(io.LimitReader(c, 64<<10)).Decode(&res); err != nil {
		return ApplyResult{}, fmt.Errorf("join answer from %s: %w", endpoint, err)
	}
	return res, nil
}

// readSeed returns whom a node talks to until its policy replica names its
// peers: the peers it last had (lastPeersFile), else the datacenters and
// other voters its join token named. A restarted node's replica is empty
// until a leader tells it the commit index (Raft restores the state machine
// only from a snapshot and replays the log only once it knows what is
// committed); with no peers meanwhile it could reach no leader, and a
// founding datacenter, which has no token, would be cut off for good.
func readSeed(dir string) ([]mesh.Peer, error) {
	if last, err := readLastPeers(dir); err != nil {
		return nil, err
	} else if len(last) > 0 {
		return last, nil
	}
	return readTokenSeed(dir)
}

// lastPeersFile holds the mesh peers a node's policy last gave it.
const lastPeersFile = "last-peers.json"

type lastPeer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint,omitempty"`
}

func readLastPeers(dir string) ([]mesh.Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, lastPeersFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var list []lastPeer
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("node: %s is damaged (delete it; the node then starts from its join token)", lastPeersFile)
	}
	var out []mesh.Peer
	for _, p := range list {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// writeLastPeers records peers (temporary file, fsync, rename) when they
// differ from what the file holds.
func writeLastPeers(dir string, peers []mesh.Peer) error {
	list := make([]lastPeer, 0, len(peers))
	for _, p := range peers {
		lp := lastPeer{Name: p.Name, PublicKey: p.PublicKey.String()}
		if p.Endpoint.IsValid() {
			lp.Endpoint = p.Endpoint.String()
		}
		list = append(list, lp)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, lastPeersFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	tmp, err := os.CreateTemp(dir, ".last-peers-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// readTokenSeed returns the datacenters and other voters a joined node's
// token named.
func readTokenSeed(dir string) ([]mesh.Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, joinFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ji joinInfo
	if err := json.Unmarshal(b, &ji); err != nil {
		return nil, fmt.Errorf("node: %s is damaged", joinFile)
	}
	var out []mesh.Peer
	for _, p := range append(ji.Datacenters, ji.Voters...) {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// raftMembers keeps, on the leader, the Raft configuration equal to the
// policy: live datacenters and witnesses vote; live stores, admin nodes and
// installers (inside their window: they need the policy to know their
// peers) replicate as non-voters; anyone else is removed. It runs on every policy change and when this node becomes leader.
func (n *Node) raftMembers() {
	defer n.wg.Done()
	leader := false
	for {
		changed := n.policy.Changed()
		if leader {
			n.reconcileRaft()
		}
		select {
		case <-n.stop:
			return
		case l := <-n.raft.LeaderCh():
			leader = l
		case <-changed:
		case <-time.After(n.raftRecheck()):
		}
	}
}

// raftRecheck is how soon raftMembers looks again: soon while a future voter
// waits for promotion.
func (n *Node) raftRecheck() time.Duration {
	if len(n.stagedSince) > 0 {
		return time.Second
	}
	return maxReconcileWait
}

// promoteAfter is how long a future voter replicates as a non-voter, and
// is seen alive by gossip, before it gets a vote.
const promoteAfter = 3 * time.Second

func (n *Node) reconcileRaft() {
	st := n.policy.State()
	now := time.Now()
	want := map[string]consensus.Server{}
	voter := map[string]bool{}
	for name, pn := range st.Nodes {
		if !policy.Member(st, name, now) {
			continue
		}
		pub, err := keys.ParseNodePublic(pn.PublicKey)
		if err != nil {
			continue
		}
		want[pn.PublicKey] = consensus.Server{ID: pn.PublicKey, Addr: netip.AddrPortFrom(n.mesh.AddrOf(pub), RaftPort)}
		voter[pn.PublicKey] = pn.Role == policy.RoleDatacenter || pn.Role == policy.RoleWitness
	}
	cur := n.raft.Status()
	have := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range cur.Members {
		have[m.ID] = m.Voter
		if _, ok := want[m.ID]; !ok && m.ID != cur.ID {
			if err := n.raft.Remove(ctx, m.ID); err != nil {
				n.logf("node: raft: remove %s: %v", m.ID, err)
			}
		}
	}
	live := map[netip.Addr]bool{}
	if ps, err := n.mesh.Status(); err == nil {
		for _, p := range ps {
			live[p.Addr] = p.Liveness == "alive"
		}
	}
	for id, s := range want {
		isVoter, present := have[id]
		if present && isVoter == voter[id] {
			delete(n.stagedSince, id)
			continue
		}
		var err error
		switch {
		case !present:
			// Every server starts as a non-voter: a voter that cannot be
			// reached yet would cost the cluster its quorum (with one voter,
			// the leader would step down at once).
			err = n.raft.AddNonvoter(ctx, s)
			if voter[id] {
				n.stagedSince[id] = time.Now()
			}
		case voter[id]:
			// Promote once it has replicated for a while and gossip sees it.
			since, ok := n.stagedSince[id]
			if !ok {
				n.stagedSince[id] = time.Now()
				continue
			}
			if time.Since(since) < promoteAfter || !live[s.Addr.Addr()] {
				continue
			}
			err = n.raft.AddVoter(ctx, s)
		default:
			err = n.raft.AddNonvoter(ctx, s) // demotion
		}
		if err != nil {
			n.logf("node: raft: add %s: %v", id, err)
		}
	}
}
