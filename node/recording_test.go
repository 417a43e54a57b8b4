package node

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// A store records the cameras the policy gives its site, encrypted to
// epoch keys split between dc-a, dc-b and the recovery key: two of them
// decrypt what it stored into a stream ffprobe decodes, and no file of any
// node holds a plaintext frame (DESIGN invariant 1) or the recovery key.
func TestStoreRecordsEncrypted(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	dcB := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	store1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	waitTrue(t, 60*time.Second, "the store to know dc-b's custodian key and record 4 segments", func() bool {
		st, err := store1.Status()
		if err != nil || st.Recording == nil || len(st.Recording.Cameras) != 1 {
			return false
		}
		c := st.Recording.Cameras[0]
		return c.Camera == "praha-1/entrance" && c.SegmentsWritten >= 4 && c.Epochs > 0
	})
	st, _ := store1.Status()
	t.Logf("recording: %+v", st.Recording.Cameras[0])
	events, err := store1.Audit(time.Time{})
	if err != nil || !hasAction(events, "recording-started") {
		t.Errorf("no recording-started audit event on the store (%v)", err)
	}
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	dcA, err := keys.LoadCustodianKey(CustodianKeyPath(f.dc.cfg.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer dcA.Zero()
	dcBKey, err := keys.LoadCustodianKey(CustodianKeyPath(dcB.cfg.Dir))
	if err != nil {
		t.Fatal(err)
	}
	defer dcBKey.Zero()
	rk, err := keys.ParseRecoveryKey(f.recovery)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()

	plain := decryptRecording(t, MediaDir(store1.cfg.Dir), "praha-1/entrance", dcA, dcBKey)
	if again := decryptRecording(t, MediaDir(store1.cfg.Dir), "praha-1/entrance", rk, dcBKey); !bytes.Equal(plain, again) {
		t.Fatal("the recovery key and dc-b decrypt something else than dc-a and dc-b")
	}
	if frames := ffprobeFrames(t, plain); frames < 4*clip.FPS-5 {
		t.Errorf("ffprobe decoded %d frames from the decrypted recording, want at least %d", frames, 4*clip.FPS-5)
	}

	// Invariant 1: no plaintext frame on any disk of any node. The probes
	// are slices of coded picture data (short enough to fall inside one TS
	// packet) that the decrypted recording holds.
	var probes [][]byte
	for _, nal := range h264.SplitNALs(clip.H264) {
		if h264.Type(nal) != h264.NALIDR {
			continue
		}
		for off := 100; off+24 <= len(nal) && len(probes) < 8; off += 997 {
			if p := nal[off : off+24]; bytes.Contains(plain, p) {
				probes = append(probes, p)
			}
		}
	}
	if len(probes) < 2 {
		t.Fatalf("only %d probes found in the decrypted recording; their absence on disk would prove little", len(probes))
	}
	for _, p := range probes {
		assertNoFileContains(t, f.tmp, p)
	}
	// And no file of the store holds MPEG-TS packets or H.264 parameter
	// sets or IDR slices behind a start code — the shapes of plaintext
	// video — while the decrypted recording does.
	if nodetest.TSPackets(plain) == 0 || !bytes.Contains(plain, []byte{0, 0, 0, 1, 0x67}) {
		t.Fatal("the decrypted recording lacks the patterns the scan looks for")
	}
	filepath.WalkDir(store1.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		if n := nodetest.TSPackets(b); n > 0 {
			t.Errorf("%s holds %d runs of MPEG-TS packets", path, n)
		}
		for _, sc := range [][]byte{{0, 0, 0, 1, 0x67}, {0, 0, 0, 1, 0x68}, {0, 0, 0, 1, 0x65}} {
			if bytes.Contains(b, sc) {
				t.Errorf("%s holds an H.264 start code with NAL header %#x", path, sc[4])
			}
		}
		return nil
	})
	assertNoFileContains(t, f.tmp, f.recovery[40:120])
}

func hasAction(es []audit.Entry, action string) bool {
	for _, e := range es {
		if e.Action == action {
			return true
		}
	}
	return false
}

// decryptRecording opens every stored segment of camera with the shares of
// custodians a and b and returns the concatenated MPEG-TS.
func decryptRecording(t *testing.T, dir, camera string, a, b *keys.CustodianKey) []byte {
	t.Helper()
	st, err := store.Open(dir, store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	segs, err := st.Segments(camera, time.Time{}, time.Now().Add(time.Hour))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %d, %v", len(segs), err)
	}
	var out []byte
	recOf := map[time.Time]*keys.EpochRecord{}
	for _, m := range segs {
		rec := recOf[m.EpochStart]
		if rec == nil {
			raw, err := st.Epoch(camera, m.EpochStart)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err = sealedRecord(raw); err != nil {
				t.Fatal(err)
			}
			recOf[m.EpochStart] = rec
		}
		ct, err := innerCiphertext(st.ReadSegment(m))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := keys.DecryptSegmentAsCustodians(rec, ct, a, b)
		if err != nil {
			t.Fatalf("segment %v: %v", m.Start, err)
		}
		out = append(out, pt...)
	}
	return out
}

// ffprobeFrames decodes an MPEG-TS stream and returns its frame count,
// failing on any decoder error. Skips when ffprobe is absent.
func ffprobeFrames(t *testing.T, b []byte) int {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (apt-get install ffmpeg); .ci/run installs it")
	}
	path := filepath.Join(t.TempDir(), "rec.ts")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	// One line per program ffprobe finds (each segment repeats the tables).
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatalf("ffprobe printed no frame count")
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatalf("ffprobe frame count %q", out)
	}
	return n
}
