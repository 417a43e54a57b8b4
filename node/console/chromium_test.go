package console

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// artefacts is where the browser tests leave their screenshots:
// $CUSTOS_ARTEFACTS when set (CI keeps them), else the test's temporary
// directory.
func artefacts(t testing.TB) string {
	if d := os.Getenv("CUSTOS_ARTEFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// waitRecording waits until store records its cameras (a live view asked
// for sooner is refused: the camera is not recording yet).
func waitRecording(t testing.TB, store *node.Node) {
	t.Helper()
	nodetest.WaitTrue(t, 60*time.Second, "the store to record", func() bool {
		s, err := store.Status()
		return err == nil && s.Recording != nil && len(s.Recording.Cameras) > 0 && s.Recording.Cameras[0].Frames > 30
	})
}

// h265Stream is a second of H.265 in MPEG-TS (stream type 0x24) from
// ffmpeg with libx265.
func h265Stream(t testing.TB) []byte {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-t", "1", "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "mpegts", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("no H.265 from ffmpeg (apt-get install ffmpeg): %v %s", err, stderr.String())
	}
	return out
}

// TestConsoleInChromium: Debian's Chromium, headless, logs in with the
// passphrase, sees the overview, watches a store's camera live over WebRTC
// (its currentTime follows the wall clock, not a virtual one), makes an
// installer's invite whose QR code shows, and finds the invite in the audit
// journal; a screenshot of each page is kept.
// chromium is a headless Debian Chromium for one test, driven by chromedp.
type chromium struct {
	t     testing.TB
	ctx   context.Context
	shots string
}

// startChromium starts Chromium, or skips the test where it is not
// installed; it stops with ctx.
func startChromium(t testing.TB, ctx context.Context) *chromium {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
		}
	}
	if path == "" {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return &chromium{t: t, ctx: bctx, shots: artefacts(t)}
}

// shot keeps a screenshot of the page as console-NAME.png.
func (c *chromium) shot(name string) {
	c.t.Helper()
	// Not while a page is still loading: it has no size yet.
	chromedp.Run(c.ctx, chromedp.Poll[chromedp.Void](`document.readyState === "complete" && document.documentElement.scrollWidth > 0`, chromedp.WithPollingTimeout(10*time.Second)))
	png, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(c.shots, "console-"+name+".png"), png, 0o644)
}

// text evaluates js, which gives a string.
func (c *chromium) text(js string) string {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		c.t.Fatalf("%s: %v", js, err)
	}
	return v
}

// poll evaluates js, which gives a string, as a wait does: "" while the
// page is between documents (a redirect under way) or js fails.
func (c *chromium) poll(js string) string {
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		return ""
	}
	return v
}

// do runs the steps, failing the test with the page's text if one fails.
func (c *chromium) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.t.Fatalf("%s: %v; page: %s", what, err, c.text(`document.body ? document.body.innerText : ""`))
	}
}

// login logs in to the console at base with the test passphrase.
func (c *chromium) login(base string) {
	c.t.Helper()
	c.do("log in to "+base, chromedp.Navigate(base+"/login"), chromedp.SendKeys(chromedp.ID("passphrase"), pass), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("federation")))
}

func TestConsoleInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	br := startChromium(t, ctx)
	f := startFed(t)
	waitRecording(t, f.join(t, ctx, node.InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"},
		&recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}))
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "dc-a"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk", Window: policy.Window{Until: time.Now().Add(time.Hour)}}})
	// brno-1/yard is an H.265 camera, as ffmpeg with libx265 writes one
	// (at a site with no store, so nothing records it).
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "brno-1", Jurisdiction: "EU"}})
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "brno-1", Name: "yard", Source: "synthetic:",
		Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})
	h265 := h265Stream(t)
	s := startConsoleWith(t, f, "alice", Config{liveVia: func(ctx context.Context, dir, camera string, out io.Writer) (live.Result, error) {
		if camera == "brno-1/yard" {
			_, err := out.Write(h265)
			return live.Result{Camera: camera}, err
		}
		return node.LiveVia(ctx, dir, camera, out)
	}})
	bctx, text, shot, shots := br.ctx, br.text, br.shot, br.shots

	if err := chromedp.Do(bctx, chromedp.Navigate(s.URL()+"/"), chromedp.SendKeys(chromedp.ID("passphrase"), pass), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("federation"))); err != nil {
		t.Fatalf("log in: %v; page: %s", err, text(`document.body.innerText`))
	}
	if got := text(`document.getElementById("federation").textContent`); got != "acme" {
		t.Errorf("overview federation %q", got)
	}
	shot("overview")

	// Live: a tile of praha-1/entrance plays in real time.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.URL()+"/live?camera=praha-1/entrance")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`document.querySelector("video").videoWidth > 16`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the live tile never showed a frame: %v; tile says %q", err, text(`document.querySelector(".live-state").textContent`))
	}
	now := func() (float64, time.Time) {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.querySelector("video").currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		return v, time.Now()
	}
	c1, w1 := now()
	time.Sleep(3 * time.Second)
	c2, w2 := now()
	t.Logf("live currentTime advanced %.2f s in %.2f s", c2-c1, w2.Sub(w1).Seconds())
	// Real time: never faster than the wall clock (a virtual clock would
	// be), and not stalled. A loaded machine under -race may drop a frame
	// or two, hence the slack below.
	if adv, wall := c2-c1, w2.Sub(w1).Seconds(); adv > wall+0.5 || adv < wall/2 {
		t.Errorf("currentTime advanced %.2f s in %.2f s of wall clock", adv, wall)
	}
	if w := text(`String(document.querySelector("video").videoWidth)`); w != "640" {
		t.Errorf("video width %s", w)
	}
	shot("live")

	// An H.265 camera's tile says why it does not play, beside a playing one.
	br.do("H.265 tile", chromedp.Navigate(s.URL()+"/live?camera=praha-1/entrance&camera=brno-1/yard"))
	var note string
	nodetest.WaitTrue(t, 20*time.Second, "the H.265 tile's note", func() bool {
		note = br.poll(`document.querySelector('video[data-camera="brno-1/yard"]').closest("figure").querySelector(".live-state").textContent`)
		return strings.Contains(note, "H.265")
	})
	if note != "H.265 is not playable in the browser; watch it with custos live" {
		t.Errorf("the H.265 tile says %q", note)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`document.querySelector('video[data-camera="praha-1/entrance"]').videoWidth > 16`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("the H.264 tile beside it never showed a frame: %v", err)
	}
	shot("live-h265")

	// An installer's invite, its QR code shown.
	until := time.Now().Add(2 * time.Hour).Format("2006-01-02T15:04")
	if err := chromedp.Do(bctx, chromedp.Navigate(s.URL()+"/invites"),
		chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "inst-2"),
		chromedp.SetValue(chromedp.CSS(`input[name="until"]`), until),
		chromedp.Click(chromedp.ID("make-invite"))); err != nil {
		t.Fatalf("invite: %v", err)
	}
	var shown string
	nodetest.WaitTrue(t, 15*time.Second, "the invite's QR code or an error", func() bool {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.getElementById("qr") && document.getElementById("qr").naturalWidth > 0) ? "qr" : (document.getElementById("error") ? document.getElementById("error").textContent : "")`))
		shown = v
		return err == nil && v != ""
	})
	if shown != "qr" {
		t.Fatalf("no QR code shown: %s", shown)
	}
	if tok := text(`document.getElementById("token").value`); !strings.HasPrefix(tok, "custos1.") {
		t.Errorf("token %q", tok)
	}
	shot("invite")

	// The invite just made is in this node's journal.
	if err := chromedp.Do(bctx, chromedp.Navigate(s.URL()+"/audit?since=1h")); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitTrue(t, 10*time.Second, "the invite in the audit page", func() bool {
		chromedp.Do(bctx, chromedp.Reload())
		return strings.Contains(br.poll(`document.getElementById("audit").innerText`), "invite.create")
	})
	shot("audit")
	t.Logf("screenshots in %s", shots)
}
