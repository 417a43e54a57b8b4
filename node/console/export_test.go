package console

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// TestConsoleExportPlays: alice files a request in her console, bob and
// carol approve it, and her console exports it to this node and serves the
// MP4 to the page's player; ffprobe reads it as H.264. Another user's
// console offers no export, and the export cannot be made twice.
func TestConsoleExportPlays(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("an MP4 export is remuxed by ffmpeg (apt-get install ffmpeg)")
	}
	f := startFedWith(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	store := f.join(t, ctx, node.InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"},
		&recording.Config{Segment: ts.Config{Target: time.Second}, EpochLength: 3 * time.Second, MinFree: -1})
	var segs int
	nodetest.WaitTrue(t, 60*time.Second, "the store to record 6 segments", func() bool {
		s, err := store.HeldSegments("praha-1/entrance", time.Time{}, time.Now().Add(time.Hour))
		segs = len(s)
		return err == nil && segs >= 6
	})
	held, _ := store.HeldSegments("praha-1/entrance", time.Time{}, time.Now().Add(time.Hour))
	from, to := held[1].Start, held[4].End

	a := newBrowser(t, startConsole(t, f, "alice", 0))
	a.login(t)
	form := url.Values{"csrf": {a.csrf("/requests")}, "cameras": {"praha-1/entrance"}, "from": {from.Local().Format("2006-01-02T15:04:05")},
		"to": {to.Local().Add(time.Second).Format("2006-01-02T15:04:05")}, "purpose": {"a till was robbed"}, "basis": {"art. 6(1)(f)"}, "expires": {"2"}}
	if resp, page := a.do("POST", "/requests", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("filing: %s\n%s", resp.Status, page)
	}
	var id string
	for _, q := range f.n.Policy().Requests {
		id = q.ID
	}
	for _, who := range []string{"bob", "carol"} {
		b := newBrowser(t, startConsole(t, f, who, 0))
		b.login(t)
		if _, page := b.do("GET", "/requests", nil, nil); strings.Contains(page, `class="export"`) {
			t.Errorf("%s's console offers an export of alice's request", who)
		}
		if resp, page := b.do("POST", "/requests/"+id+"/approve", url.Values{"csrf": {b.csrf("/requests")}}, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s approving: %s\n%s", who, resp.Status, page)
		}
	}
	nodetest.WaitTrue(t, 10*time.Second, "the request approved", func() bool {
		p := f.n.Policy()
		return p.RequestStatus(p.Requests[id], time.Now()) == policy.RequestApproved
	})
	if _, page := a.do("GET", "/requests", nil, nil); !strings.Contains(page, `action="/requests/`+id+`/export"`) {
		t.Fatalf("alice's console offers no export:\n%s", page)
	}
	resp, page := a.do("POST", "/requests/"+id+"/export", url.Values{"csrf": {a.csrf("/requests")}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/exports/"+id {
		t.Fatalf("export: %s\n%s", resp.Status, page)
	}
	if _, page := a.do("GET", "/exports/"+id, nil, nil); !strings.Contains(page, `src="/exports/`+id+`/video.mp4"`) {
		t.Fatalf("export page:\n%s", page)
	}
	resp, _ = a.do("GET", "/exports/"+id+"/video.mp4", nil, map[string]string{"Range": "bytes=0-99"})
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("the video, a range: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	mp4 := filepath.Join(f.dir, "exports", id+".mp4")
	if out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,width", "-of", "csv=p=0", mp4).Output(); err != nil ||
		!strings.HasPrefix(strings.TrimSpace(string(out)), "h264,") {
		t.Fatalf("ffprobe of the export: %q %v", out, err)
	}
	for _, ext := range []string{".manifest.json", ".manifest.sig", ".manifest.pub"} {
		if _, err := exec.Command("test", "-s", mp4+ext).Output(); err != nil {
			t.Errorf("no %s beside the export", ext)
		}
	}
	// The one-time key is spent: no second export is offered or made.
	if _, page := a.do("GET", "/requests", nil, nil); strings.Contains(page, `action="/requests/`+id+`/export"`) || !strings.Contains(page, `href="/exports/`+id+`"`) {
		t.Errorf("after the export the page still offers it, or no player:\n%s", page)
	}
	if resp, _ := a.do("POST", "/requests/"+id+"/export", url.Values{"csrf": {a.csrf("/requests")}}, nil); resp.StatusCode == http.StatusSeeOther {
		t.Errorf("a second export was made")
	}
	if resp, _ := a.do("GET", "/exports/..%2F..%2Fkeys/video.mp4", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a path outside the exports: %s", resp.Status)
	}
}

// join joins the node spec names, recording with rec if given.
func (f *fed) join(t testing.TB, ctx context.Context, spec node.InviteSpec, rec *recording.Config) *node.Node {
	t.Helper()
	spec.Expires = time.Now().Add(time.Hour)
	inv, err := node.MakeInvite(ctx, f.dir, f.admin, "alice", spec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := node.DecodeToken(inv.Token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	port, err := nodetest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{Dir: filepath.Join(filepath.Dir(f.dir), spec.Name), Name: spec.Name, Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
	if rec != nil {
		cfg.Recording = *rec
	}
	if res, err := node.PrepareJoin(ctx, cfg, tok); err != nil || !res.Applied {
		t.Fatalf("join %s: %+v %v", spec.Name, res, err)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}
