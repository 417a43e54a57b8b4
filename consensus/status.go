package consensus

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/raft"
)

// Role is a node's Raft state.
type Role uint8

const (
	Follower Role = iota
	Candidate
	Leader
	Shutdown // closed, or removed from the cluster
)

var roleNames = [...]string{"follower", "candidate", "leader", "shutdown"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", r)
}

// MarshalText writes the role's name, for --json.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name (status read back over the local API).
func (r *Role) UnmarshalText(b []byte) error {
	for i, n := range roleNames {
		if n == string(b) {
			*r = Role(i)
			return nil
		}
	}
	return fmt.Errorf("consensus: unknown role %q", b)
}

// Member is a server in the cluster's latest configuration.
type Member struct {
	Server
	Voter bool `json:"voter"`
}

// Status is a snapshot of a node's view of the cluster, for `custos status`.
type Status struct {
	ID   string         `json:"id"`
	Addr netip.AddrPort `json:"addr"`
	Role Role           `json:"role"`
	// Member and Voter tell whether this node is in the latest
	// configuration it knows, and with which suffrage.
	Member bool `json:"member"`
	Voter  bool `json:"voter"`
	// LeaderID and LeaderAddr are empty when no leader is known.
	LeaderID   string         `json:"leader_id,omitempty"`
	LeaderAddr netip.AddrPort `json:"leader_addr,omitzero"`
	Term       uint64         `json:"term"`
	// LastIndex is the last entry in this node's log, CommitIndex the
	// last it knows committed, AppliedIndex the last command its state
	// machine has applied.
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// RaftApplied is the last entry of any kind raft has applied
	// (configuration changes and no-ops too): caught up when it reaches
	// CommitIndex.
	RaftApplied uint64 `json:"raft_applied_index"`
	// LastContact is when this follower last heard from the leader: zero
	// on the leader and on a node that never heard from one.
	LastContact time.Time `json:"last_contact,omitzero"`
	Members     []Member  `json:"members"`
	// Commits are the commands this node committed as leader, with how
	// long each took (since it started).
	Commits Latency `json:"commits"`
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	s := Status{
		ID:           n.cfg.ID,
		Addr:         n.cfg.Addr,
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.applied.Load(),
		RaftApplied:  n.raft.AppliedIndex(),
		Commits:      n.commits.read(),
	}
	switch n.raft.State() {
	case raft.Follower:
		s.Role = Follower
	case raft.Candidate:
		s.Role = Candidate
	case raft.Leader:
		s.Role = Leader
	default:
		s.Role = Shutdown
	}
	if addr, id := n.raft.LeaderWithID(); id != "" {
		s.LeaderID = string(id)
		s.LeaderAddr, _ = netip.ParseAddrPort(string(addr))
	}
	if s.Role != Leader {
		s.LastContact = n.raft.LastContact()
	}
	f := n.raft.GetConfiguration()
	if f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			addr, _ := netip.ParseAddrPort(string(srv.Address))
			m := Member{Server: Server{ID: string(srv.ID), Addr: addr}, Voter: srv.Suffrage == raft.Voter}
			s.Members = append(s.Members, m)
			if m.ID == n.cfg.ID {
				s.Member, s.Voter = true, m.Voter
			}
		}
	}
	return s
}
