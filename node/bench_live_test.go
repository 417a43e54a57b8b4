package node

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// Live view and replication benchmarks. `make bench` prints them beside
// their baselines measured in the same run: the store's own live hub read
// in-process, and a plain QUIC stream over the same two nodes' mesh.

// liveWatch is how long each viewer watches per iteration, after the GOP
// the ring replays at the start.
const liveWatch = 5 * time.Second

// liveFederation founds acme with a store of praha-1 recording one paced
// synthetic camera (frames stamped with the wall clock as they are
// emitted) and an admin node "desk" granted live view of praha-1.
func liveFederation(b *testing.B, ctx context.Context) (st, desk *Node, cam string) {
	return liveFederationWith(b, ctx, func(*Config) {})
}

// liveFederationWith is liveFederation with tweak applied to the store's
// and desk's configurations.
func liveFederationWith(b *testing.B, ctx context.Context, tweak func(*Config)) (st, desk *Node, cam string) {
	f := foundAcme(b, ctx)
	cam = "praha-1/entrance"
	submit := func(c *policy.Command) {
		if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(b, f.admin, "alice", c)); err != nil || !res.Applied {
			b.Fatalf("%s: %+v %v", c.Kind, res, err)
		}
	}
	submit(&policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:",
		Purpose: "p", LegalBasis: "b", Retention: 72 * time.Hour}})
	st = joinAcmeWith(b, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
		tweak(c)
	})
	desk = joinAcmeWith(b, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"}, tweak)
	submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "bench"}})
	waitTrue(b, 60*time.Second, "the store to record", func() bool {
		s, err := st.Status()
		return err == nil && s.Recording != nil && len(s.Recording.Cameras) == 1 && s.Recording.Cameras[0].Frames > 30
	})
	waitTrue(b, 30*time.Second, "desk to know the store", func() bool { return hasPeer(desk, "store") })
	waitTrue(b, 30*time.Second, "the store to apply the grant", func() bool { return st.Policy().Grants["g-desk"] != nil })
	return st, desk, cam
}

// liveFrames collects glass-to-glass latencies of live frames: it skips
// the GOP the ring replays at the start (every frame before the second
// keyframe), then records time.Since(capture time) for each frame.
type liveFrames struct {
	mu  sync.Mutex
	lat []time.Duration
}

// viewer returns the OnFrame of one viewer.
func (l *liveFrames) viewer() func(h264.Frame) {
	kf := 0
	return func(f h264.Frame) {
		d := time.Since(f.Time)
		if f.Key {
			kf++
		}
		if kf < 2 {
			return
		}
		l.mu.Lock()
		l.lat = append(l.lat, d)
		l.mu.Unlock()
	}
}

func (l *liveFrames) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		b.Fatal("no live frames")
	}
	b.ReportMetric(float64(len(l.lat)), "frames")
	reportLatency(b, l.lat)
}

// watchFor is one viewer's context: the replayed GOP (≤ 2 s) plus liveWatch.
func watchFor(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Second+liveWatch)
}

// BenchmarkLiveLatency: 1 or 10 viewers on desk watch the store's camera
// through Node.Live (QUIC over the WireGuard mesh, the store's recheck
// loop, the viewer's muxer). Reported: p50/p99 of capture time → frame at
// the viewer node over all viewers' live frames, and their count. One
// iteration is about liveWatch of watching; run with -benchtime=1x.
func BenchmarkLiveLatency(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, desk, cam := liveFederation(b, ctx)
	for _, viewers := range []int{1, 10} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			var l liveFrames
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, viewers)
				for range viewers {
					wg.Go(func() {
						wctx, wcancel := watchFor(ctx)
						defer wcancel()
						res, err := desk.Live(wctx, cam, io.Discard, live.Options{OnFrame: l.viewer()})
						if err != nil && wctx.Err() == nil {
							errs <- err
						} else if res.Ended != "" {
							errs <- fmt.Errorf("stream ended: %s", res.Ended)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
			l.report(b)
		})
	}
}

