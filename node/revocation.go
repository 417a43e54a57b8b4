package node

// Revocation notices. A revoked node would learn of its revocation through
// Raft only if the commit reached it before its peers cut it off, and they
// cut it off the moment they apply the revocation: the leader drops it from
// its mesh and its Raft conns before the next append could carry the
// commit, and refuses the last append raft makes to a removed server. In
// practice its replica stops an entry short, and it would go on recording.
//
// So a node that drops a peer from its mesh because the policy revoked it
// first hands that peer the signed command that did, over the node
// service, within noticeTimeout. The revoked node trusts the messenger for
// nothing: it applies the command to a copy of its own replica, which
// checks the signatures (a current admin's, or a quorum's, for this
// federation), refuses a replay, and must then show this node revoked.
// If so it stops recording and serving, journals it, and remembers it in
// DIR/revoked.json across restarts. A node that was offline when it was
// revoked hears nothing; its status then says only that every peer cut
// it off.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// opRevoked is the node-service op of a revocation notice: the body is
// the envelope of the command that revoked the callee.
const opRevoked = "revoked"

// noticeTimeout bounds how long a node delays cutting revoked peers off to
// hand them their notices (DESIGN §4 invariant 7 allows 2 s in all).
const noticeTimeout = 500 * time.Millisecond

// revokedFile, in the data directory, keeps a checked notice.
const revokedFile = "revoked.json"

// revocationKeep is how long a replica keeps the envelope that revoked a
// node, for the notice: the cut follows the apply within milliseconds.
const revocationKeep = time.Minute

// revocationNotice is this node's own revocation: one a peer handed it
// (Via names the peer) and it checked against its replica, or one its
// replica applied (Via empty), kept so that a restart, whose replica is
// empty until a leader names the commit index, still knows it.
type revocationNotice struct {
	NodeKey  string    `json:"node_key"` // this node's key, when it learned it
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Via      string    `json:"via,omitempty"`
	Learned  time.Time `json:"learned"`
	Envelope []byte    `json:"envelope"`
}

// revocations keeps, briefly, the envelope of each command this replica
// applied that revoked a node, by the node's name.
type revocations struct {
	mu  sync.Mutex // also held across each Apply (see noticingFSM)
	env map[string]keptEnvelope
}

type keptEnvelope struct {
	b  []byte
	at time.Time
}

func newRevocations() *revocations { return &revocations{env: map[string]keptEnvelope{}} }

// get returns the envelope that revoked name, or nil. It waits for an
// Apply in progress, so a caller that saw the revocation in the state
// finds its envelope.
func (r *revocations) get(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.env[name].b
}

// noticingFSM is the policy's state machine as consensus drives it: the
// policy store, keeping the envelopes that revoke nodes, and telling the
// node when its replica revokes the node itself.
type noticingFSM struct {
	*policystore.Store
	rev *revocations
	n   *Node
}

func (f noticingFSM) Apply(cmd []byte, index uint64) ([]byte, error) {
	f.rev.mu.Lock()
	defer f.rev.mu.Unlock()
	before := f.Store.State()
	out, err := f.Store.Apply(cmd, index)
	after := f.Store.State()
	if after == before {
		return out, err
	}
	now := time.Now()
	for name, kept := range f.rev.env {
		if now.Sub(kept.at) > revocationKeep {
			delete(f.rev.env, name)
		}
	}
	self := f.n.selfName(after)
	for name, nd := range after.Nodes {
		if old := before.Nodes[name]; nd.Revoked && old != nil && !old.Revoked {
			f.rev.env[name] = keptEnvelope{b: cmd, at: now}
			if name == self {
				f.n.selfRevokedAt.Store(now.UnixNano())
				rn := &revocationNotice{NodeKey: f.n.mesh.PublicKey().String(), At: nd.RevokedAt, By: nd.RevokedBy, Learned: now.UTC(), Envelope: cmd}
				go f.n.learnRevoked(rn) // it writes a file: off Raft's apply path
			}
		}
	}
	return out, err
}

// cutRevoked sets this node's peers to next with apply, after handing
// the peers that leave because they were revoked their notices. On a node
// whose own replica revoked it less than noticeTimeout ago, apply waits
// out the rest of it: its peers drop it anyway, and one handing it its
// notice meanwhile would otherwise wait the whole noticeTimeout for an
// answer that can no longer come (the commit often reaches the revoked
// node while its peers dial it: they delay their cut for the notice).
func (n *Node) cutRevoked(next []mesh.Peer, apply func() error) error {
	n.tellRevoked(next)
	if at := n.selfRevokedAt.Load(); at != 0 {
		if wait := time.Until(time.Unix(0, at).Add(noticeTimeout)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-n.stop:
				t.Stop()
			}
		}
	}
	return apply()
}

