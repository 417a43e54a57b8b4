package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/consensus/consensustest"
)

// rawPeer is a Raft peer that the test drives: hashicorp/raft's own
// NetworkTransport on a consensustest host, speaking the wire protocol of
// a node (the protocol byte, then raft's RPCs), with answers of the test's.
type rawPeer struct {
	id     string
	addr   netip.AddrPort
	trans  *raft.NetworkTransport
	stream *rawStream
}

// newRawPeer starts a rawPeer at test host i, admitted by c's policy. Its
// transport and conns are closed at the end of the test.
func newRawPeer(t *testing.T, c *cluster, i int) *rawPeer {
	t.Helper()
	addr := netip.AddrPortFrom(consensustest.Addr(i), raftPort)
	c.mu.Lock()
	c.allowed[addr.Addr()] = true
	c.mu.Unlock()
	host := c.net.Host(addr.Addr())
	ln, err := host.Listen(addr.Port())
	if err != nil {
		t.Fatal(err)
	}
	s := &rawStream{host: host, ln: ln, addr: addr}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hclog.NewNullLogger(),
	})
	t.Cleanup(func() {
		trans.Close()
		s.closeConns()
	})
	return &rawPeer{id: fmt.Sprintf("rawpeer:%02d", i), addr: addr, trans: trans, stream: s}
}

func (p *rawPeer) server() consensus.Server { return consensus.Server{ID: p.id, Addr: p.addr} }

func (p *rawPeer) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(p.id), Addr: []byte(p.addr.String())}
}

// serve answers the RPCs the peer receives with handle, until the test
// ends.
func (p *rawPeer) serve(t *testing.T, handle func(raft.RPC)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			select {
			case rpc := <-p.trans.Consumer():
				handle(rpc)
			case <-done:
				return
			}
		}
	})
}

// rawStream is raft.StreamLayer over a consensustest host, writing and
// reading the protocol byte as the consensus package does.
type rawStream struct {
	host *consensustest.Host
	ln   net.Listener
	addr netip.AddrPort

	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

func (s *rawStream) Accept() (net.Conn, error) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		s.add(c)
		var b [1]byte
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'R' {
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		return c, nil
	}
}

func (s *rawStream) Close() error   { return s.ln.Close() }
func (s *rawStream) Addr() net.Addr { return net.TCPAddrFromAddrPort(s.addr) }

