package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/consensus/consensustest"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/policy"
)

// scaleAdmins is how many admin nodes the simulated federation has; like
// stores they are Raft non-voters, and they submit the measured changes.
const scaleAdmins = 10

// BenchmarkFederationScale simulates a federation of 2 datacenters and a
// witness (the voters), CUSTOS_SCALE_STORES stores (comma-separated sizes,
// one sub-benchmark each) and 10 admin nodes, all Raft replicas in one
// process on consensus's loopback twin of the mesh, each with the real
// policy state machine (every replica verifies every signature). Each
// iteration is one signed camera.add submitted on an admin node (forwarded
// to the leader) and timed until every replica applied it. `make scale`
// runs it; without CUSTOS_SCALE_STORES it is skipped, so `go test -bench .`
// does not start five hundred replicas by accident.
//
// Reported per size:
//   - apply-all-p50-ms, apply-all-max-ms: Submit → the last replica's apply;
//   - leader-KB/change: bytes the leader's transport wrote during a change
//     (heartbeats in that window included);
//   - cpu-ms/change: the process's CPU (all replicas) per change;
//   - leader-idle-KB/s, idle-cpu-ms/s: the same at rest (heartbeats);
//   - heap-KiB/store, goroutines/store: what one more non-voter costs;
//   - state-bytes: the policy snapshot's size;
//   - snapshots-installed: snapshot restores in any replica's policy state
//     machine during the measured changes (must be 0: no full-state
//     transfer per change).
//
// CUSTOS_SCALE_HEAPPROFILE=path writes a heap profile to path.N once the N
// stores caught up, to see what the heap per store is made of.
func BenchmarkFederationScale(b *testing.B) {
	sizes := os.Getenv("CUSTOS_SCALE_STORES")
	if sizes == "" {
		b.Skip("set CUSTOS_SCALE_STORES (e.g. 50,100,250,500); `make scale` does")
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			b.Fatalf("CUSTOS_SCALE_STORES: %q is not a count", s)
		}
		b.Run(fmt.Sprintf("stores=%d", n), func(b *testing.B) { benchScale(b, n) })
	}
}

// scaleReplica is one replica's policy state machine, instrumented: it
// notes when it applies the change being measured and counts restores.
type scaleReplica struct {
	*policystore.Store
	run      *scaleRun
	restores atomic.Int64
}

// scaleRun is the change being measured.
type scaleRun struct {
	target  atomic.Pointer[[]byte] // the envelope being waited for
	pending atomic.Int64           // replicas yet to apply it
	last    atomic.Int64           // unix ns of the latest apply
	done    chan struct{}          // closed when pending reaches 0
}

func (r *scaleReplica) Apply(cmd []byte, index uint64) ([]byte, error) {
	res, err := r.Store.Apply(cmd, index)
	if t := r.run.target.Load(); t != nil && bytes.Equal(cmd, *t) {
		now := time.Now().UnixNano()
		for {
			old := r.run.last.Load()
			if now <= old || r.run.last.CompareAndSwap(old, now) {
				break
			}
		}
		if r.run.pending.Add(-1) == 0 {
			close(r.run.done)
		}
	}
	return res, err
}

func (r *scaleReplica) Restore(b []byte) error {
	r.restores.Add(1)
	return r.Store.Restore(b)
}

// countingNet counts the bytes one host writes on its conns, both those it
// dialed and those it accepted.
type countingNet struct {
	consensus.Network
	sent atomic.Int64
}

func (c *countingNet) Listen(port uint16) (net.Listener, error) {
	l, err := c.Network.Listen(port)
	if err != nil {
		return nil, err
	}
	return countingListener{l, &c.sent}, nil
}

func (c *countingNet) Dial(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	conn, err := c.Network.Dial(ctx, a)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, &c.sent}, nil
}

type countingListener struct {
	net.Listener
	sent *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{conn, l.sent}, nil
}

