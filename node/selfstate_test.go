package node

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// What a node says of its own standing, from its replica, its clock, a
// notice, Raft and gossip; it never claims a revocation it cannot know.
func TestStanding(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	state := func(me policy.Node) *policy.State {
		me.Name = "inst"
		return &policy.State{Federation: "acme", Nodes: map[string]*policy.Node{"inst": &me}}
	}
	follower := &consensus.Status{Role: consensus.Follower, LastContact: now.Add(-time.Second)}
	silent := &consensus.Status{Role: consensus.Follower, LastContact: now.Add(-time.Minute)}
	dead := []mesh.PeerStatus{{Name: "dc-a", Liveness: "dead"}, {Name: "dc-b", Liveness: "suspect"}}
	alive := []mesh.PeerStatus{{Name: "dc-a", Liveness: "dead"}, {Name: "dc-b", Liveness: "alive"}}
	notice := &revocationNotice{At: now.Add(-time.Hour), By: "alice", Via: "dc-b", Learned: now.Add(-59 * time.Minute)}
	for _, c := range []struct {
		name  string
		in    standingInput
		state string
		want  []string
	}{
		{"a member", standingInput{st: state(policy.Node{}), raft: follower, peers: dead}, StandingMember, []string{"a member of federation acme"}},
		{"revoked in its replica", standingInput{st: state(policy.Node{Revoked: true, RevokedAt: now.Add(-time.Hour), RevokedBy: "alice"}), raft: silent, peers: dead},
			StandingRevoked, []string{"this node was revoked from federation acme at 2026-12-05T11:00:00Z by alice; it no longer records or serves", "stays on this disk only"}},
		{"revoked by a notice", standingInput{st: state(policy.Node{}), notice: notice, raft: silent, peers: dead},
			StandingRevoked, []string{"revoked from federation acme at 2026-12-05T11:00:00Z by alice (dc-b handed it the signed revocation at 2026-12-05T11:01:00Z", "the commit itself never reached it"}},
		{"revoked before a restart", standingInput{st: &policy.State{}, notice: &revocationNotice{At: notice.At, By: "alice", Learned: notice.Learned}},
			StandingRevoked, []string{"by alice (its replica applied the revocation at 2026-12-05T11:01:00Z)"}},
		{"window ended", standingInput{st: state(policy.Node{Window: policy.Window{Until: now.Add(-time.Minute)}}), raft: silent, peers: dead},
			StandingExpired, []string{"this node's membership window in federation acme ended at 2026-12-05T11:59:00Z; it no longer records or serves"}},
		{"window ends now", standingInput{st: state(policy.Node{Window: policy.Window{Until: now}}), raft: follower, peers: alive},
			StandingExpired, []string{"ended at 2026-12-05T12:00:00Z"}},
		{"window not open", standingInput{st: state(policy.Node{Window: policy.Window{From: now.Add(time.Hour)}}), raft: follower, peers: alive},
			StandingNotYet, []string{"opens at 2026-12-05T13:00:00Z; until then it records and serves nothing"}},
		{"cut off", standingInput{st: state(policy.Node{}), raft: silent, peers: dead}, StandingCutOff,
			[]string{"cut off by every peer since 2026-12-05T11:59:00Z", "possibly revoked", "or the network is down", "It keeps recording"}},
		{"cut off, never heard a leader", standingInput{st: state(policy.Node{}), raft: &consensus.Status{Role: consensus.Follower}, started: now.Add(-time.Hour)},
			StandingCutOff, []string{"since 2026-12-05T11:00:00Z"}},
		{"a silent leader but a peer alive", standingInput{st: state(policy.Node{}), raft: silent, peers: alive}, StandingMember, nil},
		{"no leader heard for a moment", standingInput{st: state(policy.Node{}), raft: &consensus.Status{Role: consensus.Follower, LastContact: now.Add(-5 * time.Second)}},
			StandingMember, nil},
		{"the leader itself", standingInput{st: state(policy.Node{}), raft: &consensus.Status{Role: consensus.Leader}, peers: dead}, StandingMember, nil},
		{"no policy yet", standingInput{st: &policy.State{}, raft: silent}, StandingWaiting, []string{"holds no policy naming it yet"}},
	} {
		c.in.federation, c.in.now = "acme", now
		if c.in.st.Nodes["inst"] != nil {
			c.in.self = "inst"
		}
		got := standing(c.in)
		if got.State != c.state {
			t.Errorf("%s: state %q (%s), want %q", c.name, got.State, got.Detail, c.state)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(got.Detail, w) {
				t.Errorf("%s: %q does not say %q", c.name, got.Detail, w)
			}
		}
	}
}
