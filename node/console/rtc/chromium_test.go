package rtc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/ts"
)

// playerPage negotiates with /whep as the console's page will: one
// recvonly video transceiver, the offer sent once ICE gathering is complete
// (no trickle), the answer applied. It records every frame the video
// element presents (requestVideoFrameCallback) with its RTP timestamp and
// wall-clock presentation time, for the test to read.
const playerPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>custos live</title>
<style>body{margin:0;background:#111}video{display:block;width:640px;height:360px}</style></head>
<body><video id="v" autoplay muted playsinline></video>
<script>
window.custos = {frames: [], error: "", state: "new"};
(async () => {
  try {
    const v = document.getElementById("v");
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", {direction: "recvonly"});
    pc.onconnectionstatechange = () => { window.custos.state = pc.connectionState; };
    pc.ontrack = (e) => { v.srcObject = new MediaStream([e.track]); };
    window.custos.pc = pc;
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
    });
    const res = await fetch("/whep", {method: "POST", headers: {"Content-Type": "application/sdp"}, body: pc.localDescription.sdp});
    if (!res.ok) throw new Error("whep: " + res.status + " " + await res.text());
    await pc.setRemoteDescription({type: "answer", sdp: await res.text()});
    const onFrame = (now, md) => {
      window.custos.frames.push({rtp: md.rtpTimestamp, at: performance.timeOrigin + md.presentationTime});
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  } catch (e) {
    window.custos.error = String(e);
  }
})();
</script></body></html>`

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artefactDir is where a test leaves what a person may want to look at.
func artefactDir(t *testing.T) string {
	if d := os.Getenv("CUSTOS_ARTEFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// TestChromiumPlays has Debian's Chromium, headless, load a page from
// 127.0.0.1 that negotiates with a Peer and plays the fixture clip fed in
// real time: the video is 640 wide, its currentTime advances with the wall
// clock, it receives at least 90 % of the frames, and the delay from the
// camera's frame entering Feed to the browser presenting it is logged.
func TestChromiumPlays(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}

	peers := make(chan *Peer, 1)
	var mu sync.Mutex
	rtpToPTS := map[uint32]uint64{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, playerPage)
	})
	mux.HandleFunc("POST /whep", func(w http.ResponseWriter, r *http.Request) {
		offer, err := io.ReadAll(io.LimitReader(r.Body, DefaultMaxOfferBytes+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p, err := New(Config{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p.beforeSend = func(pts uint64, rtpTS uint32) {
			mu.Lock()
			rtpToPTS[rtpTS] = pts
			mu.Unlock()
		}
		answer, err := p.Answer(string(offer))
		if err != nil {
			p.Close()
			t.Errorf("Answer to Chromium's offer: %v\n%s", err, offer)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, answer)
		peers <- p
	})
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container
		chromedp.Flag("headless", "new"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// No flag lets loopback into Chromium's ICE: the pair it finds with
		// the Peer's 127.0.0.1 candidate is what any browser on the node's
		// machine finds. Its mDNS names for host candidates would be
		// announced on the LAN, so they are off here, and no host name
		// resolves: the page and its peer are both on 127.0.0.1.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(800, 450),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	var p *Peer
	select {
	case p = <-peers:
		defer p.Close()
	case <-time.After(20 * time.Second):
		t.Fatalf("Chromium sent no offer: %s", pageState(bctx))
	}
	select {
	case <-p.connected:
	case <-time.After(15 * time.Second):
		t.Fatalf("Chromium did not connect: %s", pageState(bctx))
	}

	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(ctx, pr) }()
	camDone := make(chan []sent, 1)
	go func() { camDone <- camera(ctx, t, "pace=real", clip.Frames, pw) }()

	// Playing: the first frame is presented and the size known.
	if _, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`document.getElementById("v").videoWidth > 0`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the video never showed a frame: %v; %s", err, pageState(bctx))
	}
	size, err := chromedp.Run(bctx, chromedp.Evaluate[[2]int](`[document.getElementById("v").videoWidth, document.getElementById("v").videoHeight]`))
	if err != nil {
		t.Fatal(err)
	}
	if size != [2]int{clip.Width, clip.Height} {
		t.Errorf("video is %dx%d, want %dx%d", size[0], size[1], clip.Width, clip.Height)
	}

	// currentTime follows the wall clock: real time, no virtual budget.
	currentTime := func() (float64, time.Time) {
		ct, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.getElementById("v").currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		return ct, time.Now()
	}
	c1, w1 := currentTime()
	time.Sleep(3 * time.Second)
	c2, w2 := currentTime()
	advanced, wall := c2-c1, w2.Sub(w1).Seconds()
	t.Logf("currentTime advanced %.3f s in %.3f s of wall clock", advanced, wall)
	if math.Abs(advanced-wall) > 0.5 {
		t.Errorf("currentTime advanced %.3f s in %.3f s", advanced, wall)
	}

	if shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot()); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		path := filepath.Join(artefactDir(t), "rtc-chromium.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot: %s", path)
	}

	out := <-camDone
	time.Sleep(time.Second) // the last frames presented
	pw.Close()
	if err := <-fed; err != nil {
		t.Errorf("Feed: %v", err)
	}

	type presented struct {
		RTP uint32  `json:"rtp"`
		At  float64 `json:"at"` // Unix ms
	}
	frames, err := chromedp.Run(bctx, chromedp.Evaluate[[]presented](`window.custos.frames`))
	if err != nil {
		t.Fatal(err)
	}
	statsJSON, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(async () => {
			const out = {};
			const all = await window.custos.pc.getStats();
			all.forEach((s) => {
				if (s.type === "transport" && s.selectedCandidatePairId) {
					const pair = all.get(s.selectedCandidatePairId);
					out.pair = [all.get(pair.localCandidateId).address, all.get(pair.remoteCandidateId).address];
				}
				if (s.type === "inbound-rtp") Object.assign(out, {framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, framesDropped: s.framesDropped, keyFramesDecoded: s.keyFramesDecoded, decoderImplementation: s.decoderImplementation, packetsLost: s.packetsLost, nackCount: s.nackCount, jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount});
				if (s.type === "codec") out.codec = s.mimeType + " " + (s.sdpFmtpLine || "");
			});
			return JSON.stringify(out);
		})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		FramesReceived int      `json:"framesReceived"`
		FramesDecoded  int      `json:"framesDecoded"`
		Pair           []string `json:"pair"`
	}
	if err := json.Unmarshal([]byte(statsJSON), &st); err != nil {
		t.Fatalf("stats %q: %v", statsJSON, err)
	}
	t.Logf("Chromium: %s; peer %+v; %d frames presented", statsJSON, p.Stats(), len(frames))
	if len(st.Pair) != 2 || !isLoopbackAddr(st.Pair[0]) || !isLoopbackAddr(st.Pair[1]) {
		t.Errorf("Chromium's selected candidate pair %v, want loopback at both ends", st.Pair)
	}
	if pair, err := p.sender.Transport().ICETransport().GetSelectedCandidatePair(); err != nil || pair == nil ||
		!isLoopbackAddr(pair.Local.Address) || !isLoopbackAddr(pair.Remote.Address) {
		t.Errorf("the Peer's selected pair %v (%v), want loopback at both ends", pair, err)
	}
	// Every frame arrives; a decoder starved of CPU (the race detector,
	// the whole suite on two cores) may drop some, and the compositor
	// presents (and calls back for) fewer still.
	if r := p.Stats().Refused; r != 0 {
		t.Errorf("%d sends to an address that is not loopback were refused", r)
	}
	if st.FramesReceived < len(out)*9/10 || st.FramesDecoded < len(out)*3/4 {
		t.Errorf("Chromium received %d and decoded %d of %d frames, want at least 90 %% and 75 %%", st.FramesReceived, st.FramesDecoded, len(out))
	}

	sentAt := map[uint64]time.Time{}
	for _, s := range out {
		sentAt[ts.PTS(s.f.Time)] = s.at
	}
	var delays []time.Duration
	mu.Lock()
	for _, f := range frames {
		pts, ok := rtpToPTS[f.RTP]
		if !ok {
			continue
		}
		if at, ok := sentAt[pts]; ok {
			presented := time.UnixMilli(0).Add(time.Duration(f.At * float64(time.Millisecond)))
			delays = append(delays, presented.Sub(at))
		}
	}
	mu.Unlock()
	if len(delays) < len(out)/2 {
		t.Errorf("%d presented frames map to frames sent, want at least %d", len(delays), len(out)/2)
	}
	t.Logf("delay camera frame into Feed -> presented in Chromium over %d frames: p50 %v, p99 %v, max %v",
		len(delays), percentile(delays, 50), percentile(delays, 99), percentile(delays, 100))
}

// pageState says what the page got to, for a failure message.
func pageState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({state: window.custos.state, error: window.custos.error})`))
	if err != nil {
		return fmt.Sprintf("page state unknown: %v", err)
	}
	return "page " + s
}
