package console

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/console/rtc"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// liveWarmup is skipped at the start of each watch: the GOP the store's
// ring replays to a new viewer arrives as a burst, and is not live.
const (
	liveWarmup = 3 * time.Second
	liveWatch  = 8 * time.Second
	ptsMask    = 1<<33 - 1
)

// delaySince is how long ago, at at, the camera captured the frame of
// 90 kHz PTS pts (the camera's wall clock, as media/ts stamps it).
func delaySince(at time.Time, pts uint64) time.Duration {
	return time.Duration((ts.PTS(at)-pts)&ptsMask) * time.Second / 90000
}

// ptsArrivals is an io.Writer for MPEG-TS that records, for each video
// PES as its first packet arrives, the delay since its capture.
type ptsArrivals struct {
	mu    sync.Mutex
	buf   []byte
	first time.Time
	delay []time.Duration
}

func (a *ptsArrivals) Write(p []byte) (int, error) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = append(a.buf, p...)
	for len(a.buf) >= 188 {
		pkt := a.buf[:188]
		a.buf = a.buf[188:]
		if pkt[0] != 0x47 || pkt[1]&0x40 == 0 { // not the start of a PES or table
			continue
		}
		off := 4
		if pkt[3]&0x20 != 0 {
			off += 1 + int(pkt[4])
		}
		pes := pkt[min(off, 188):]
		// A PES start code, a video stream ID, and a PTS.
		if len(pes) < 14 || pes[0] != 0 || pes[1] != 0 || pes[2] != 1 || pes[3]&0xf0 != 0xe0 || pes[7]&0x80 == 0 {
			continue
		}
		b := pes[9:14]
		pts := uint64(b[0]>>1&0x07)<<30 | uint64(b[1])<<22 | uint64(b[2]>>1)<<15 | uint64(b[3])<<7 | uint64(b[4]>>1)
		if a.first.IsZero() {
			a.first = now
		}
		if now.Sub(a.first) >= liveWarmup {
			a.delay = append(a.delay, delaySince(now, pts))
		}
	}
	return len(p), nil
}

func reportDelays(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		b.Fatal("no live frames")
	}
	slices.Sort(ds)
	q := func(p int) float64 { return float64(ds[(len(ds)-1)*p/100]) / float64(time.Millisecond) }
	b.ReportMetric(q(50), "p50-ms")
	b.ReportMetric(q(99), "p99-ms")
	b.ReportMetric(float64(len(ds)), "frames")
}

// BenchmarkConsoleLiveDelay: the delay from a store's camera capturing a
// frame to the frame reaching the viewer, on this machine. browser: the
// console's live tile in headless Chromium, to the frame it presents
// (requestVideoFrameCallback; the store, the mesh, the admin node, the
// console and WebRTC); cli: the same camera to custos live's output, as
// the node hands it over (node.LiveVia, what the CLI calls). One iteration
// watches liveWatch after liveWarmup; run with -benchtime=1x.
func BenchmarkConsoleLiveDelay(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	br := startChromium(b, ctx)
	f := startFed(b)
	const cam = "praha-1/entrance"
	waitRecording(b, f.join(b, ctx, node.InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"},
		&recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}))
	f.submit(b, ctx, &policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "dc-a"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "bench"}})
	s := startConsole(b, f, "alice", 0)
	br.login(s.URL())

	b.Run("cli", func(b *testing.B) {
		var all []time.Duration
		for b.Loop() {
			a := &ptsArrivals{}
			wctx, wcancel := context.WithTimeout(ctx, liveWarmup+liveWatch)
			_, err := node.LiveVia(wctx, f.dir, cam, a)
			wcancel()
			if err != nil && wctx.Err() == nil {
				b.Fatal(err)
			}
			all = append(all, a.delay...)
		}
		reportDelays(b, all)
	})

	b.Run("browser", func(b *testing.B) {
		var all []time.Duration
		for b.Loop() {
			br.do("open the tile", chromedp.Navigate(s.URL()+"/live?camera="+cam))
			if _, err := chromedp.Run(br.ctx, chromedp.Poll[chromedp.Void](`document.querySelector("video").videoWidth > 16`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
				b.Fatalf("no frame: %v", err)
			}
			time.Sleep(liveWarmup)
			br.do("watch", chromedp.Evaluate[chromedp.Void](`(() => {
				const v = document.querySelector("video");
				window.custosFrames = [];
				const on = (now, md) => {
					window.custosFrames.push([md.rtpTimestamp, performance.timeOrigin + md.presentationTime]);
					v.requestVideoFrameCallback(on);
				};
				v.requestVideoFrameCallback(on);
			})()`))
			time.Sleep(liveWatch)
			raw := br.text(`JSON.stringify(window.custosFrames)`)
			st, ok := s.playingTile()
			if !ok {
				b.Fatal("no tile playing")
			}
			var frames [][2]float64
			if err := json.Unmarshal([]byte(raw), &frames); err != nil {
				b.Fatal(err)
			}
			for _, fr := range frames {
				// RTP time advances by PTS steps: back from the last frame sent.
				pts := (st.LastPTS - uint64(st.LastRTP-uint32(fr[0]))) & ptsMask
				at := time.UnixMicro(int64(fr[1] * 1000))
				all = append(all, delaySince(at, pts))
			}
			br.do("close the tile", chromedp.Navigate("about:blank"))
		}
		reportDelays(b, all)
	})
}

// playingTile is the stats of the newest live tile that is playing.
func (s *Server) playingTile() (rtc.Stats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		for _, l := range slices.Backward(ss.live) {
			l.mu.Lock()
			playing := l.state == "playing"
			l.mu.Unlock()
			if playing {
				return l.peer.Stats(), true
			}
		}
	}
	return rtc.Stats{}, false
}