type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchScale(b *testing.B, stores int) {
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(admin.Close)
	network := consensustest.New()
	run := &scaleRun{}
	var (
		replicas []*scaleReplica
		nodes    []*consensus.Node
		nets     []*countingNet
	)
	server := func(i int) consensus.Server {
		return consensus.Server{ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(consensustest.Addr(i), RaftPort)}
	}
	open := func(i int) {
		r := &scaleReplica{Store: policystore.New(nil), run: run}
		cn := &countingNet{Network: network.Host(consensustest.Addr(i))}
		n, err := consensus.Open(consensus.Config{
			Dir: b.TempDir(), ID: server(i).ID, Addr: server(i).Addr,
			Network: cn, FSM: r,
			Admit: func(netip.Addr) error { return nil },
			Logf:  func(string, ...any) {},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		replicas, nodes, nets = append(replicas, r), append(nodes, n), append(nets, cn)
	}
	var voters []consensus.Server
	for i := range 3 {
		open(i)
		voters = append(voters, server(i))
	}
	if err := nodes[0].Bootstrap(voters); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	nk := keys.NewNodePrivate()
	gbody, _ := policy.EncodeCommand(&policy.Command{ID: "genesis", Time: time.Now().UTC(), Kind: policy.KindGenesis, Genesis: &policy.Genesis{
		Federation: "acme",
		Admin:      policy.User{Name: "alice", Role: policy.UserAdmin, PublicKey: admin.PublicKey(), Fingerprint: admin.Fingerprint()},
		Node:       policy.Node{Name: "dc-a", PublicKey: nk.Public().String(), Role: policy.RoleDatacenter, Jurisdiction: "EU"},
	}})
	testFederation = policy.FederationID("acme", admin.Fingerprint(), nk.Public().String())
	nk.Zero()
	if _, err := nodes[0].Submit(ctx, policy.Envelope{Body: gbody}.Marshal()); err != nil {
		b.Fatal(err)
	}
	submit := func(via *consensus.Node, env policy.Envelope) {
		// A leader change under this load may leave an outcome unknown;
		// the same envelope again is refused as a replay, which is fine
		// for setup.
		for {
			_, err := via.Submit(ctx, env.Marshal())
			if err == nil || errors.Is(err, consensus.ErrRejected) {
				return
			}
			if ctx.Err() != nil {
				b.Fatal(err)
			}
		}
	}
	submit(nodes[0], signed(b, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}}))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	replicated := stores + scaleAdmins
	setup := time.Now()
	for i := 3; i < 3+replicated; i++ {
		open(i)
		// Through whichever voter leads: hundreds of catching-up replicas
		// on two cores can cost the leader its lease.
		for err := errors.New("no leader"); err != nil; {
			for _, v := range nodes[:3] {
				if err = v.AddNonvoter(ctx, server(i)); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				b.Fatalf("add replica %d: %v", i, err)
			}
		}
	}
	waitTrue(b, 10*time.Minute, "every replica to hold the site", func() bool {
		for _, r := range replicas {
			if r.State().Sites["praha-1"] == nil {
				return false
			}
		}
		return true
	})
	b.Logf("%d replicas joined and caught up in %v", len(replicas), time.Since(setup).Round(time.Millisecond))
	runtime.GC()
	runtime.ReadMemStats(&after)
	goroutines = runtime.NumGoroutine() - goroutines
	if p := os.Getenv("CUSTOS_SCALE_HEAPPROFILE"); p != "" {
		// What the replicas hold, once all have caught up.
		f, err := os.Create(fmt.Sprintf("%s.%d", p, stores))
		if err != nil {
			b.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}

	leader := func() int {
		for {
			for i, n := range nodes[:3] {
				if n.Status().Role == consensus.Leader {
					return i
				}
			}
			if ctx.Err() != nil {
				b.Fatal("no leader")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// At rest: heartbeats only.
	time.Sleep(2 * time.Second)
	const idle = 3 * time.Second
	l := leader()
	sent0, cpu0, t0 := nets[l].sent.Load(), cpuTime(), time.Now()
	time.Sleep(idle)
	idleSecs := time.Since(t0).Seconds()
	idleBytes := float64(nets[l].sent.Load()-sent0) / idleSecs
	idleCPU := float64(cpuTime()-cpu0) / float64(time.Millisecond) / idleSecs

	var restores0 int64
	for _, r := range replicas {
		restores0 += r.restores.Load()
	}
	var (
		lat        []time.Duration
		leaderSent int64
		cpu        time.Duration
		changes    int
	)
	admins := nodes[3+stores:]
	for b.Loop() {
		b.StopTimer()
		changes++
		name := fmt.Sprintf("cam-%d", changes)
		env := signed(b, admin, "alice", &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{
			Site: "praha-1", Name: name, Source: "synthetic:", Purpose: "p", LegalBasis: "b", Retention: 72 * time.Hour}}).Marshal()
		run.done = make(chan struct{})
		run.pending.Store(int64(len(replicas)))
		run.last.Store(0)
		run.target.Store(&env)
		via := admins[changes%len(admins)]
		l := leader()
		sent0, cpu0 := nets[l].sent.Load(), cpuTime()
		b.StartTimer()
		start := time.Now()
		if _, err := via.Submit(ctx, env); err != nil {
			// Not retried: a second copy would be refused as a replay and
			// never be applied, and the wait below would not end.
			b.Fatalf("submit %s: %v", name, err)
		}
		select {
		case <-run.done:
		case <-ctx.Done():
			b.Fatalf("%s: %d replicas never applied it", name, run.pending.Load())
		}
		b.StopTimer()
		lat = append(lat, time.Unix(0, run.last.Load()).Sub(start))
		cpu += cpuTime() - cpu0
		leaderSent += nets[l].sent.Load() - sent0
		run.target.Store(nil)
		for i, r := range replicas {
			if r.State().Cameras["praha-1/"+name] == nil {
				b.Fatalf("replica %d applied %s but its policy does not hold it", i, name)
			}
		}
		// Let the followers' commit index settle, as between admins'
		// changes, so each change is measured alone.
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()
	}
	var restores int64
	for _, r := range replicas {
		restores += r.restores.Load()
	}
	state, err := replicas[0].Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "apply-all-p50-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "apply-all-max-ms")
	b.ReportMetric(float64(leaderSent)/float64(changes)/1e3, "leader-KB/change")
	b.ReportMetric(ms(cpu)/float64(changes), "cpu-ms/change")
	b.ReportMetric(idleBytes/1e3, "leader-idle-KB/s")
	b.ReportMetric(idleCPU, "idle-cpu-ms/s")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(replicated)/1024, "heap-KiB/store")
	b.ReportMetric(float64(goroutines)/float64(replicated), "goroutines/store")
	b.ReportMetric(float64(len(state)), "state-bytes")
	b.ReportMetric(float64(restores-restores0), "snapshots-installed")
}