func (s *rawStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(string(address))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.host.Dial(ctx, ap)
	if err != nil {
		return nil, err
	}
	s.add(c)
	if _, err := c.Write([]byte{'R'}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (s *rawStream) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = append(s.conns, c)
}

// closeConns closes every conn: raft's transport leaves them open.
func (s *rawStream) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// A follower that refuses an append now and then, as one does whose log
// store failed a write or whose log differs after a leader change: the
// leader keeps replicating to it, and closes. Raft's pipelined replication
// deadlocked here. A refusal that arrived while another append was in
// flight ended the pipeline's decoder; the transport then waited forever to
// hand it the next answer, and the sender waited forever for the transport.
// The follower got heartbeats but no entry ever again, and Close waited
// forever in raft's Shutdown (a CI run hung until its 15-minute timeout).
func TestReplicationSurvivesRefusedAppends(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	l := c.startVoters(1)[0]
	p := newRawPeer(t, c, 5)

	var mu sync.Mutex
	var last uint64 // guarded by mu: the index of the follower's last entry
	appends := 0    // guarded by mu
	refused := 0    // guarded by mu
	p.serve(t, func(rpc raft.RPC) {
		req, ok := rpc.Command.(*raft.AppendEntriesRequest)
		if !ok {
			rpc.Respond(nil, fmt.Errorf("a follower's test twin does not take %T", rpc.Command))
			return
		}
		mu.Lock()
		resp := &raft.AppendEntriesResponse{RPCHeader: p.header(), Term: req.Term, LastLog: last}
		refuse := false
		if len(req.Entries) > 0 {
			appends++
			refuse = appends%3 == 0
		}
		if refuse {
			refused++
		} else if req.PrevLogEntry <= last {
			if n := len(req.Entries); n > 0 {
				last = req.Entries[n-1].Index
			}
			resp.Success, resp.LastLog = true, last
		}
		mu.Unlock()
		if len(req.Entries) == 0 {
			rpc.Respond(resp, nil)
			return
		}
		// A slow answer: the leader sends the next append meanwhile.
		go func() {
			time.Sleep(20 * time.Millisecond)
			rpc.Respond(resp, nil)
		}()
	})
	if err := l.node.AddNonvoter(ctx(t, 10*time.Second), p.server()); err != nil {
		t.Fatalf("AddNonvoter: %v", err)
	}
	// Each refusal while another append is in flight deadlocked the
	// pipeline about every other time.
	refusals := func() int {
		mu.Lock()
		defer mu.Unlock()
		return refused
	}
	for k, end := 0, time.Now().Add(15*time.Second); refusals() < 12 && time.Now().Before(end); k++ {
		submit(t, l, fmt.Sprintf("cmd%d", k))
		time.Sleep(2 * time.Millisecond)
	}
	want := l.node.Status().LastIndex
	waitFor(t, 30*time.Second, fmt.Sprintf("the follower's log to reach the leader's index %d (replication to it stopped)", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return last >= want
	})
	mu.Lock()
	t.Logf("%d appends, %d of them refused", appends, refused)
	mu.Unlock()
	l.stop()
}

// A peer that starts an InstallSnapshot and sends nothing more, gone silent
// or hostile, holds the raft main loop of the node it sends to: raft reads
// the stream with no deadline, all the bytes the header announces. Close
// still returns: the node closes its conns before it waits for raft.
func TestCloseWithStalledSnapshotStream(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	m := c.add(0, true)
	m.start()
	p := newRawPeer(t, c, 5)

	stall := make(chan struct{})
	unstall := sync.OnceFunc(func() { close(stall) })
	sent := make(chan error, 1)
	go func() {
		req := &raft.InstallSnapshotRequest{
			RPCHeader:       p.header(),
			SnapshotVersion: raft.SnapshotVersionMax,
			Term:            7,
			Leader:          []byte(p.addr.String()),
			LastLogIndex:    100,
			LastLogTerm:     7,
			Size:            1 << 20,
			Configuration: raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
				{Suffrage: raft.Voter, ID: raft.ServerID(p.id), Address: raft.ServerAddress(p.addr.String())},
			}}),
			ConfigurationIndex: 1,
		}
		var resp raft.InstallSnapshotResponse
		sent <- p.trans.InstallSnapshot(raft.ServerID(m.id), raft.ServerAddress(m.addr.String()), req, &resp, stalledReader(stall))
	}()
	// Registered after the node's Close, so it runs before it: a failed
	// test lets the stream end, and its Cleanups do not hang.
	t.Cleanup(unstall)

	waitFor(t, 30*time.Second, "the node to read the snapshot's header (and take its term, 7)", func() bool {
		return m.node.Status().Term == 7
	})
	m.stop()
	unstall()
	if err := await(t, sent, 10*time.Second, "the peer's InstallSnapshot"); err == nil {
		t.Error("the stalled InstallSnapshot succeeded")
	}
}

// stalledReader sends nothing until stall is closed, then ends.
type stalledReader chan struct{}

func (r stalledReader) Read([]byte) (int, error) {
	<-r
	return 0, io.EOF
}

// A conn whose peer Admit accepted, but which was not yet tracked when
// Readmit ran after the peer's revocation, is closed all the same: Admit
// is asked again once the conn is tracked.
func TestReadmitRacesAdmission(t *testing.T) {
	c := newCluster(t, fastTimeouts)
	m := c.add(0, true)
	peer := consensustest.Addr(1)
	c.mu.Lock()
	c.allowed[peer] = true
	c.mu.Unlock()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.admit = func(remote netip.Addr) error {
		err := c.policy(remote)
		if remote == peer {
			// The first answer for the peer is held back until the
			// test has revoked it and called Readmit.
			once.Do(func() {
				close(entered)
				select {
				case <-release:
				case <-time.After(hangTimeout):
				}
			})
		}
		return err
	}
	m.start()

	dctx := ctx(t, 10*time.Second)
	conn, err := c.net.Host(peer).Dial(dctx, m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{'R'}); err != nil {
		t.Fatal(err)
	}
	await(t, entered, 10*time.Second, "Admit asked for the peer's conn")
	c.mu.Lock()
	c.allowed[peer] = false
	c.mu.Unlock()
	m.node.Readmit()
	close(release)

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the conn of a peer revoked while it was being admitted is still open after Readmit")
	}
	if got := m.deniedCount(peer); got == 0 {
		t.Errorf("Admit refused the peer %d times, want the second question refused", got)
	}
}
