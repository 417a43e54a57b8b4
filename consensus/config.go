package consensus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Network is the mesh as consensus sees it: TCP on mesh addresses.
//
// Listen listens on this node's own mesh address. Conns returned by the
// listener's Accept must report, as RemoteAddr, the peer's mesh address as
// the mesh authenticated it (a *net.TCPAddr, or anything whose String parses
// as a netip.AddrPort); a conn whose address cannot be read is refused. After
// the listener is closed, Accept must return an error.
//
// Dial connects to a mesh address and port; it must honour ctx's deadline
// and cancellation.
type Network interface {
	Listen(port uint16) (net.Listener, error)
	Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// Admit decides, for a remote mesh address, whether it may speak Raft with
// us. It returns nil to admit and an error saying why not to refuse. It is
// called on every dial, before any byte is sent, and on every accept, before
// any byte is read. It must be fast and safe for concurrent use. When it
// cannot tell yet (the policy is not loaded), it must refuse. A nil Admit
// refuses everyone.
type Admit func(remote netip.Addr) error

// StateMachine is what consensus replicates. The policy implements it.
//
// Apply, Snapshot and Restore are never called concurrently with each other.
// Apply must be deterministic: given the same sequence of commands every
// replica must reach the same state and return the same results. Its error is
// part of that result (a refused command is still committed); it is returned
// to the submitter wrapped in [ErrRejected]. Snapshot returns a copy of the
// whole state that the state machine will not modify afterwards, and Restore
// replaces the state with one that Snapshot produced.
type StateMachine interface {
	Apply(cmd []byte, index uint64) (result []byte, err error)
	Snapshot() ([]byte, error)
	Restore(snapshot []byte) error
}

// Defaults for Config's zero fields. They suit voters in different cities on
// a WireGuard mesh (round trips of tens of milliseconds, some relayed). The
// Raft timeouts are twice raft's LAN defaults (as Consul scales them for
// modest servers): with a 500 ms lease, a leader on a busy machine whose
// round trips stretched past it stepped down, again and again, and the
// policy went unwritable for tens of seconds; a failover now takes 3 to 5 s.
const (
	DefaultHeartbeatTimeout   = 2000 * time.Millisecond
	DefaultElectionTimeout    = 2000 * time.Millisecond
	DefaultLeaderLeaseTimeout = 1000 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultIOTimeout          = 10 * time.Second
	DefaultSubmitTimeout      = 10 * time.Second
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultSnapshotThreshold  = 4096
	DefaultTrailingLogs       = 4096
)

// Size caps.
const (
	// MaxCommand is the largest command Submit accepts and the largest
	// result it returns.
	MaxCommand = 1 << 20
	// MaxFrameBody is the largest forwarding frame body: a command plus
	// its 4-byte timeout.
	MaxFrameBody = MaxCommand + 4
	// MaxErrorText is the longest error text carried in a frame.
	MaxErrorText = 1024
)

// Config is what Open needs. The zero value of every duration and count
// means its default.
type Config struct {
	// Dir is the node's data directory; consensus keeps its files in
	// Dir/raft (raft-wal log and stable store in Dir/raft/wal, file
	// snapshots in Dir/raft/snapshots, the newest two kept). Required.
	Dir string
	// ID is the Raft server ID: the node's public key text. Required.
	ID string
	// Addr is this node's mesh address and Raft port, as peers dial it.
	// Required.
	Addr netip.AddrPort
	// Network carries Raft and forwarding. Required.
	Network Network
	// Admit decides which peers may speak Raft with us. Nil refuses all.
	Admit Admit
	// FSM is the replicated state machine. Required.
	FSM StateMachine
	// Logf, if set, receives log lines (never secrets: commands are not
	// logged). Nil discards them.
	Logf func(format string, args ...any)
	// Vet, if set, is called on the leader before a command enters the
	// log, with the command; an error refuses it (wrapped in
	// ErrRejected) and nothing is committed. The node uses it to bound the
	// proposer's timestamp by the leader's clock. It must not block.
	Vet func(cmd []byte) error

	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it starts an election (randomized up to 2x).
	// Default 2 s.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits before a new
	// election (randomized up to 2x). Default 2 s.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without
	// reaching a quorum. At most HeartbeatTimeout. Default 1 s.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how late an idle follower learns the commit
	// index. Default 50 ms.
	CommitTimeout time.Duration
	// IOTimeout is the deadline for each Raft RPC and each forwarding
	// frame read or write. Default 10 s.
	IOTimeout time.Duration
	// SubmitTimeout bounds Submit, Sync, Barrier, VerifyLeader and the
	// membership calls when their ctx has no deadline. Default 10 s.
	SubmitTimeout time.Duration
	// SnapshotInterval is how often Raft checks whether to snapshot.
	// Default 2 min.
	SnapshotInterval time.Duration
	// SnapshotThreshold is how many new entries trigger a snapshot.
	// Default 4096.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries are kept after a snapshot, so a
	// briefly absent follower catches up from the log. Default 4096.
	TrailingLogs uint64
}

// withDefaults returns cfg with its zero fields set to their defaults, or an
// error naming what is missing or inconsistent.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("the data directory (Dir) is empty"))
	}
	if cfg.ID == "" {
		errs = append(errs, errors.New("the server ID (ID) is empty"))
	}
	if !cfg.Addr.IsValid() || cfg.Addr.Port() == 0 {
		errs = append(errs, fmt.Errorf("the mesh address (Addr) %v is not an address and port", cfg.Addr))
	}
	if cfg.Network == nil {
		errs = append(errs, errors.New("no Network"))
	}
	if cfg.FSM == nil {
		errs = append(errs, errors.New("no state machine (FSM)"))
	}
	setDur(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDur(&cfg.ElectionTimeout, DefaultElectionTimeout)
	setDur(&cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	setDur(&cfg.CommitTimeout, DefaultCommitTimeout)
	setDur(&cfg.IOTimeout, DefaultIOTimeout)
	setDur(&cfg.SubmitTimeout, DefaultSubmitTimeout)
	setDur(&cfg.SnapshotInterval, DefaultSnapshotInterval)
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}
	if cfg.LeaderLeaseTimeout > cfg.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("the leader lease (LeaderLeaseTimeout) %v is longer than the heartbeat timeout %v", cfg.LeaderLeaseTimeout, cfg.HeartbeatTimeout))
	}
	if cfg.ElectionTimeout < cfg.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("the election timeout %v is shorter than the heartbeat timeout %v", cfg.ElectionTimeout, cfg.HeartbeatTimeout))
	}
	if cfg.Admit == nil {
		cfg.Admit = refuseAll
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("consensus: config: %w", err)
	}
	return cfg, nil
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// refuseAll is the Admit of a Config that has none.
func refuseAll(remote netip.Addr) error {
	return errors.New("no admission policy configured")
}