// BenchmarkLiveLatencyBaseline: the same federation and camera, the store's
// media.Live hub read in-process (no mesh, no QUIC, no muxer): what
// BenchmarkLiveLatency adds to it is the mesh path.
func BenchmarkLiveLatencyBaseline(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, _, cam := liveFederation(b, ctx)
	var l liveFrames
	for b.Loop() {
		hub := st.rec.LiveHub(cam)
		if hub == nil {
			b.Fatal("the camera does not record")
		}
		v, err := hub.Subscribe()
		if err != nil {
			b.Fatal(err)
		}
		on := l.viewer()
		wctx, wcancel := watchFor(ctx)
		for {
			f, err := v.Next(wctx)
			if err != nil {
				if wctx.Err() == nil {
					b.Fatal(err)
				}
				break
			}
			on(f)
		}
		wcancel()
		v.Close()
	}
	l.report(b)
}

// backlogSource replays the unpaced synthetic source shifted into the
// past, stops after a given number of frames, and holds back while the
// recorder's queue is half full (so no segment is dropped).
type backlogSource struct {
	inner  source.Source
	shift  time.Duration
	frames int
	rec    *media.Recorder
	done   chan struct{}
}

func (s *backlogSource) Run(ctx context.Context, emit func(h264.Frame) error) error {
	n := 0
	return s.inner.Run(ctx, func(f h264.Frame) error {
		if n == s.frames {
			close(s.done)
			<-ctx.Done()
			return ctx.Err()
		}
		if f.Key {
			for st := s.rec.Stats(); st.Queued > st.QueueCap/2; st = s.rec.Stats() {
				time.Sleep(5 * time.Millisecond)
			}
		}
		n++
		f.Time = f.Time.Add(-s.shift)
		return emit(f)
	})
}

func (s *backlogSource) Stats() source.Stats { return s.inner.Stats() }

// recordBacklog records footage of camera into the media store at dir with
// the real recorder (4 s segments, epoch records with shares for the
// policy's custodians), unpaced, ending about a minute ago.
func recordBacklog(b *testing.B, nodeDir, name, camera string, footage time.Duration, custodians []keys.Custodian) {
	// Sealed with the store node's own key, as its recorder would.
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(nodeDir))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := keys.NewCustodySigner(name, &priv)
	priv.Zero()
	if err != nil {
		b.Fatal(err)
	}
	defer signer.Zero()
	s, err := store.Open(MediaDir(nodeDir), store.Options{MinFree: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	inner, err := source.Open("synthetic:?pace=none", source.Options{})
	if err != nil {
		b.Fatal(err)
	}
	src := &backlogSource{inner: inner, shift: footage + time.Minute, frames: int(footage / (40 * time.Millisecond)), done: make(chan struct{})}
	src.rec, err = media.NewRecorder(media.RecorderConfig{Camera: camera, Source: src, Store: s, Custodians: custodians, Signer: signer, QueueSegments: 64})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.rec.Run(ctx) }()
	select {
	case <-src.done:
	case err := <-ran:
		b.Fatalf("recording the backlog: %v", err)
	}
	cancel()
	<-ran
	if st := src.rec.Stats(); st.SegmentsLost != 0 {
		b.Fatalf("recording the backlog: %d segments lost: %s", st.SegmentsLost, st.LastError)
	}
}

