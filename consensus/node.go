package consensus

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// walSegmentSize is the size raft-wal preallocates for each segment file.
const walSegmentSize = 8 << 20

// Server names a Raft server.
type Server struct {
	ID   string         `json:"id"`   // the node's public key text
	Addr netip.AddrPort `json:"addr"` // its mesh address and Raft port
}

func (s Server) check() error {
	if s.ID == "" {
		return errors.New("server has an empty ID")
	}
	if !s.Addr.IsValid() || s.Addr.Port() == 0 {
		return fmt.Errorf("server %s: %v is not an address and port", s.ID, s.Addr)
	}
	return nil
}

// Node is one Raft server: a voter or a non-voter, as the cluster's
// configuration says. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	raft   *raft.Raft
	stream *streamLayer
	trans  *raft.NetworkTransport
	log    *wal.WAL
	meta   *metadb.BoltMetaDB // raft-wal's index; WAL.Close leaves it open
	fsm    *fsm
	pool   connPool

	ready  chan struct{}   // closed once raft is set
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	nudges  nudger
	commits latencyHist // commits this node led
}

// Open starts a Raft server on cfg.Addr with the state found in cfg.Dir, if
// any. A new node does nothing until it is bootstrapped (the first
// datacenter) or added by the leader (every other node); a node with state
// rejoins its cluster.
func Open(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	logger := newLogger(cfg.Logf)
	walDir := filepath.Join(cfg.Dir, "raft", "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: open: %w", err)
	}
	n := &Node{cfg: cfg, fsm: &fsm{sm: cfg.FSM}, ready: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	undo := func() {}
	defer func() {
		if n.raft == nil {
			n.cancel()
			undo()
		}
	}()

	n.meta = &metadb.BoltMetaDB{}
	undo = func() { n.meta.Close() }
	n.log, err = openLog(walDir, n.meta, logger.Named("wal"))
	if err != nil {
		return nil, fmt.Errorf("consensus: open log in %s: %w", walDir, err)
	}
	undo = func() { n.closeLog() }
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "raft"), 2, logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("consensus: open snapshots: %w", err)
	}
	n.stream, err = newStreamLayer(n.ctx, cfg, n.serveForward)
	if err != nil {
		return nil, err
	}
	undo = func() { n.stream.Close(); n.closeLog() }
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.stream,
		MaxPool: 3,
		// 1 turns off raft's pipelined replication, which can deadlock
		// (hashicorp/raft 1.8.0, the default of 2 RPCs in flight): when a
		// follower's answer ends pipelineDecode (a refused append, a
		// newer term, a broken or timed-out conn) while another request
		// is in flight, the transport's decoder waits forever to hand
		// that answer to the gone pipelineDecode, and pipelineReplicate,
		// sending one more, waits forever for the decoder. That follower
		// then gets heartbeats but never another entry, and Shutdown,
		// which waits for pipelineReplicate, never returns. Raft's own
		// measurements find pipelining of little use with batching.
		MaxRPCsInFlight: 1,
		Timeout:         cfg.IOTimeout,
		Logger:          logger.Named("net"),
	})
	n.trans = trans
	undo = func() { trans.Close(); n.closeLog() }

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.ShutdownOnRemove = true
	rc.NoLegacyTelemetry = true
	rc.Logger = logger
	r, err := raft.NewRaft(rc, n.fsm, n.log, n.log, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("consensus: start raft: %w", err)
	}
	n.raft = r
	close(n.ready)
	return n, nil
}

// Bootstrap makes a new cluster whose voters are voters; this node must be
// one of them. Only the first datacenter calls it, once, on a node with no
// state; every other node is added by the leader. On a node that has state
// it returns ErrAlreadyBootstrapped, which a restart may ignore.
func (n *Node) Bootstrap(voters []Server) error {
	if len(voters) == 0 {
		return errors.New("consensus: bootstrap: no voters")
	}
	var servers []raft.Server
	seen := make(map[string]bool)
	self := false
	for _, v := range voters {
		if err := v.check(); err != nil {
			return fmt.Errorf("consensus: bootstrap: %w", err)
		}
		if seen[v.ID] {
			return fmt.Errorf("consensus: bootstrap: server %s listed twice", v.ID)
		}
		seen[v.ID] = true
		if v.ID == n.cfg.ID {
			if v.Addr != n.cfg.Addr {
				return fmt.Errorf("consensus: bootstrap: this node is listed at %v but listens on %v", v.Addr, n.cfg.Addr)
			}
			self = true
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.ID), Address: raft.ServerAddress(v.Addr.String())})
	}
	if !self {
		return fmt.Errorf("consensus: bootstrap: this node (%s) is not among the voters", n.cfg.ID)
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case errors.Is(err, raft.ErrCantBootstrap):
		return fmt.Errorf("%w: %s has Raft state in %s", ErrAlreadyBootstrapped, n.cfg.ID, n.cfg.Dir)
	case err != nil:
		return fmt.Errorf("consensus: bootstrap: %w", n.raftErr(err))
	}
	return nil
}

