package mesh

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/custos-cctv/custos/keys"
)

// BenchmarkFederationScaleGossip is the gossip half of node's
// BenchmarkFederationScale: 3 voters, 10 admin nodes and
// CUSTOS_SCALE_STORES stores (comma-separated sizes) as memberlist members
// in one process, with Custos's memberlist settings (gossipConfig: probe
// every 500 ms, gossip every 100 ms, suspicion ×4), its gossip metadata, and
// its join behaviour (at start a node joins every peer it speaks first to,
// 8 at a time; every second it rejoins peers it does not see alive, as
// rejoinLoop does), over an in-memory network instead of WireGuard.
//
// 20 stores then stop without leaving (as a node's Close does) and, once
// every survivor has declared them dead, start again at the same address.
// Reported: detect-ms (stop → every survivor sees the 20 dead),
// gossip-converge-ms (restart → every member sees every member alive),
// gossip-KB/s/member and gossip-cpu-ms/s at rest (all members).
func BenchmarkFederationScaleGossip(b *testing.B) {
	sizes := os.Getenv("CUSTOS_SCALE_STORES")
	if sizes == "" {
		b.Skip("set CUSTOS_SCALE_STORES (e.g. 50,100,250,500); `make scale` does")
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 20 {
			b.Fatalf("CUSTOS_SCALE_STORES: %q is not a count of at least 20", s)
		}
		b.Run(fmt.Sprintf("stores=%d", n), func(b *testing.B) { benchGossipScale(b, n) })
	}
}

const (
	scaleRestarts = 20
	scaleAdmins   = 10 // admin nodes, as in node's BenchmarkFederationScale
)

