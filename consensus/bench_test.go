package consensus_test

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// The benchmarks commit one 256-byte command at a time, waiting for each,
// and report the latency's median and 99th percentile. All use the default
// timeouts and fsync every commit on every voter (raft-wal).

// BenchmarkCommitLeader: Submit on the leader of 3 voters.
func BenchmarkCommitLeader(b *testing.B) {
	c := newCluster(b, nil)
	voters := c.startVoters(3)
	l := c.leader(voters, 10*time.Second)
	benchCommit(b, func(cmd []byte) error {
		_, err := l.node.Submit(context.Background(), cmd)
		return err
	})
}

// BenchmarkCommitForwarded: Submit on a non-voter, forwarded to the leader
// of 3 voters.
func BenchmarkCommitForwarded(b *testing.B) {
	c := newCluster(b, nil)
	voters := c.startVoters(3)
	nv := c.addNonvoter(3, voters)
	c.leader(voters, 10*time.Second)
	benchCommit(b, func(cmd []byte) error {
		_, err := nv.node.Submit(context.Background(), cmd)
		return err
	})
}

// BenchmarkPlainRaftCommit is the baseline without Custos code: three
// voters on hashicorp/raft's own TCP transport on 127.0.0.1, the same
// raft-wal store and file snapshots, a trivial FSM, Apply on the leader.
func BenchmarkPlainRaftCommit(b *testing.B) {
	nodes, _ := startPlainRaft(b)
	leader := plainLeader(b, nodes, nil)
	benchCommit(b, func(cmd []byte) error {
		return leader.Apply(cmd, 10*time.Second).Error()
	})
}

// BenchmarkPlainRaftFailover is the failover baseline: the leader of three
// plain raft voters shuts down (and its transport closes); the time until a
// command commits on the new leader. Run it with -benchtime=1x -count=N.
func BenchmarkPlainRaftFailover(b *testing.B) {
	var took []time.Duration
	for b.Loop() {
		b.StopTimer()
		nodes, trans := startPlainRaft(b)
		old := plainLeader(b, nodes, nil)
		b.StartTimer()
		start := time.Now()
		old.Shutdown().Error()
		for i, r := range nodes {
			if r == old {
				trans[i].Close()
			}
		}
		for done := false; !done; {
			for _, r := range nodes {
				if r != old && r.State() == raft.Leader && r.Apply([]byte("after"), 10*time.Second).Error() == nil {
					done = true
					break
				}
			}
			time.Sleep(time.Millisecond)
			if time.Since(start) > time.Minute {
				b.Fatal("no commit a minute after the leader stopped")
			}
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "failover-ms")
}

// startPlainRaft starts three voters without Custos code: hashicorp/raft's
// own TCP transport on 127.0.0.1, the same raft-wal store and file
// snapshots, a trivial FSM, and Custos's default timeouts.
func startPlainRaft(b *testing.B) ([]*raft.Raft, []*raft.NetworkTransport) {
	var nodes []*raft.Raft
	var transports []*raft.NetworkTransport
	var servers []raft.Server
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		stream := &closingStream{Listener: ln}
		trans := raft.NewNetworkTransport(stream, 3, 10*time.Second, io.Discard)
		dir := b.TempDir()
		meta := &metadb.BoltMetaDB{}
		log, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(8<<20))
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(string(rune('a' + i)))
		cfg.HeartbeatTimeout = consensus.DefaultHeartbeatTimeout
		cfg.ElectionTimeout = consensus.DefaultElectionTimeout
		cfg.LeaderLeaseTimeout = consensus.DefaultLeaderLeaseTimeout
		cfg.NoLegacyTelemetry = true
		cfg.Logger = hclog.NewNullLogger()
		r, err := raft.NewRaft(cfg, nopFSM{}, log, log, snaps, trans)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			r.Shutdown().Error()
			trans.Close()
			stream.closeConns()
			log.Close()
			meta.Close()
		})
		nodes, transports = append(nodes, r), append(transports, trans)
		servers = append(servers, raft.Server{ID: cfg.LocalID, Address: trans.LocalAddr()})
	}
	if err := nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	return nodes, transports
}

func plainLeader(b *testing.B, nodes []*raft.Raft, not *raft.Raft) *raft.Raft {
	var leader *raft.Raft
	waitFor(b, 10*time.Second, "a plain raft leader", func() bool {
		for _, r := range nodes {
			if r != not && r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	return leader
}

func benchCommit(b *testing.B, commit func([]byte) error) {
	cmd := make([]byte, 256)
	lat := make([]time.Duration, 0, 4096)
	for b.Loop() {
		start := time.Now()
		if err := commit(cmd); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	ms := func(q int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*q/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(50), "p50-ms")
	b.ReportMetric(ms(99), "p99-ms")
}

// closingStream is raft's plain TCP stream layer, except that it can close
// every conn it made or accepted: raft's NetworkTransport.Close leaves them
// open, with a goroutine reading each, which the leak check would report.
type closingStream struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (s *closingStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err == nil {
		s.add(c)
	}
	return c, err
}

func (s *closingStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err == nil {
		s.add(c)
	}
	return c, err
}

func (s *closingStream) add(c net.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

func (s *closingStream) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}
