package node

// This node's own standing in its federation, as far as it can know it:
// for custos status, and to stop recording and serving once it is no
// longer a member. What a node can know of itself is limited (see
// revocation.go): its replica and its own clock say when its window
// ended; a revocation reaches it through Raft, or as a notice a peer hands
// it while cutting it off; a node that heard neither can only see that no
// peer answers any more, and says that, not more.

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// Standings of a node, as Membership.State says them.
const (
	StandingMember  = "member"
	StandingRevoked = "revoked"
	StandingExpired = "expired" // its membership window ended
	StandingNotYet  = "not-yet" // its membership window has not opened
	StandingCutOff  = "cut-off" // a member by its replica, but no peer answers
	StandingWaiting = "waiting" // its replica holds no policy naming it yet
)

// cutOffAfter is how long a node hears from no leader and sees no peer
// alive before its status calls it cut off.
const cutOffAfter = 15 * time.Second

// Membership is this node's standing in its federation, for custos status.
type Membership struct {
	State string `json:"state"`
	// At is when it was revoked, when its window ended (or opens), or
	// since when it is cut off.
	At time.Time `json:"at,omitzero"`
	// By signed the revocation (of a quorum proposal: its proposer).
	By string `json:"by,omitempty"`
	// Source says how a revoked node knows: "policy" (its replica applied
	// the revocation) or "notice" (a peer handed it the signed revocation
	// while cutting it off; Via names the peer, Learned says when).
	Source  string    `json:"source,omitempty"`
	Via     string    `json:"via,omitempty"`
	Learned time.Time `json:"learned,omitzero"`
	// Detail is the sentence custos status prints.
	Detail string `json:"detail"`
}

// standingInput is what a node's standing is made of.
type standingInput struct {
	federation string
	st         *policy.State
	self       string // this node's name in st, "" if absent
	now        time.Time
	notice     *revocationNotice // a checked notice of its revocation, or nil
	raft       *consensus.Status // nil without consensus
	peers      []mesh.PeerStatus // the mesh's peers and gossip's view of them
	started    time.Time         // when this node started
}

// stoppedTail ends the sentence of a node that no longer records or serves.
const stoppedTail = "it no longer records or serves: its recorders stopped (what it recorded stays on its disk) and it serves no live view, " +
	"segments or replication to anyone. Every other node dropped it from the mesh at once, so footage the datacenters had not " +
	"replicated by then stays on this disk only"

// standing says where the node stands; see Membership.
func standing(in standingInput) Membership {
	fed := in.federation
	var me *policy.Node
	if in.st != nil {
		me = in.st.Nodes[in.self]
	}
	switch {
	case me != nil && me.Revoked:
		return Membership{State: StandingRevoked, At: me.RevokedAt, By: me.RevokedBy, Source: "policy",
			Detail: fmt.Sprintf("this node was revoked from federation %s at %s by %s; %s", fed, rfc3339(me.RevokedAt), me.RevokedBy, stoppedTail)}
	case in.notice != nil && in.notice.Via == "":
		rn := in.notice
		return Membership{State: StandingRevoked, At: rn.At, By: rn.By, Source: "policy", Learned: rn.Learned,
			Detail: fmt.Sprintf("this node was revoked from federation %s at %s by %s (its replica applied the revocation at %s); %s",
				fed, rfc3339(rn.At), rn.By, rfc3339(rn.Learned), stoppedTail)}
	case in.notice != nil:
		rn := in.notice
		return Membership{State: StandingRevoked, At: rn.At, By: rn.By, Source: "notice", Via: rn.Via, Learned: rn.Learned,
			Detail: fmt.Sprintf("this node was revoked from federation %s at %s by %s (%s handed it the signed revocation at %s while cutting it off, "+
				"and it checked the signature against its own policy; the commit itself never reached it); %s",
				fed, rfc3339(rn.At), rn.By, rn.Via, rfc3339(rn.Learned), stoppedTail)}
	case me == nil:
		return Membership{State: StandingWaiting, Detail: "this node's replica holds no policy naming it yet: it waits for the log"}
	case !me.Window.Until.IsZero() && !in.now.Before(me.Window.Until):
		return Membership{State: StandingExpired, At: me.Window.Until,
			Detail: fmt.Sprintf("this node's membership window in federation %s ended at %s; %s", fed, rfc3339(me.Window.Until), stoppedTail)}
	case !me.Window.From.IsZero() && in.now.Before(me.Window.From):
		return Membership{State: StandingNotYet, At: me.Window.From,
			Detail: fmt.Sprintf("this node's membership window in federation %s opens at %s; until then it records and serves nothing", fed, rfc3339(me.Window.From))}
	}
	if since, cut := cutOff(in); cut {
		return Membership{State: StandingCutOff, At: since,
			Detail: fmt.Sprintf("cut off by every peer since %s: no leader heard from and no peer answers; possibly revoked (a revocation whose news "+
				"never reached this node looks the same as a network failure), or the network is down. It keeps recording and enforcing the "+
				"last policy it holds", rfc3339(since))}
	}
	return Membership{State: StandingMember, Detail: fmt.Sprintf("a member of federation %s", fed)}
}

// cutOff reports whether the node heard from no leader for cutOffAfter and
// gossip sees no peer alive, and since when.
func cutOff(in standingInput) (time.Time, bool) {
	if in.raft == nil || in.raft.Role == consensus.Leader {
		return time.Time{}, false
	}
	for _, p := range in.peers {
		if p.Liveness == "alive" {
			return time.Time{}, false
		}
	}
	since := in.raft.LastContact
	if since.IsZero() {
		since = in.started
	}
	return since, in.now.Sub(since) >= cutOffAfter
}

// notServing is why this node must not record or serve now, or nil: it
// is no live member by its own policy and clock, or a peer handed it its
// revocation. A node whose replica does not name it yet is left to the
// checks that find no one there.
func (n *Node) notServing(st *policy.State, now time.Time) error {
	if rn := n.revoked.Load(); rn != nil {
		return fmt.Errorf("this node was revoked at %s by %s; it no longer records or serves", rfc3339(rn.At), rn.By)
	}
	if n.policy != nil {
		if s := n.policy.Stalled(); s != nil {
			return fmt.Errorf("this node serves nothing: %v", s)
		}
	}
	if st == nil {
		return nil
	}
	self := n.selfName(st)
	if self == "" || policy.Member(st, self, now) {
		return nil
	}
	if me := st.Nodes[self]; me.Revoked {
		return fmt.Errorf("this node was revoked at %s by %s; it no longer records or serves", rfc3339(me.RevokedAt), me.RevokedBy)
	}
	return errors.New("this node's membership window is closed; it no longer records or serves")
}

// membership is the node's standing now, for status.
func (n *Node) membership(raft *consensus.Status, peers []mesh.PeerStatus) *Membership {
	if n.policy == nil {
		return nil
	}
	st := n.policy.State()
	m := standing(standingInput{federation: n.cfg.Federation, st: st, self: n.selfName(st), now: n.now(), notice: n.revoked.Load(),
		raft: raft, peers: peers, started: n.started})
	return &m
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
