package demo

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
)

// replication waits until dc-a and dc-b hold replicas of every camera
// of both stores, then shows the stores' lag and the datacenters' copies.
func (f *federation) replication() error {
	f.say("\n== Both datacenters pull each store's ciphertext, epoch records and audit journal")
	if err := nodetest.WaitCond(f.ctx, 30*time.Second, func() bool {
		for _, name := range []string{"store-praha-1", "store-brno-1"} {
			st, err := f.nodes[name].Status()
			if err != nil || len(st.Replication) < 4 {
				return false
			}
			for _, r := range st.Replication {
				if r.UpTo.IsZero() {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("replication did not reach both datacenters: %w", err)
	}
	for _, name := range []string{"store-praha-1", "dc-a", "dc-b"} {
		st, err := f.nodes[name].Status()
		if err != nil {
			return err
		}
		f.say("   %s:", name)
		replication.Write(f.w, st.Replication, st.Replicas, "     ")
	}
	return nil
}

// live: admin-alice's node is granted live view of praha-1, watches
// praha-1/entrance into a file, and the grant is revoked while it watches.
func (f *federation) live() error {
	f.say("\n== Live view: admin-alice's node watches praha-1/entrance over QUIC inside the mesh")
	cam := "praha-1/entrance"
	viewer := f.nodes["admin-alice"]
	if _, err := viewer.Live(f.ctx, cam, io.Discard, live.Options{}); err != nil {
		msg := err.Error()
		f.say("   without a grant: refused: %s", msg[strings.LastIndex(msg, ": ")+2:])
	}
	if err := f.submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-live", Subject: policy.Subject{Kind: "node", Name: "admin-alice"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk", Window: policy.Window{Until: time.Now().Add(time.Hour)}}}); err != nil {
		return err
	}
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { return f.nodes["store-praha-1"].Policy().Grants["g-live"] != nil }); err != nil {
		return err
	}
	out := filepath.Join(f.dir, "live-praha-1-entrance.ts")
	file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer file.Close()
	watch := &liveWatch{revoke: func() error { return f.submit(&policy.Command{Kind: policy.KindRevokeGrant, Name: "g-live"}) }, revokedAt: make(chan time.Time, 1)}
	res, err := viewer.Live(f.ctx, cam, file, live.Options{OnFrame: watch.frame})
	ended := time.Now()
	if err != nil {
		return fmt.Errorf("live view: %w", err)
	}
	p50, p99 := watch.latency()
	f.say("   %d frames, %d bytes of MPEG-TS to %s, first frame a keyframe", res.Frames, res.Bytes, out)
	f.say("   live frames (after the keyframe the ring starts with), camera's frame time → viewer: p50 %v, p99 %v", p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
	select {
	case at := <-watch.revokedAt:
		// SubmitVia returns once the leader applied it; the store may cut
		// the stream a moment before the answer arrives here.
		f.say("   grant revoked while watching: stream cut %v after the revocation was committed (%s)", max(ended.Sub(at), 0).Round(time.Millisecond), res.Ended)
	case <-time.After(5 * time.Second):
		f.say("   the stream ended: %s", res.Ended)
	}
	return f.probeLive(out)
}

// liveWatch counts the frames a live view delivers, measures their
// latency, and revokes the grant once it has seen 100 of them.
type liveWatch struct {
	revoke       func() error
	revokedAt    chan time.Time // when the revocation was committed
	lat          []time.Duration
	frames, gops int
}

func (w *liveWatch) frame(fr h264.Frame) {
	w.frames++
	if fr.Key {
		w.gops++
	}
	if w.gops >= 2 { // past the GOP the ring replays at the start
		w.lat = append(w.lat, time.Since(fr.Time))
	}
	if w.frames == 100 { // 4 s of video, then revoke
		go func() {
			if err := w.revoke(); err == nil {
				w.revokedAt <- time.Now()
			}
		}()
	}
}

// latency is the median and 99th percentile of the frames' latency.
func (w *liveWatch) latency() (p50, p99 time.Duration) {
	slices.Sort(w.lat)
	if n := len(w.lat); n > 0 {
		p50, p99 = w.lat[n/2], w.lat[n*99/100]
	}
	return p50, p99
}

// probeLive has ffprobe, if installed, read the live view file; a file it
// cannot read fails the demo.
func (f *federation) probeLive(out string) error {
	path, err := exec.LookPath("ffprobe")
	if err != nil {
		return nil
	}
	o, err := exec.CommandContext(f.ctx, path, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", out).Output()
	if err != nil {
		return fmt.Errorf("ffprobe cannot read the live view file: %w", err)
	}
	f.say("   ffprobe reads the file: %s (codec, width, height, frames)", strings.Fields(string(o) + " ?")[0])
	return nil
}
