package source

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
)

const systemPython = "/usr/bin/python3"

// startGStreamer runs testdata/gst_rtsp_server.py (GStreamer's own RTSP
// server, which nobody here wrote) and returns the clip's URL. It skips
// only if python3 or its GstRtspServer bindings are not installed.
func startGStreamer(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(systemPython); err != nil {
		t.Skipf("GStreamer RTSP test needs %s (apt install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)", systemPython)
	}
	probe := `import gi; gi.require_version("GstRtspServer", "1.0"); gi.require_version("GstRtsp", "1.0"); from gi.repository import GstRtspServer, GstRtsp`
	if out, err := exec.Command(systemPython, "-c", probe).CombinedOutput(); err != nil {
		t.Skipf("GStreamer RTSP test needs the GstRtspServer Python bindings (apt install gir1.2-gst-rtsp-server-1.0 python3-gi): %v\n%s", err, out)
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("GStreamer RTSP test needs ffmpeg to put the clip in a container GStreamer can pace (apt install ffmpeg)")
	}
	// -c copy: the NAL units stay byte for byte those of the fixture.
	clipPath := filepath.Join(t.TempDir(), "clip.mkv")
	remux := exec.Command(ffmpeg, "-v", "error", "-r", strconv.Itoa(clip.FPS), "-i", "../clip/clip-640x360-25fps-10s.h264", "-c", "copy", clipPath)
	if out, err := remux.CombinedOutput(); err != nil {
		t.Fatalf("remux the clip with ffmpeg: %v\n%s", err, out)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, systemPython, "testdata/gst_rtsp_server.py", strconv.Itoa(port), clipPath)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start GStreamer server: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("GStreamer server exited before it was ready")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("GStreamer server not ready within 20s")
	}
	return "rtsp://127.0.0.1:" + strconv.Itoa(port) + "/clip"
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestGStreamer records from a real RTSP server and checks every frame
// against the fixture byte for byte.
func TestGStreamer(t *testing.T) {
	url := startGStreamer(t)
	fx := loadFixture(t)
	src, err := Open(url, Options{Backoff: Backoff{Initial: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cancel, result := run(t, src, c)
	// Three seconds of video (75 frames) at 25 fps, read as it is paced.
	const want = 3 * clip.FPS
	waitFor(t, 20*time.Second, "75 frames from GStreamer", func() bool { return c.len() >= want+1 })
	cancel()
	if err := result(); err != context.Canceled {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
	frames, arrived := c.snapshot()

	first := fx.index(t, frames[0])
	if first%clip.GOP != 0 {
		t.Fatalf("first frame is fixture frame %d, want a keyframe", first)
	}
	for i, f := range frames {
		fx.checkFrame(t, f, (first+i)%clip.Frames)
		if i == 0 {
			continue
		}
		if d := f.Time.Sub(frames[i-1].Time); d < 39*time.Millisecond || d > 41*time.Millisecond {
			t.Fatalf("frame %d: Time step %v, want 40ms (from RTP timestamps)", i, d)
		}
	}
	// Paced at about 25 fps: 75 frames must take most of 3 s to arrive.
	if span := arrived[want].Sub(arrived[0]); span < 2*time.Second || span > 6*time.Second {
		t.Errorf("%d frames arrived over %v, want about 3s at 25 fps", want, span)
	}
	if d := time.Since(frames[0].Time); d < 0 || d > time.Minute {
		t.Errorf("first frame Time is %v ago, want anchored to now", d)
	}
	if st := src.Stats(); st.Frames < want || st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("Stats = %+v, want ≥%d frames, no reconnects or errors", st, want)
	}
}
