package node

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// TestH265 runs an H.265 camera through the whole node path: the store
// records it, an approved export of 2 s decodes in ffprobe as hevc with
// exactly 50 frames, and a live view delivers H.265 frames from a
// keyframe that ffprobe decodes too.
func TestH265(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	dcDir := f.dc.cfg.Dir
	submit := func(dir string, env policy.Envelope) {
		t.Helper()
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			t.Fatalf("submit: %+v %v", res, err)
		}
	}
	submit(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{
		Site: "praha-1", Name: "entrance", Source: "synthetic:?codec=h265", Purpose: "theft prevention",
		LegalBasis: "legitimate interest", Retention: 72 * time.Hour}}))
	approvers := map[string]*keys.AdminKey{}
	for _, name := range []string{"bob", "carol"} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		approvers[name] = k
		submit(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddUser,
			User: &policy.User{Name: name, Role: policy.UserApprover, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}}))
	}
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, EpochLength: 3 * time.Second, MinFree: -1}
	})
	const cam = "praha-1/entrance"
	var segs []store.SegmentMeta
	waitTrue(t, 60*time.Second, "the store to record 5 segments", func() bool {
		segs, _ = st1.rec.Store().Segments(cam, time.Time{}, time.Now().Add(time.Hour))
		return len(segs) >= 5
	})

	// Export: 2 s from a segment's start (a keyframe).
	from := segs[2].Start
	to := from.Add(2 * time.Second)
	submit(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}}))
	pub, err := desk.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	deskDir := desk.cfg.Dir
	submit(deskDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "r1", Node: "desk", Selector: cam, From: from, To: to, Purpose: "theft at the entrance",
		Basis: "art. 6(1)(f)", Key: pub, Expires: time.Now().Add(time.Hour)}}))
	waitTrue(t, 10*time.Second, "desk to see r1", func() bool { return desk.Policy().Requests["r1"] != nil })
	digest := policy.RequestDigest(testFederation, desk.Policy().Requests["r1"])
	for _, name := range []string{"bob", "carol"} {
		submit(deskDir, signed(t, approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: "r1", Digest: digest}}))
	}
	// The custodians need the epoch records, which travel with the
	// segments: wait for both datacenters to hold the range.
	waitTrue(t, 60*time.Second, "the range replicated to dc-a and dc-b", func() bool {
		s, err := st1.Status()
		if err != nil {
			return false
		}
		n := 0
		for _, r := range s.Replication {
			if r.Camera == cam && !r.UpTo.Before(to) {
				n++
			}
		}
		return n == 2
	})
	out := filepath.Join(t.TempDir(), "r1.ts")
	res, err := desk.Export(ctx, order(t, f.admin, release.ExportRequest{Request: "r1", Out: out, Exporter: "alice"}))
	if err != nil || res.Refused != "" || res.Manifest == nil {
		t.Fatalf("export: %+v %v", res, err)
	}
	want := 2 * clip.FPS
	if res.Manifest.Output.Frames != want {
		t.Errorf("manifest: %d frames, want %d", res.Manifest.Output.Frames, want)
	}
	plain, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if codec, n := ffprobeCodecFrames(t, plain); codec != "hevc" || n != want {
		t.Errorf("ffprobe decoded %d %s frames from the export, want exactly %d hevc", n, codec, want)
	}

	// Live view.
	submit(dcDir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk",
		Subject: policy.Subject{Kind: "node", Name: "desk"}, Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk"}}))
	waitTrue(t, 30*time.Second, "the store to apply the grant", func() bool { return st1.Policy().Grants["g-desk"] != nil })
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	var got []h264.Frame
	var buf bytes.Buffer
	lres, err := desk.Live(lctx, cam, &buf, live.Options{OnFrame: func(fr h264.Frame) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, h264.Frame{Key: fr.Key, Codec: fr.Codec})
		if len(got) == 3*clip.FPS {
			stop()
		}
	}})
	if err != nil {
		t.Fatalf("live view: %v", err)
	}
	mu.Lock()
	frames := append([]h264.Frame(nil), got...)
	mu.Unlock()
	if len(frames) < 3*clip.FPS || !frames[0].Key {
		t.Fatalf("live view: %d frames (%+v), want %d from a keyframe", len(frames), lres, 3*clip.FPS)
	}
	for i, fr := range frames {
		if fr.Codec != h264.CodecH265 {
			t.Fatalf("live frame %d is %v, want hevc", i, fr.Codec)
		}
	}
	if codec, n := ffprobeCodecFrames(t, buf.Bytes()); codec != "hevc" || n < len(frames)-2 {
		t.Errorf("ffprobe decodes %d %s frames of the %d live ones, want hevc", n, codec, len(frames))
	}
}

// ffprobeCodecFrames decodes an MPEG-TS stream and returns its codec and
// frame count, failing on any decoder error. Skips without ffprobe.
func ffprobeCodecFrames(t *testing.T, b []byte) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (apt-get install ffmpeg); .ci/run installs it")
	}
	path := filepath.Join(t.TempDir(), "probe.ts")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	codec, count, ok := strings.Cut(line, ",")
	n, err := strconv.Atoi(count)
	if !ok || err != nil {
		t.Fatalf("ffprobe printed %q", out)
	}
	return codec, n
}
