package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/consensus/consensustest"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/policy"
)

// The join benchmarks: how long stores that just joined take, from their
// start, to hold the policy the leader held (a log of joinLogSites sites,
// their own invites and redeems, a last mark), one store alone and many
// started at once. BenchmarkJoinCatchUp runs whole nodes (WireGuard mesh,
// gossip, the node service, audit) on 127.0.0.1; its baseline,
// BenchmarkJoinCatchUpRaft, has plain Raft replicate the same log to the
// same number of new non-voters on consensus's loopback twin of the mesh,
// with the same state machine (every replica checks every signature).

// joinLogSites is how many sites the federation commits before the stores
// join: a log of a few AppendEntries batches, as a working federation has.
const joinLogSites = 100

// joinManyStores is how many stores join at once; CUSTOS_JOIN_STORES
// overrides it.
func joinManyStores() int {
	if n, err := strconv.Atoi(os.Getenv("CUSTOS_JOIN_STORES")); err == nil && n > 0 {
		return n
	}
	return 50
}

// joiningFederation founds acme with joinLogSites sites and joins n stores
// (joined, not started), then commits the mark they must reach.
func joiningFederation(b *testing.B, ctx context.Context, n int) (acme, []Config) {
	f := foundAcme(b, ctx)
	addSites(b, ctx, f, "site", joinLogSites)
	cfgs := make([]Config, n)
	for i := range cfgs {
		name := fmt.Sprintf("store-%d", i)
		tok := inviteStore(b, ctx, f, name)
		cfgs[i] = Config{Dir: filepath.Join(f.tmp, name), Name: name, Listen: f.listen(), Logf: testLogf(b, name)}
		if res, err := PrepareJoin(ctx, cfgs[i], tok); err != nil || !res.Applied {
			b.Fatalf("join %s: %+v %v", name, res, err)
		}
	}
	addSites(b, ctx, f, "mark", 1)
	return f, cfgs
}

func hasMark(st *policy.State) bool { return st.Sites["mark-0"] != nil }

// BenchmarkJoinCatchUp: n joined stores start at once; each is timed from
// its node.New returning to its replica holding the mark. Reported: p50-ms
// and p90-ms over the stores.
func BenchmarkJoinCatchUp(b *testing.B) {
	for _, n := range []int{1, joinManyStores()} {
		b.Run(storesName(n), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				took = append(took, joinStoresOnce(b, n)...)
				b.StartTimer()
			}
			reportQuantiles(b, took)
		})
	}
}

func joinStoresOnce(b *testing.B, n int) []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, cfgs := joiningFederation(b, ctx, n)
	defer f.dc.Close()
	took := make([]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var nodes []*Node
	for i, cfg := range cfgs {
		wg.Go(func() {
			node, err := New(cfg)
			if err != nil {
				errs <- err
				return
			}
			up := time.Now()
			mu.Lock()
			nodes = append(nodes, node)
			mu.Unlock()
			at, ok := waitPolicy(node, 5*time.Minute, hasMark)
			if !ok {
				errs <- fmt.Errorf("%s: no mark after 5 min", cfg.Name)
				return
			}
			took[i] = at.Sub(up)
		})
	}
	wg.Wait()
	close(errs)
	for _, node := range nodes {
		node.Close()
	}
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return took
}

// BenchmarkJoinCatchUpRaft is BenchmarkJoinCatchUp's baseline: the log the
// founded and joined federation holds (the leader's applied commands),
// committed by one voter of plain consensus on its loopback twin; n new
// nodes open at once and the voter adds them as non-voters, as the
// leader's Voters does. Each is timed from consensus.Open returning to its
// replica holding the mark.
func BenchmarkJoinCatchUpRaft(b *testing.B) {
	for _, n := range []int{1, joinManyStores()} {
		b.Run(storesName(n), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				took = append(took, raftJoinOnce(b, n)...)
				b.StartTimer()
			}
			reportQuantiles(b, took)
		})
	}
}

func raftJoinOnce(b *testing.B, n int) []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, _ := joiningFederation(b, ctx, n)
	anchor, err := readAnchor(f.dc.cfg.Dir)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := f.dc.policy.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	f.dc.Close()
	var snap struct{ Log [][]byte }
	if err := json.Unmarshal(raw, &snap); err != nil {
		b.Fatal(err)
	}

	net := consensustest.New()
	open := func(i int) (*consensus.Node, *policystore.Store) {
		ps := policystore.New(anchor)
		addr := consensustest.Addr(i)
		c, err := consensus.Open(consensus.Config{Dir: b.TempDir(), ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(addr, RaftPort),
			Network: net.Host(addr), FSM: ps, Admit: func(netip.Addr) error { return nil }})
		if err != nil {
			b.Fatal(err)
		}
		return c, ps
	}
	leader, _ := open(0)
	defer leader.Close()
	if err := leader.Bootstrap([]consensus.Server{{ID: "n0", Addr: netip.AddrPortFrom(consensustest.Addr(0), RaftPort)}}); err != nil {
		b.Fatal(err)
	}
	for _, env := range snap.Log {
		if _, err := leader.Submit(ctx, env); err != nil {
			b.Fatalf("replaying the federation's log: %v", err)
		}
	}

	took := make([]time.Duration, n)
	errs := make(chan error, n)
	added := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, ps := open(i + 1)
			defer c.Close()
			up := time.Now()
			added <- i + 1
			for {
				ch := ps.Changed()
				if hasMark(ps.State()) {
					took[i] = time.Since(up)
					return
				}
				select {
				case <-ch:
				case <-ctx.Done():
					errs <- fmt.Errorf("n%d: no mark: %w", i+1, ctx.Err())
					return
				}
			}
		})
	}
	for range n {
		i := <-added
		srv := consensus.Server{ID: fmt.Sprintf("n%d", i), Addr: netip.AddrPortFrom(consensustest.Addr(i), RaftPort)}
		if err := leader.AddNonvoter(ctx, srv); err != nil {
			b.Fatalf("add n%d: %v", i, err)
		}
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs); err != nil {
		b.Fatal(err)
	}
	return took
}

// storesName names a sub-benchmark by its count of stores, with no "="
// in it: benchreport's ratios split at the last one.
func storesName(n int) string {
	if n == 1 {
		return "1store"
	}
	return fmt.Sprintf("%dstores", n)
}

// reportQuantiles reports the median and 90th percentile of took, in ms.
func reportQuantiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	q := func(p int) float64 {
		return float64(took[min(len(took)-1, len(took)*p/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(50), "p50-ms")
	b.ReportMetric(q(90), "p90-ms")
	b.ReportMetric(0, "ns/op") // one federation per op: its setup is not timed
}
