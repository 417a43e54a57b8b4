package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	gvlog "gvisor.dev/gvisor/pkg/log"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/consensus/consensustest"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// The policy benchmarks run Custos as it runs in production: every node has
// its own WireGuard mesh on loopback, Raft rides mesh TCP, every replica
// verifies every command's OpenPGP signature. Their baselines, plain
// hashicorp/raft, are in consensus/bench_test.go; `make bench` runs both
// and prints the ratios.

// benchFederation founds acme with dc-a, dc-b and the witness voting and a
// store of praha-1 replicating.
func benchFederation(b *testing.B, ctx context.Context) (f acme, voters []*Node, store *Node) {
	f = foundAcme(b, ctx)
	voters = []*Node{f.dc,
		joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"}),
		joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleWitness, Name: "witness"})}
	store = joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	waitTrue(b, 60*time.Second, "three voters", func() bool {
		v := 0
		for _, m := range f.dc.raft.Status().Members {
			if m.Voter {
				v++
			}
		}
		return v == 3
	})
	return f, voters, store
}

var benchSites int

// BenchmarkPolicyCommit: one signed site.add at a time, submitted on the
// leader (dc-a) and on a store (forwarded to the leader over the mesh),
// from Submit to the leader's apply result; every replica checks the
// signature.
func BenchmarkPolicyCommit(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, voters, store := benchFederation(b, ctx)
	for _, via := range []struct {
		name string
		n    *Node
	}{{"leader", voters[0]}, {"store", store}} {
		b.Run(via.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				benchSites++ // unique across -count runs of one federation
				env := signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite,
					Site: &policy.Site{Name: fmt.Sprintf("%s-%d", via.name, benchSites), Jurisdiction: "EU"}})
				start := time.Now()
				res, err := via.n.Submit(ctx, env)
				if err != nil || !res.Applied {
					b.Fatalf("submit: %+v %v", res, err)
				}
				lat = append(lat, time.Since(start))
			}
			reportLatency(b, lat)
		})
	}
}

// BenchmarkPolicyFailover: the leader (dc-a) stops; a client retries a
// signed command through the store until it commits. Reported: stop →
// first commit.
func BenchmarkPolicyFailover(b *testing.B) {
	var took []time.Duration
	for b.Loop() {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		f, voters, store := benchFederation(b, ctx)
		env := signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "after", Jurisdiction: "EU"}})
		b.StartTimer()
		start := time.Now()
		voters[0].Close()
		for {
			res, err := store.Submit(ctx, env)
			if err == nil && res.Applied {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("no commit after the leader stopped: %+v %v", res, err)
			}
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		cancel()
		for _, n := range append(voters[1:], store) {
			n.Close()
		}
		b.StartTimer()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "failover-ms")
}