// joinBacklogStore joins the store of praha-1 holding footage of camera
// (real sealed segments from the recording pipeline: recordBacklog,
// written before the node starts) and returns it, the backlog's segments
// and the store's figures for the camera.
func joinBacklogStore(b *testing.B, ctx context.Context, f acme, camera string, footage time.Duration) (*Node, []store.SegmentMeta, store.Stats) {
	b.Helper()
	var segs []store.SegmentMeta
	var stats store.Stats
	st := joinAcmeWith(b, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{MinFree: -1}
		custodians, err := recording.CustodiansOf(f.dc.policy.State())
		if err != nil {
			b.Fatal(err)
		}
		recordBacklog(b, c.Dir, "store", camera, footage, custodians)
		s, err := store.Open(MediaDir(c.Dir), store.Options{MinFree: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		segs, err = s.Segments(camera, time.Unix(0, 0), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || len(segs) == 0 {
			b.Fatalf("backlog: %d segments, %v", len(segs), err)
		}
		if stats, err = s.Stats(camera); err != nil {
			b.Fatal(err)
		}
	})
	return st, segs, stats
}

// BenchmarkReplicationCatchUp: a store comes up holding a backlog of one
// camera (CUSTOS_BACKLOG, default 1h of the clip's footage: real encrypted
// segments and epoch records from the recording pipeline, written before
// the store node starts); dc-a pulls it over QUIC in the mesh and writes it
// to its own store. Timed from dc-a's first pull (the store's audit entry)
// until the store's status shows dc-a acknowledged the newest segment.
// Reported: MB/s (segment and epoch bytes over that time), catch-up-s and
// realtime-x (footage duration / catch-up time). Beside it,
// /mesh-quic-plain: the same bytes on one QUIC stream from the store to
// dc-a over the same mesh, discarded on arrival, for the ratio.
func BenchmarkReplicationCatchUp(b *testing.B) {
	footage := time.Hour
	if v := os.Getenv("CUSTOS_BACKLOG"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			b.Fatalf("CUSTOS_BACKLOG=%q: want a duration of at least 1m", v)
		}
		footage = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	f := foundAcme(b, ctx)
	const cam = "praha-1/backlog" // not in the policy: nothing records it live
	var (
		total    int64
		recorded time.Duration
		newest   time.Time
	)
	start := time.Now()
	st, segs, stats := joinBacklogStore(b, ctx, f, cam, footage)
	for _, m := range segs {
		recorded += m.End.Sub(m.Start)
	}
	total = stats.Bytes
	newest = segs[len(segs)-1].End
	b.Logf("backlog: %v of footage, %d segments, %d epochs, %.1f MB, recorded and joined in %v",
		recorded.Round(time.Second), len(segs), stats.Epochs, float64(total)/1e6, time.Since(start).Round(time.Millisecond))

	b.Run("pull", func(b *testing.B) {
		if b.N != 1 {
			b.Skip("the backlog is pulled once; run with -benchtime=1x")
		}
		var done time.Time
		waitTrue(b, 15*time.Minute, "dc-a to catch up", func() bool {
			s, err := st.Status()
			if err != nil {
				return false
			}
			for _, r := range s.Replication {
				if r.Camera == cam && r.Datacenter == "dc-a" && r.LagSegments == 0 && r.UpTo.Equal(newest) {
					done = time.Now()
					return true
				}
			}
			return false
		})
		es, err := st.Audit(time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		var began time.Time
		for _, e := range es {
			if e.Action == "replicate" && e.Actor == "dc-a" && e.Decision == "allow" {
				began = e.Time
				break
			}
		}
		if began.IsZero() {
			b.Fatal("no audited first pull of dc-a")
		}
		took := done.Sub(began)
		b.ReportMetric(float64(total)/1e6/took.Seconds(), "MB/s")
		b.ReportMetric(took.Seconds(), "catch-up-s")
		b.ReportMetric(recorded.Seconds()/took.Seconds(), "realtime-x")
		b.ReportMetric(recorded.Minutes(), "footage-min")
	})

	b.Run("mesh-quic-plain", func(b *testing.B) {
		admit := mesh.QUICConfig{Admit: func(keys.NodePublic) error { return nil }}
		ln, err := f.dc.mesh.ListenQUIC(0, admit)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		to := netip.AddrPortFrom(f.dc.mesh.Addr(), ln.Port())
		buf := make([]byte, 256<<10)
		var took time.Duration
		for b.Loop() {
			start := time.Now()
			got := make(chan error, 1)
			go func() {
				c, err := ln.Accept(ctx)
				if err != nil {
					got <- err
					return
				}
				defer c.Close()
				s, err := c.AcceptStream(ctx)
				if err != nil {
					got <- err
					return
				}
				n, err := io.Copy(io.Discard, s)
				if err == nil && n != total {
					err = fmt.Errorf("received %d of %d bytes", n, total)
				}
				got <- err
			}()
			c, err := st.mesh.DialQUIC(ctx, to, admit)
			if err != nil {
				b.Fatal(err)
			}
			s, err := c.OpenStreamSync(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for left := total; left > 0; {
				n, err := s.Write(buf[:min(left, int64(len(buf)))])
				if err != nil {
					b.Fatal(err)
				}
				left -= int64(n)
			}
			s.Close()
			if err := <-got; err != nil {
				b.Fatal(err)
			}
			took += time.Since(start)
			c.Close()
		}
		b.ReportMetric(float64(total)*float64(b.N)/1e6/took.Seconds(), "MB/s")
	})
}
