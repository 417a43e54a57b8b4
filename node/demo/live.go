package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
)

// demoReplication waits until dc-a and dc-b hold replicas of every camera
// of both stores, then shows the stores' lag and the datacenters' copies.
func demoReplication(ctx context.Context, w io.Writer, nodes map[string]*node.Node) error {
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	say("\n== Both datacenters pull each store's ciphertext, epoch records and audit journal")
	if err := nodetest.WaitCond(ctx, 30*time.Second, func() bool {
		for _, name := range []string{"store-praha-1", "store-brno-1"} {
			st, err := nodes[name].Status()
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
		st, err := nodes[name].Status()
		if err != nil {
			return err
		}
		say("   %s:", name)
		replication.Write(w, st.Replication, st.Replicas, "     ")
	}
	return nil
}

// demoLive: admin-alice's node is granted live view of praha-1, watches
// praha-1/entrance into a file, and the grant is revoked while it watches.
func demoLive(ctx context.Context, w io.Writer, dir string, nodes map[string]*node.Node, submit func(*policy.Command) error) error {
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	say("\n== Live view: admin-alice's node watches praha-1/entrance over QUIC inside the mesh")
	cam := "praha-1/entrance"
	viewer := nodes["admin-alice"]
	if _, err := viewer.Live(ctx, cam, io.Discard, live.Options{}); err != nil {
		msg := err.Error()
		say("   without a grant: refused: %s", msg[strings.LastIndex(msg, ": ")+2:])
	}
	if err := submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-live", Subject: policy.Subject{Kind: "node", Name: "admin-alice"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk", Window: policy.Window{Until: time.Now().Add(time.Hour)}}}); err != nil {
		return err
	}
	if err := nodetest.WaitCond(ctx, 10*time.Second, func() bool { return nodes["store-praha-1"].Policy().Grants["g-live"] != nil }); err != nil {
		return err
	}
	out := filepath.Join(dir, "live-praha-1-entrance.ts")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	var lat []time.Duration
	frames, gops := 0, 0
	revokedAt := make(chan time.Time, 1)
	res, err := viewer.Live(ctx, cam, f, live.Options{OnFrame: func(fr h264.Frame) {
		frames++
		if fr.Key {
			gops++
		}
		if gops >= 2 { // past the GOP the ring replays at the start
			lat = append(lat, time.Since(fr.Time))
		}
		if frames == 100 { // 4 s of video, then revoke
			go func() {
				if err := submit(&policy.Command{Kind: policy.KindRevokeGrant, Name: "g-live"}); err == nil {
					revokedAt <- time.Now()
				}
			}()
		}
	}})
	ended := time.Now()
	if err != nil {
		return fmt.Errorf("live view: %w", err)
	}
	slices.Sort(lat)
	var p50, p99 time.Duration
	if n := len(lat); n > 0 {
		p50, p99 = lat[n/2], lat[n*99/100]
	}
	say("   %d frames, %d bytes of MPEG-TS to %s, first frame a keyframe", res.Frames, res.Bytes, out)
	say("   live frames (after the keyframe the ring starts with), camera's frame time → viewer: p50 %v, p99 %v", p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
	select {
	case at := <-revokedAt:
		// SubmitVia returns once the leader applied it; the store may cut
		// the stream a moment before the answer arrives here.
		say("   grant revoked while watching: stream cut %v after the revocation was committed (%s)", max(ended.Sub(at), 0).Round(time.Millisecond), res.Ended)
	case <-time.After(5 * time.Second):
		say("   the stream ended: %s", res.Ended)
	}
	if path, err := exec.LookPath("ffprobe"); err == nil {
		o, err := exec.CommandContext(ctx, path, "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", out).Output()
		if err == nil {
			say("   ffprobe reads the file: %s (codec, width, height, frames)", strings.Fields(string(o) + " ?")[0])
		} else {
			return fmt.Errorf("ffprobe cannot read the live view file: %w", err)
		}
	}
	return nil
}
