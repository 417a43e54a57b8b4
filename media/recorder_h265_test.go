package media

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/source/gsttest"
)

// TestRecordH265FromGStreamer records an H.265 camera (GStreamer's RTSP
// server, rtph265pay) through a real Recorder with 1 s segments: every
// frame the camera delivered is stored, the segments decrypt, and their
// concatenation decodes in ffprobe as hevc with exactly those frames.
func TestRecordH265FromGStreamer(t *testing.T) {
	if testing.Short() {
		t.Skip("records in real time from a GStreamer RTSP server")
	}
	for _, el := range []string{"rtph265pay", "h265parse"} {
		if exec.Command("gst-inspect-1.0", el).Run() != nil {
			t.Skipf("GStreamer element %s missing (apt install gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)", el)
		}
	}
	t.Parallel()
	url := gsttest.StartH265(t)
	src, err := source.Open(url, source.Options{Backoff: source.Backoff{Initial: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOpts{config: func(c *RecorderConfig) { c.Source = src }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { r.done <- r.rec.Run(ctx) }()
	const want = 3 * clip.FPS
	deadline := time.Now().Add(30 * time.Second)
	for r.rec.Stats().Frames < want {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %+v", r.rec.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-r.done:
		if err != context.Canceled {
			t.Fatalf("Run after a clean stop: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after its context ended")
	}
	st := r.rec.Stats()
	if st.SegmentsLost != 0 || st.FramesDropped != 0 || st.FramesRefused != 0 || st.SourceError != "" || st.LastError != "" ||
		st.Codec != "hevc" || st.Width != 640 || st.Height != 360 || st.Transport != "tcp" {
		t.Errorf("Stats after recording H.265 from GStreamer: %+v", st)
	}
	segs := decryptDC(t, r.st)
	if len(segs) < 2 || uint64(len(segs)) != st.SegmentsWritten {
		t.Fatalf("%d segments decrypt; the recorder stored %d", len(segs), st.SegmentsWritten)
	}
	var plain []byte
	for _, s := range segs {
		plain = append(plain, s.plain...)
	}
	if frames := tsFrames(t, plain); uint64(frames) != st.Frames {
		t.Errorf("%d frames stored, the camera delivered %d", frames, st.Frames)
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed")
	}
	// The test writes this plaintext deliberately, outside any store.
	path := filepath.Join(t.TempDir(), "decrypted.ts")
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v\n%s", err, stderr.String())
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if want := "hevc," + strconv.Itoa(clip.Width) + "," + strconv.Itoa(clip.Height) + "," + strconv.FormatUint(st.Frames, 10); line != want {
		t.Fatalf("ffprobe says %q, want %q", line, want)
	}
}