// tellRevoked hands each peer that leaves this node's mesh now because the
// policy revoked it the envelope that did, before the mesh drops it; next
// is the peer set about to be applied.
func (n *Node) tellRevoked(next []mesh.Peer) {
	stay := map[keys.NodePublic]bool{}
	for _, p := range next {
		stay[p.PublicKey] = true
	}
	st := n.policy.State()
	type notice struct {
		name string
		pub  keys.NodePublic
		env  []byte
	}
	var todo []notice
	for _, p := range n.mesh.PeerList() {
		name := st.NameOfKey(p.PublicKey.String())
		if nd := st.Nodes[name]; stay[p.PublicKey] || nd == nil || !nd.Revoked {
			continue
		}
		if env := n.revs.get(name); env != nil {
			todo = append(todo, notice{name, p.PublicKey, env})
		}
	}
	if len(todo) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), noticeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range todo {
		wg.Go(func() {
			err := n.sendNotice(ctx, t.pub, t.env)
			e := audit.Event{Actor: n.cfg.Name, Action: "revocation-notice", Object: t.name, Decision: audit.Allow, Reason: "handed over before the cut"}
			if err != nil {
				e.Decision, e.Reason = audit.Deny, err.Error()
				n.logf("node: telling %s it was revoked: %v", t.name, err)
			}
			n.auditEvent(e)
		})
	}
	wg.Wait()
}

// sendNotice hands env to the node with key pub.
func (n *Node) sendNotice(ctx context.Context, pub keys.NodePublic, env []byte) error {
	addr := netip.AddrPortFrom(n.mesh.AddrOf(pub), ServicePort)
	c, err := n.mesh.DialQUIC(ctx, addr, mesh.QUICConfig{Admit: func(got keys.NodePublic) error {
		if got != pub {
			return fmt.Errorf("expected %s, reached %s", pub.ShortString(), got.ShortString())
		}
		return nil
	}})
	if err != nil {
		return err
	}
	defer c.Close()
	rd, err := rpc.Call(ctx, c, opRevoked, env)
	if err != nil {
		return err
	}
	return rd.Close()
}

// handleRevoked serves op "revoked": a live member hands this node the
// command that revoked it. It is believed only if it applies to this
// node's own replica and revokes this node there.
func (n *Node) handleRevoked(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	st := n.policy.State()
	from := st.NameOfKey(peer.String())
	if from == "" || !policy.Member(st, from, n.now()) {
		return rpc.Deny("you are not a live member of the federation")
	}
	self := n.selfName(st)
	if me := st.Nodes[self]; me != nil && me.Revoked || n.revoked.Load() != nil {
		return nil // known already
	}
	rn, err := checkRevocation(st, self, body)
	if err != nil {
		n.auditEvent(audit.Event{Actor: "node:" + from, Action: "revocation-notice", Object: self, Decision: audit.Deny, Reason: err.Error()})
		return rpc.Deny("%v", err)
	}
	rn.NodeKey, rn.Via, rn.Learned = n.mesh.PublicKey().String(), from, n.wallNow().UTC()
	n.learnRevoked(rn)
	return nil
}

// checkRevocation checks envelope b against st, the replica of node self:
// applied to a copy, it must be accepted (signatures, federation, no
// replay) and leave self revoked.
func checkRevocation(st *policy.State, self string, b []byte) (*revocationNotice, error) {
	me := st.Nodes[self]
	if me == nil {
		return nil, errors.New("this node is not in the policy it holds")
	}
	env, err := policy.DecodeEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("the revocation: %w", err)
	}
	dry := st.Clone()
	if _, err := dry.Apply(env); err != nil {
		return nil, fmt.Errorf("the revocation does not apply to this node's policy: %w", err)
	}
	nd := dry.Nodes[self]
	if nd == nil || !nd.Revoked {
		return nil, errors.New("the command handed over does not revoke this node")
	}
	return &revocationNotice{At: nd.RevokedAt, By: nd.RevokedBy, Envelope: b}, nil
}

// learnRevoked acts on a checked notice, once: it stops the recorders,
// journals it and keeps it for a restart.
func (n *Node) learnRevoked(rn *revocationNotice) {
	if !n.revoked.CompareAndSwap(nil, rn) {
		return
	}
	m := n.membership(nil, nil)
	n.logf("node: REVOKED: %s", m.Detail)
	actor := "policy"
	if rn.Via != "" {
		actor = "node:" + rn.Via
	}
	n.auditEvent(audit.Event{Actor: actor, Action: "revoked", Object: n.cfg.Name, Decision: audit.Deny, Reason: m.Detail})
	if b, err := json.Marshal(rn); err == nil {
		if err := os.WriteFile(filepath.Join(n.cfg.Dir, revokedFile), b, 0o600); err != nil {
			n.logf("node: remembering the revocation for a restart: %v", err)
		}
	}
	if n.rec != nil {
		n.rec.Nudge()
	}
}

// loadRevoked reads a notice this node checked before a restart; one made
// for another key (a directory re-keyed) is ignored.
func (n *Node) loadRevoked() error {
	b, err := os.ReadFile(filepath.Join(n.cfg.Dir, revokedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	var rn revocationNotice
	if err := json.Unmarshal(b, &rn); err != nil {
		return fmt.Errorf("node: %s is damaged: %v", filepath.Join(n.cfg.Dir, revokedFile), err)
	}
	if rn.NodeKey == n.mesh.PublicKey().String() {
		n.revoked.Store(&rn)
	}
	return nil
}
