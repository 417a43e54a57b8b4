package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// Live view (DESIGN §4 invariant 5): denied without a grant, and audited;
// with one, the viewer starts at a keyframe and gets an MPEG-TS stream
// ffprobe decodes; a viewer that stops reading slows neither recording nor
// another viewer; revoking the grant cuts the stream within 2 s, and so
// does the end of an installer's window; start and end are audited.
func TestLiveView(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := foundAcme(t, ctx)
	joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	cam := "praha-1/entrance"
	submit := func(c *policy.Command) {
		t.Helper()
		if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", c)); err != nil || !res.Applied {
			t.Fatalf("%s: %+v %v", c.Kind, res, err)
		}
	}
	submit(&policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:",
		Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	waitTrue(t, 60*time.Second, "the store to record", func() bool {
		s, err := st1.Status()
		return err == nil && s.Recording != nil && len(s.Recording.Cameras) == 1 && s.Recording.Cameras[0].Frames > 30
	})
	waitTrue(t, 30*time.Second, "desk to know the store", func() bool { return hasPeer(desk, "store") })

	// No grant: denied before a frame moves, and audited.
	var none bytes.Buffer
	_, err := desk.Live(ctx, cam, &none, live.Options{})
	wantDenied(t, "live view without a grant", err, "no grant")
	if none.Len() != 0 {
		t.Errorf("a denied viewer got %d bytes", none.Len())
	}

	submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk"}})
	waitTrue(t, 30*time.Second, "the store to apply the grant", func() bool { return st1.Policy().Grants["g-desk"] != nil })

	// A stalled viewer: it asks for the stream and never reads.
	stalled, stalledConn, err := desk.callNode(ctx, desk.Policy(), "store", live.Op, live.Query{Camera: cam})
	if err != nil {
		t.Fatal(err)
	}
	defer stalledConn.Close()
	defer stalled.Close()

	before, _ := st1.Status()
	written := before.Recording.Cameras[0].SegmentsWritten
	out := filepath.Join(f.tmp, "live.ts")
	file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []h264.Frame
	var revokedAt time.Time
	type result struct {
		res live.Result
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		res, err := desk.Live(ctx, cam, file, live.Options{OnFrame: func(fr h264.Frame) {
			mu.Lock()
			got = append(got, h264.Frame{Time: fr.Time, Key: fr.Key})
			n := len(got)
			mu.Unlock()
			if n == 150 { // 6 s of video: revoke now
				go func() {
					submit(&policy.Command{Kind: policy.KindRevokeGrant, Name: "g-desk"})
					mu.Lock()
					revokedAt = time.Now()
					mu.Unlock()
				}()
			}
		}})
		done <- result{res, err, time.Now()}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the live view did not end after its grant was revoked")
	}
	file.Close()
	if r.err != nil {
		t.Fatal(r.err)
	}
	mu.Lock()
	cut := r.at.Sub(revokedAt)
	frames := append([]h264.Frame(nil), got...)
	mu.Unlock()
	t.Logf("live: %d frames, %d bytes; cut %v after the revocation committed; ended: %s", r.res.Frames, r.res.Bytes, cut, r.res.Ended)
	if !strings.Contains(r.res.Ended, "access ended") {
		t.Errorf("the stream ended with %q, want the grant's end", r.res.Ended)
	}
	if !r.res.Datagrams {
		t.Error("the live view did not take its frames as datagrams")
	}
	if cut > 2*time.Second {
		t.Errorf("the stream was cut %v after the revocation committed, want ≤ 2 s", cut)
	}
	if len(frames) < 150 || !frames[0].Key {
		t.Fatalf("got %d frames, the first a keyframe: %v", len(frames), len(frames) > 0 && frames[0].Key)
	}
	for i := 1; i < len(frames); i++ {
		if !frames[i].Time.After(frames[i-1].Time) {
			t.Fatalf("frame %d is not after frame %d", i, i-1)
		}
	}
	b, _ := os.ReadFile(out)
	if n := ffprobeFrames(t, b); n < len(frames)-2 {
		t.Errorf("ffprobe decodes %d frames of the %d received", n, len(frames))
	}
	after, _ := st1.Status()
	// The status counts the cut (the stalled view's too, when its recheck
	// came first) and the revocation among the commands applied.
	if before.Cuts.LiveViews != 0 || after.Cuts.LiveViews < 1 || after.Cuts.LiveViews > 2 || after.Commands[policy.KindRevokeGrant] != 1 {
		t.Errorf("status: live views cut %d → %d, grant revocations applied %d; want 0 → 1 or 2, and 1",
			before.Cuts.LiveViews, after.Cuts.LiveViews, after.Commands[policy.KindRevokeGrant])
	}
	if w := after.Recording.Cameras[0].SegmentsWritten; w < written+4 || after.Recording.Cameras[0].SegmentsLost != 0 {
		t.Errorf("recording while a viewer stalled: %d → %d segments written, %d lost", written, w, after.Recording.Cameras[0].SegmentsLost)
	}

	// An installer watches its site until its window ends, by the store's
	// own clock.
	// A loaded machine can spend a short window on the join: then a new
	// installer gets a window twice as long (never a skip).
	var fitter *Node
	var until time.Time
	for window := 8 * time.Second; ; window *= 2 {
		if window > 2*time.Minute {
			t.Fatal("an installer's join took longer than a 2-minute window")
		}
		until = time.Now().Add(window).Truncate(time.Second)
		fitter = joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleInstaller, Name: fmt.Sprintf("fitter-%d", int(window.Seconds())),
			Site: "praha-1", Window: policy.Window{Until: until}})
		for !hasPeer(fitter, "store") && time.Until(until) > 2*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if time.Until(until) > 2*time.Second {
			break
		}
		t.Logf("the installer's join left %v of its %v window; trying a longer one", time.Until(until).Round(time.Millisecond), window)
	}
	var fb bytes.Buffer
	fr, err := fitter.Live(ctx, cam, &fb, live.Options{})
	end := time.Now()
	t.Logf("installer: %d frames; cut %v after its window ended; ended: %s", fr.Frames, end.Sub(until), fr.Ended)
	// Whichever comes first ends it: the store's recheck, or either side
	// dropping the other from its mesh at the window's end (invariant 7).
	if err != nil && !strings.Contains(err.Error(), "peer removed from mesh") || err == nil && !strings.Contains(fr.Ended, "window") {
		t.Errorf("installer's stream ended with %q, %v", fr.Ended, err)
	}
	if fr.Frames == 0 || end.Sub(until) > 2*time.Second {
		t.Errorf("installer: %d frames, cut %v after its window ended (want frames, and ≤ 2 s)", fr.Frames, end.Sub(until))
	}

	// Audited: desk's denial, its start and its end with the reason.
	es, err := st1.Audit(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var deny, start, stop bool
	for _, e := range es {
		if e.Action != "live-view" || e.Actor != "node:desk" {
			continue
		}
		deny = deny || e.Decision == "deny"
		start = start || strings.HasPrefix(e.Reason, "start; grant g-desk")
		stop = stop || strings.HasPrefix(e.Reason, "end; watched") && strings.Contains(e.Reason, "access ended")
	}
	if !deny || !start || !stop {
		t.Errorf("audit: denial %v, start %v, end %v", deny, start, stop)
	}
}