func benchGossipScale(b *testing.B, stores int) {
	var detect, converge []time.Duration
	var kbps, cpums float64
	for b.Loop() {
		b.StopTimer()
		d, c, k, u := gossipScaleOnce(b, stores)
		detect, converge = append(detect, d), append(converge, c)
		kbps, cpums = kbps+k, cpums+u
		b.StartTimer()
	}
	med := func(ds []time.Duration) float64 {
		s := append([]time.Duration(nil), ds...)
		for i := range s { // tiny: insertion sort
			for j := i; j > 0 && s[j] < s[j-1]; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
		return float64(s[len(s)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(med(detect), "detect-ms")
	b.ReportMetric(med(converge), "gossip-converge-ms")
	b.ReportMetric(kbps/float64(len(detect)), "gossip-KB/s/member")
	b.ReportMetric(cpums/float64(len(detect)), "gossip-cpu-ms/s")
}

func gossipScaleOnce(b *testing.B, stores int) (detect, converge time.Duration, kbps, cpums float64) {
	sn := &simNet{hosts: map[string]*simTransport{}}
	total := 3 + scaleAdmins + stores
	names := make([]string, total)
	addrs := make([]string, total)
	prefix, _ := keys.MeshPrefix("scale")
	for i := range total {
		k := keys.NewNodePrivate()
		names[i] = k.Public().String()
		addrs[i] = netip.AddrPortFrom(keys.MeshAddr(prefix, k.Public()), GossipPort).String()
		k.Zero()
	}
	members := make([]*simMember, total)
	defer func() {
		for _, m := range members {
			if m != nil {
				m.stop()
			}
		}
	}()
	start := func(i int, joinAll bool) {
		m, err := startSimMember(sn, names, addrs, i)
		if err != nil {
			b.Fatal(err)
		}
		members[i] = m
		if joinAll {
			m.joinPeers()
		}
	}
	// Formation is not measured: the voters first, then everyone else
	// joins them (cheaper than each joining half the federation).
	for i := range 3 {
		start(i, false)
	}
	members[1].list.Join(addrs[:1])
	members[2].list.Join(addrs[:2])
	for i := 3; i < total; i++ {
		start(i, false)
		if _, err := members[i].list.Join(addrs[:3]); err != nil {
			b.Fatal(err)
		}
		if i%50 == 0 {
			progress("%d joined", i)
		}
	}
	// Broadcasts dropped in a busy process would leave a member's view
	// incomplete until its next push/pull (30 s × log-scaled): a member
	// missing some pulls the whole state from the voters again.
	formed := false
	for range 20 {
		if _, formed = waitAll(members, 3*time.Second, func(m *simMember) bool { return m.aliveCount() == total }); formed {
			break
		}
		inc, least := 0, total
		for _, m := range members {
			if c := m.aliveCount(); c < total {
				inc, least = inc+1, min(least, c)
				m.list.Join(addrs[:3])
			}
		}
		progress("%d members incomplete, the least sees %d", inc, least)
	}
	if !formed {
		// Not a result: hundreds of members in one process on a few
		// cores starve each other's probes and suspect one another.
		b.Skipf("%d members did not form in this process (CPU-starved)", total)
	}
	progress("%d members formed", total)
	for _, m := range members {
		m.startRejoin()
	}

	// At rest, once formation's broadcasts (each retransmitted 4×log10(n)
	// times) have drained.
	time.Sleep(10 * time.Second)
	sent0, cpu0, t0 := sn.sent.Load(), scaleCPU(), time.Now()
	time.Sleep(5 * time.Second)
	secs := time.Since(t0).Seconds()
	kbps = float64(sn.sent.Load()-sent0) / secs / float64(total) / 1e3
	cpums = float64(scaleCPU()-cpu0) / float64(time.Millisecond) / secs

	// The last 20 stores stop.
	restarted := make([]int, 0, scaleRestarts)
	for i := total - scaleRestarts; i < total; i++ {
		restarted = append(restarted, i)
	}
	gone := map[string]bool{}
	for _, i := range restarted {
		gone[names[i]] = true
	}
	survivors := members[:total-scaleRestarts]
	t0 = time.Now()
	for _, i := range restarted {
		members[i].stop()
		members[i] = nil
	}
	if _, ok := waitAll(survivors, 2*time.Minute, func(m *simMember) bool { return m.seesNone(gone) }); !ok {
		b.Skip("survivors did not declare the stopped stores dead within 2 minutes")
	}
	detect = time.Since(t0)
	progress("detected in %v", detect)

	t0 = time.Now()
	for _, i := range restarted {
		start(i, true)
		members[i].startRejoin()
	}
	if _, ok := waitAll(members, 2*time.Minute, func(m *simMember) bool { return m.aliveCount() == total }); !ok {
		// Seen at 100 stores on a busy machine before joins waiting were
		// deduplicated: joins slower than rejoinLoop started them piled up
		// (tens of thousands of goroutines) and slowed every member.
		b.Skipf("gossip did not converge within 2 minutes of the restart (%d goroutines)", runtime.NumGoroutine())
	}
	converge = time.Since(t0)
	progress("converged in %v", converge)
	return detect, converge, kbps, cpums
}

// progress tells where a long run is, on stderr, if CUSTOS_SCALE_VERBOSE
// is set.
func progress(format string, args ...any) {
	if os.Getenv("CUSTOS_SCALE_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

// waitAll polls until cond holds for every member.
func waitAll(ms []*simMember, limit time.Duration, cond func(*simMember) bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		ok := true
		for _, m := range ms {
			if !cond(m) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, false
}

func scaleCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// simMember is one node's gossip: memberlist with Custos's settings, its
// metadata, a view built from events (as gossip.liveness is) and the
// joins gossip.join and rejoinLoop make.
type simMember struct {
	idx   int
	names []string
	addrs []string
	t     *simTransport
	list  *memberlist.Memberlist
	meta  []byte

	mu     sync.Mutex
	alive  map[string]bool
	others int // members other than itself in alive

	joinSem chan struct{}
	joining map[int]bool // guarded by mu: as gossip.joining
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func startSimMember(sn *simNet, names, addrs []string, i int) (*simMember, error) {
	ap := netip.MustParseAddrPort(addrs[i])
	t := sn.listen(ap)
	m := &simMember{idx: i, names: names, addrs: addrs, t: t, alive: map[string]bool{},
		joinSem: make(chan struct{}, maxConcurrentJoins), done: make(chan struct{})}
	// The metadata a node behind NAT gossips: its endpoint and candidates.
	m.meta = encodeGossipMeta(netip.MustParseAddrPort("198.51.100.7:51820"),
		[]netip.AddrPort{netip.MustParseAddrPort("192.168.1.20:51820"), netip.MustParseAddrPort("203.0.113.9:40123")})
	cfg := gossipConfig(names[i], &gossipTransport{local: ap}, nil)
	cfg.Transport = t
	cfg.Logger = log.New(io.Discard, "", 0)
	cfg.Delegate = m
	cfg.Events = m
	list, err := memberlist.Create(cfg)
	if err != nil {
		return nil, err
	}
	m.list = list
	return m, nil
}

// speaksFirst mirrors gossip.speaksFirst: the lower key joins at once.
func (m *simMember) speaksFirst(j int) bool { return m.names[m.idx] < m.names[j] }

// joinPeers is gossip.join at start: every peer this node speaks first to.
func (m *simMember) joinPeers() {
	var due []int
	for j := range m.names {
		if j != m.idx && m.speaksFirst(j) {
			due = append(due, j)
		}
	}
	m.goJoin(due)
}

func (m *simMember) goJoin(peers []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joining == nil {
		m.joining = map[int]bool{}
	}
	for _, j := range peers {
		if m.joining[j] {
			continue // as gossip.goJoin: one join waits per peer
		}
		m.joining[j] = true
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() {
				m.mu.Lock()
				delete(m.joining, j)
				m.mu.Unlock()
			}()
			select {
			case m.joinSem <- struct{}{}:
			case <-m.done:
				return
			}
			defer func() { <-m.joinSem }()
			select {
			case <-m.done:
			default:
				m.list.Join([]string{m.addrs[j]})
			}
		}()
	}
}

// startRejoin runs rejoinLoop's logic against this member's view.
func (m *simMember) startRejoin() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		missingSince := map[int]time.Time{}
		for {
			jitter := time.Duration(rand.Int64N(int64(rejoinInterval / 4)))
			select {
			case <-m.done:
				return
			case <-time.After(rejoinInterval + jitter):
			}
			now := time.Now()
			var due []int
			m.mu.Lock()
			for j, name := range m.names {
				if j == m.idx {
					continue
				}
				if m.alive[name] {
					delete(missingSince, j)
					continue
				}
				since, ok := missingSince[j]
				if !ok {
					since = now
					missingSince[j] = now
				}
				if m.speaksFirst(j) || now.Sub(since) >= joinGrace {
					due = append(due, j)
				}
			}
			m.mu.Unlock()
			m.goJoin(due)
		}
	}()
}

func (m *simMember) stop() {
	m.once.Do(func() {
		close(m.done)
		m.list.Shutdown()
		m.wg.Wait()
	})
}

func (m *simMember) aliveCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return 1 + m.others // itself, and the others it sees alive
}

func (m *simMember) seesNone(gone map[string]bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range gone {
		if m.alive[name] {
			return false
		}
	}
	return true
}

func (m *simMember) NodeMeta(limit int) []byte {
	if len(m.meta) > limit {
		return nil
	}
	return m.meta
}
func (m *simMember) NotifyMsg([]byte)                           {}
func (m *simMember) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *simMember) LocalState(join bool) []byte                { return nil }
func (m *simMember) MergeRemoteState(buf []byte, join bool)     {}
func (m *simMember) NotifyJoin(n *memberlist.Node)              { m.set(n.Name, true) }
func (m *simMember) NotifyUpdate(n *memberlist.Node)            { m.set(n.Name, true) }
func (m *simMember) NotifyLeave(n *memberlist.Node)             { m.set(n.Name, false) }
func (m *simMember) set(name string, alive bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == m.names[m.idx] || m.alive[name] == alive {
		return
	}
	m.alive[name] = alive
	if alive {
		m.others++
	} else {
		m.others--
	}
}

// simNet is an in-memory network for memberlist: datagrams are lost, not
// queued, when the receiver is down or its queue is full (as UDP's are),
// and a dial to a stopped node fails at once (over WireGuard it would time
// out: the simulation is kinder to joins of dead peers than the mesh).
// Unlike memberlist's MockNetwork it is safe for concurrent use and a node
// can stop and come back at the same address.
type simNet struct {
	mu    sync.RWMutex
	hosts map[string]*simTransport
	sent  atomic.Int64 // bytes written, datagrams and streams
}

type simTransport struct {
	net      *simNet
	addr     *net.UDPAddr
	key      string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
}

func (n *simNet) listen(ap netip.AddrPort) *simTransport {
	t := &simTransport{net: n, addr: net.UDPAddrFromAddrPort(ap), key: ap.String(),
		packetCh: make(chan *memberlist.Packet, 256), streamCh: make(chan net.Conn), done: make(chan struct{})}
	n.mu.Lock()
	n.hosts[t.key] = t
	n.mu.Unlock()
	return t
}

func (n *simNet) host(addr string) *simTransport {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = ap.String()
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.hosts[addr]
}

func (t *simTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.IP, t.addr.Port, nil
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	t.net.sent.Add(int64(len(b)))
	dest := t.net.host(addr)
	if dest == nil {
		return now, nil
	}
	select {
	case dest.packetCh <- &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.addr, Timestamp: now}:
	default: // the receiver's queue is full, or it stopped
	}
	return now, nil
}

func (t *simTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *simTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dest := t.net.host(addr)
	if dest == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	a, c := net.Pipe()
	select {
	case dest.streamCh <- simConn{c, &t.net.sent}:
		return simConn{a, &t.net.sent}, nil
	case <-dest.done:
	case <-time.After(timeout):
	}
	a.Close()
	c.Close()
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("timed out")}
}

func (t *simTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.net.mu.Lock()
		if t.net.hosts[t.key] == t {
			delete(t.net.hosts, t.key)
		}
		t.net.mu.Unlock()
	})
	return nil
}

type simConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c simConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}