// AddVoter makes s a voter, adding it if it is not a member. Leader only:
// elsewhere it returns ErrNotLeader. Membership follows the committed
// policy, which the leader reconciles; it is not forwarded, so that no other
// node can change who votes.
func (n *Node) AddVoter(ctx context.Context, s Server) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("consensus: add voter: %w", err)
	}
	return n.changeMembers(ctx, "add voter "+s.ID, func(timeout time.Duration) raft.Future {
		return n.raft.AddVoter(raft.ServerID(s.ID), raft.ServerAddress(s.Addr.String()), 0, timeout)
	})
}

// AddNonvoter adds s as a non-voter, which receives the log but does not
// vote; for a member it only updates the address (it does not demote a
// voter). Leader only, as AddVoter.
func (n *Node) AddNonvoter(ctx context.Context, s Server) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("consensus: add non-voter: %w", err)
	}
	return n.changeMembers(ctx, "add non-voter "+s.ID, func(timeout time.Duration) raft.Future {
		return n.raft.AddNonvoter(raft.ServerID(s.ID), raft.ServerAddress(s.Addr.String()), 0, timeout)
	})
}

// Remove takes the server with this id out of the cluster. A removed node
// shuts its Raft down (its calls then return ErrClosed). Leader only, as
// AddVoter.
func (n *Node) Remove(ctx context.Context, id string) error {
	return n.changeMembers(ctx, "remove "+id, func(timeout time.Duration) raft.Future {
		return n.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (n *Node) changeMembers(ctx context.Context, op string, change func(time.Duration) raft.Future) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.leaderOnly(); err != nil {
		return fmt.Errorf("%w: %s", err, op)
	}
	left, err := timeLeft(ctx)
	if err != nil {
		return fmt.Errorf("consensus: %s: %w", op, err)
	}
	if err := wait(ctx, change(left)); err != nil {
		return fmt.Errorf("consensus: %s: %w", op, n.raftErr(err))
	}
	return nil
}

// Barrier waits until every entry committed before the call is applied to
// this node's state machine, and this node was still leader when it was.
// Leader only. Call it after gaining leadership before acting on the
// replica (reconciling membership, for example).
func (n *Node) Barrier(ctx context.Context) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.leaderOnly(); err != nil {
		return fmt.Errorf("%w: barrier", err)
	}
	left, err := timeLeft(ctx)
	if err != nil {
		return fmt.Errorf("consensus: barrier: %w", err)
	}
	if err := wait(ctx, n.raft.Barrier(left)); err != nil {
		return fmt.Errorf("consensus: barrier: %w", n.raftErr(err))
	}
	return nil
}

// VerifyLeader confirms, by reaching a quorum of voters, that this node is
// still the leader. A read of the local replica after it returns nil is
// linearizable on the leader, provided the leader has applied its own
// earlier entries (after Barrier). Leader only.
func (n *Node) VerifyLeader(ctx context.Context) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	// VerifyLeader has no timeout: it waits until raft's main loop takes
	// the request. Handed over in wait's goroutine, it cannot hold the
	// caller past ctx.
	if err := waitStart(ctx, n.raft.VerifyLeader); err != nil {
		return fmt.Errorf("consensus: verify leader: %w", n.raftErr(err))
	}
	return nil
}

// TransferLeadership hands leadership to the voter with this id and waits
// until that server has taken it over (for maintenance: stepping a node
// down before it is stopped). Leader only, as AddVoter.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	if err := n.leaderOnly(); err != nil {
		return fmt.Errorf("%w: transfer leadership", err)
	}
	cf := n.raft.GetConfiguration()
	if err := wait(ctx, cf); err != nil {
		return fmt.Errorf("consensus: transfer leadership: %w", n.raftErr(err))
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			if err := wait(ctx, n.raft.LeadershipTransferToServer(s.ID, s.Address)); err != nil {
				return fmt.Errorf("consensus: transfer leadership to %s: %w", id, n.raftErr(err))
			}
			return nil
		}
	}
	return fmt.Errorf("consensus: transfer leadership: %s is not a voter", id)
}

// Readmit asks Admit again for every open Raft and forwarding conn and
// closes those it now refuses; it returns how many it closed. Call it when
// the answers Admit gives may have changed (a node revoked or expired).
func (n *Node) Readmit() int { return n.stream.recheck() }

