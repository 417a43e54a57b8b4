package gsttest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
)

// StartVLC serves the fixture, looped, from VLC's RTSP output (a second
// server nobody here wrote; it offers RTP over UDP only) at the returned
// URL until the test ends. It skips if cvlc is missing (.ci/run installs
// vlc-bin and vlc-plugin-base). VLC refuses to run as root, so as root it
// runs as nobody.
func StartVLC(t testing.TB) string {
	t.Helper()
	cvlc, err := exec.LookPath("cvlc")
	if err != nil {
		t.Skip("VLC RTSP test needs cvlc (apt install vlc-bin vlc-plugin-base)")
	}
	// Readable by nobody: not under t.TempDir, which is private.
	dir, err := os.MkdirTemp("", "custos-vlc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Raw H.264 through VLC's h264 demuxer gets broken timestamps (each
	// GOP stamped 80 ms a frame, then a jump back): remuxed, as for
	// GStreamer, the container's timestamps pace it right.
	raw := filepath.Join(dir, "clip.h264")
	if err := os.WriteFile(raw, clip.H264, 0o644); err != nil {
		t.Fatal(err)
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("VLC RTSP test needs ffmpeg (apt install ffmpeg)")
	}
	mkv := filepath.Join(dir, "clip.mkv")
	if out, err := exec.Command(ffmpeg, "-v", "error", "-r", strconv.Itoa(clip.FPS), "-i", raw, "-c", "copy", mkv).CombinedOutput(); err != nil {
		t.Fatalf("remux the clip with ffmpeg: %v\n%s", err, out)
	}
	if err := os.Chmod(mkv, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	url := "rtsp://127.0.0.1:" + strconv.Itoa(port) + "/s"
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, cvlc, "-q", "--no-audio", "--loop", mkv, "--sout", "#rtp{sdp="+url+"}")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start VLC: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("VLC not listening on %d within 20s", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