// BenchmarkPolicyReplication50: three voters and 50 non-voter stores in one
// process, each with the real policy state machine (so each of the 53
// replicas verifies every signature), on consensus's loopback twin of the
// mesh: fifty WireGuard stacks in one process would measure the stacks, not
// the replication. Reported: time from Submit until every store applied
// the command, and heap per store.
func BenchmarkPolicyReplication50(b *testing.B) {
	const stores = 50
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(admin.Close)
	net := consensustest.New()
	var (
		fsms  []*policystore.Store
		nodes []*consensus.Node
	)
	open := func(i int) (*consensus.Node, *policystore.Store) {
		ps := policystore.New(nil)
		addr := consensustest.Addr(i)
		n, err := consensus.Open(consensus.Config{
			Dir: b.TempDir(), ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(addr, RaftPort),
			Network: net.Host(addr), FSM: ps,
			Admit: func(netip.Addr) error { return nil },
			Logf:  func(string, ...any) {},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		fsms, nodes = append(fsms, ps), append(nodes, n)
		return n, ps
	}
	var servers []consensus.Server
	for i := range 3 {
		open(i)
		servers = append(servers, consensus.Server{ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(consensustest.Addr(i), RaftPort)})
	}
	if err := nodes[0].Bootstrap(servers); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 3; i < 3+stores; i++ {
		open(i)
		srv := consensus.Server{ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(consensustest.Addr(i), RaftPort)}
		// Through whichever voter leads: fifty catching-up replicas on two
		// cores can cost the leader its lease.
		for err := errors.New("no leader"); err != nil; {
			for _, v := range nodes[:3] {
				if err = v.AddNonvoter(ctx, srv); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				b.Fatalf("add store %d: %v", i, err)
			}
		}
	}
	waitTrue(b, 2*time.Minute, "every store to hold the genesis", func() bool {
		for _, ps := range fsms {
			if ps.State().Federation == "" {
				return false
			}
		}
		return true
	})
	runtime.GC()
	runtime.ReadMemStats(&after)

	var lat []time.Duration
	i := 0
	for b.Loop() {
		var name string
		start := time.Now()
		for {
			// A leader change under this load may leave a command's outcome
			// unknown; a fresh one is retried, and the clock keeps running.
			i++
			name = fmt.Sprintf("site-%d", i)
			env := signed(b, admin, "alice", &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: name, Jurisdiction: "EU"}})
			_, err := nodes[3].Submit(ctx, env.Marshal())
			if err == nil {
				break
			}
			if ctx.Err() != nil || errors.Is(err, consensus.ErrRejected) {
				b.Fatal(err)
			}
		}
		for _, ps := range fsms {
			for {
				ch := ps.Changed() // before the read, so no change is missed
				if ps.State().Sites[name] != nil {
					break
				}
				select {
				case <-ch:
				case <-ctx.Done():
					b.Fatal(ctx.Err())
				}
			}
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/stores/(1<<20), "MiB/store")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(q int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*q/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(50), "p50-ms")
	b.ReportMetric(ms(99), "p99-ms")
}

// BenchmarkMeshRaftCommit separates the mesh's share of BenchmarkPolicyCommit
// from the policy's: three voters of our consensus layer, each on its own
// WireGuard mesh on loopback, a trivial state machine, no signatures, no
// audit; Submit on the leader.
func BenchmarkMeshRaftCommit(b *testing.B) {
	prefix, _ := keys.MeshPrefix("bench")
	var meshes []*mesh.Mesh
	var peers []mesh.Peer
	for i := range 3 {
		m, err := mesh.New(mesh.Config{PrivateKey: keys.NewNodePrivate(), Prefix: prefix, NoGossip: true, Name: fmt.Sprint("v", i)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		meshes = append(meshes, m)
		peers = append(peers, mesh.Peer{Name: fmt.Sprint("v", i), PublicKey: m.PublicKey(),
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.ListenPort())})
	}
	var nodes []*consensus.Node
	var servers []consensus.Server
	for i, m := range meshes {
		var others []mesh.Peer
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		if err := m.SetPeers(others); err != nil {
			b.Fatal(err)
		}
		n, err := consensus.Open(consensus.Config{
			Dir: b.TempDir(), ID: fmt.Sprint("v", i), Addr: netip.AddrPortFrom(m.Addr(), RaftPort),
			Network: meshNetwork{m}, FSM: nopFSM{},
			Admit: func(netip.Addr) error { return nil },
			Logf:  func(string, ...any) {},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
		servers = append(servers, consensus.Server{ID: fmt.Sprint("v", i), Addr: netip.AddrPortFrom(m.Addr(), RaftPort)})
	}
	if err := nodes[0].Bootstrap(servers); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := nodes[0].Submit(ctx, []byte("warm-up")); err != nil {
		b.Fatal(err)
	}
	cmd := make([]byte, 256)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := nodes[0].Submit(ctx, cmd); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

type nopFSM struct{}

func (nopFSM) Apply([]byte, uint64) ([]byte, error) { return nil, nil }
func (nopFSM) Snapshot() ([]byte, error)            { return nil, nil }
func (nopFSM) Restore([]byte) error                 { return nil }

// TestMain silences gVisor's own logger, which writes to stderr and splits
// benchmark result lines (cmd/custos does the same).
func TestMain(m *testing.M) {
	gvlog.SetTarget(quietEmitter{})
	os.Exit(m.Run())
}

type quietEmitter struct{}

func (quietEmitter) Emit(int, gvlog.Level, time.Time, string, ...any) {}

// BenchmarkRelease: one request at a time for 4 s of a recording camera,
// approved by two approvers, exported on an admin node. Reported: the time
// from the commit of the last approval to every epoch key of the scope
// usable on the requester (p50, p99), and the export's decrypt-and-remux
// throughput (keys excluded), to set beside keys' BenchmarkDecryptSegment.
func BenchmarkRelease(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := foundAcme(b, ctx)
	joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	submit := func(dir string, env policy.Envelope) {
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			b.Fatalf("submit: %+v %v", res, err)
		}
	}
	const cam = "praha-1/entrance"
	submit(f.dc.cfg.Dir, signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{
		Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "p", LegalBasis: "b", Retention: 72 * time.Hour}}))
	desk := joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	st1 := joinAcmeWith(b, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	approvers := f.seal(b, ctx)
	var segs []store.SegmentMeta
	waitTrue(b, 60*time.Second, "6 recorded segments", func() bool {
		segs, _ = st1.rec.Store().Segments(cam, time.Time{}, time.Now().Add(time.Hour))
		return len(segs) >= 6
	})
	from := segs[1].Start
	to := from.Add(4 * time.Second)
	var lat []time.Duration
	var bytes int64
	var decrypt time.Duration
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("r%d", i)
		pub, err := desk.NewReleaseKey()
		if err != nil {
			b.Fatal(err)
		}
		submit(desk.cfg.Dir, signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
			ID: id, Node: "desk", Selector: cam, From: from, To: to, Purpose: "bench", Basis: "bench", Key: pub, Expires: time.Now().Add(time.Hour)}}))
		waitTrue(b, 10*time.Second, "the request on desk", func() bool { return desk.Policy().Requests[id] != nil })
		digest := policy.RequestDigest(testFederation, desk.Policy().Requests[id])
		for _, name := range []string{"bob", "carol"} {
			submit(desk.cfg.Dir, signed(b, approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
				Approval: &policy.Approval{Request: id, Digest: digest}}))
		}
		approved := time.Now()
		res, err := desk.Export(ctx, order(b, f.admin, release.ExportRequest{Request: id, Out: filepath.Join(b.TempDir(), id+".ts"), Exporter: "alice"}))
		if err != nil || res.Refused != "" {
			b.Fatalf("export: %+v %v", res, err)
		}
		lat = append(lat, time.Since(approved)-res.Total+res.Release)
		bytes += res.Ciphertext
		decrypt += res.Total - res.Release
	}
	reportLatency(b, lat)
	b.ReportMetric(float64(bytes)/1e6/decrypt.Seconds(), "MB/s")
}