// LeaderCh delivers true when this node becomes the leader and false when
// it stops being it. It keeps only the latest change for a slow receiver.
// Only one receiver should use it.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Close stops the node: Raft, its connections, the forwarding server and
// the log. It is safe to call more than once. The data in Dir stays, and
// Open on it resumes.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		shut := n.raft.Shutdown()
		// A nudge that saw the node open has counted itself by now (it
		// does so under mu); its barrier ends with ErrRaftShutdown.
		n.nudges.mu.Lock()
		//lint:ignore SA2001 the empty critical section is the point
		n.nudges.mu.Unlock()
		n.nudges.wg.Wait()
		// Every conn is closed before raft's goroutines are waited for:
		// some read a conn with no deadline of their own. A follower's
		// main loop reads an InstallSnapshot stream (all the bytes its
		// header announces, even when it refuses the snapshot) with
		// none, so a peer that stalls in the middle, gone silent or
		// never sending the rest, would hold Shutdown, and Close,
		// forever. Closing the conns also ends at once the RPCs in
		// flight to a peer that is gone, instead of after IOTimeout.
		n.stream.shutdown()
		err := shut.Error() // raft's goroutines are done; closes the transport
		// Raft that shut itself down (ShutdownOnRemove) left the transport
		// open, and shut.Error did not close it: close it here.
		n.trans.Close()
		n.stream.Close()
		n.pool.close()
		n.closeErr = errors.Join(err, n.closeLog())
		if n.closeErr != nil {
			n.closeErr = fmt.Errorf("consensus: close: %w", n.closeErr)
		}
	})
	return n.closeErr
}

// openLog opens the Raft log in dir with its index in meta; Open and the
// log's own tests share it, so the tests run the product's settings.
func openLog(dir string, meta *metadb.BoltMetaDB, logger hclog.Logger) (*wal.WAL, error) {
	return wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(logger), wal.WithSegmentSize(walSegmentSize))
}

// closeLog closes raft-wal and its metadata database, whose file lock would
// otherwise keep the next Open on Dir waiting.
func (n *Node) closeLog() error {
	return errors.Join(n.log.Close(), n.meta.Close())
}

// leaderOnly returns ErrNotLeader, naming the leader if one is known, unless
// this node leads.
func (n *Node) leaderOnly() error {
	switch n.raft.State() {
	case raft.Leader:
		return nil
	case raft.Shutdown:
		return ErrClosed
	}
	if addr, id := n.raft.LeaderWithID(); id != "" {
		return fmt.Errorf("%w (the leader is %s at %s)", ErrNotLeader, id, addr)
	}
	return fmt.Errorf("%w (no leader is known)", ErrNotLeader)
}

// raftErr maps raft's errors onto ours.
func (n *Node) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	}
	return err
}

// withTimeout bounds ctx by SubmitTimeout unless it has a deadline already.
func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.SubmitTimeout)
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// timeLeft is what remains of ctx, as the timeout for raft's Apply, Barrier
// and membership changes. Those read a timeout of 0 or less as none at all
// (they wait as long as raft's main loop does not take the request), so
// a ctx that has no time left gets its error instead.
func timeLeft(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	left := time.Until(deadline(ctx))
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	return left, nil
}

// wait waits for f, or for ctx.
func wait(ctx context.Context, f raft.Future) error {
	return waitStart(ctx, func() raft.Future { return f })
}

// waitStart calls start, which may block until raft takes a request, and
// waits for the future it returns; or for ctx, whichever ends first.
func waitStart(ctx context.Context, start func() raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- start().Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newLogger makes the hclog.Logger raft and raft-wal want from a Logf.
func newLogger(logf func(string, ...any)) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Info,
		Output:      logfWriter(logf),
		DisableTime: true,
		Exclude:     expectedAtJoin,
	})
}

// expectedAtJoin drops raft's warnings about what every new member goes
// through before it holds the log, so that a healthy join logs no alarm:
// a node no leader has added yet finds no peers to elect (its
// configuration is empty); its empty log lacks the entry before the
// leader's first AppendEntries ("log not found" at last-index 0, answered
// with no backoff); and the leader then starts it from the first entry
// (next=1). The same lines for a follower that holds a log still show.
func expectedAtJoin(_ hclog.Level, msg string, args ...any) bool {
	switch msg {
	case "no known peers, aborting election":
		return true
	case "failed to get previous log":
		return argIs(args, "last-index", uint64(0))
	case "appendEntries rejected, sending older logs":
		return argIs(args, "next", uint64(1))
	}
	return false
}

// argIs reports whether hclog's key-value args hold key with value v.
func argIs(args []any, key string, v any) bool {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return args[i+1] == v
		}
	}
	return false
}

type logfWriter func(string, ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
