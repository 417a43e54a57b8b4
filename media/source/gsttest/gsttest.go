// Package gsttest runs GStreamer's RTSP server — a real camera server that
// nobody here wrote — on the fixture clip, for the tests of the RTSP client
// and of the recorder. It is imported only by tests.
package gsttest

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
)

// SystemPython is Debian's python3, which has the gi bindings (a pyenv
// python3 earlier on PATH would not).
const SystemPython = "/usr/bin/python3"

// Config varies the server. The zero value serves over TCP interleaved
// only, without authentication or TLS.
type Config struct {
	// Protocols the server offers: "tcp" (default), "udp" or "both".
	Protocols string
	// Auth is "", "basic" or "digest", for User and Password.
	Auth, User, Password string
	// SessionTimeout, if set, is each session's timeout; expired sessions
	// are removed every second (see Server.Expired), and keep-alives are
	// counted (Server.KeepAlives).
	SessionTimeout int
	// TLS serves rtsps with this PEM certificate and key.
	TLS []byte
	// Codec is "h264" (default: the fixture) or "h265" (clip.H265,
	// payloaded by rtph265pay, RFC 7798).
	Codec string
}

// Server is a running GStreamer RTSP server.
type Server struct {
	URL        string // rtsp:// or rtsps://127.0.0.1:PORT/clip
	expired    atomic.Int32
	keepAlives atomic.Int32
}

// KeepAlives is how many GET_PARAMETER requests the server answered
// (counted with SessionTimeout set).
func (s *Server) KeepAlives() int { return int(s.keepAlives.Load()) }

// Expired is how many sessions the server dropped for want of keep-alive.
func (s *Server) Expired() int { return int(s.expired.Load()) }

// Start serves the fixture at the returned rtsp:// URL until the test ends.
// It skips only if python3, its GstRtspServer bindings or ffmpeg are
// missing (.ci/run installs them and checks that they are there).
func Start(t testing.TB) string { return StartWith(t, Config{}).URL }

// StartWith is Start with a Config.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	es, codec := clip.H264, "h264"
	switch cfg.Codec {
	case "", "h264":
	case "h265":
		es, codec = clip.H265, "h265"
	default:
		t.Fatalf("gsttest: codec %q: want h264 or h265", cfg.Codec)
	}
	return start(t, cfg, es, codec)
}

// StartH265 is Start with the H.265 clip (clip.H265), payloaded by
// GStreamer's rtph265pay (RFC 7798).
func StartH265(t testing.TB) string {
	t.Helper()
	return StartWith(t, Config{Codec: "h265"}).URL
}

func start(t testing.TB, cfg Config, es []byte, codec string) *Server {
	t.Helper()
	if _, err := os.Stat(SystemPython); err != nil {
		t.Skipf("GStreamer RTSP test needs %s (apt install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)", SystemPython)
	}
	probe := `import gi; gi.require_version("GstRtspServer", "1.0"); gi.require_version("GstRtsp", "1.0"); from gi.repository import GstRtspServer, GstRtsp`
	if out, err := exec.Command(SystemPython, "-c", probe).CombinedOutput(); err != nil {
		t.Skipf("GStreamer RTSP test needs the GstRtspServer Python bindings (apt install gir1.2-gst-rtsp-server-1.0 python3-gi): %v\n%s", err, out)
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("GStreamer RTSP test needs ffmpeg to put the clip in a container GStreamer can pace (apt install ffmpeg)")
	}
	// GStreamer paces a raw .h264 file but leaves its timestamps unset;
	// remuxed with -c copy the NAL units stay byte for byte the fixture's.
	tmp := t.TempDir()
	raw := filepath.Join(tmp, "clip."+codec)
	if err := os.WriteFile(raw, es, 0o600); err != nil {
		t.Fatal(err)
	}
	mkv := filepath.Join(tmp, "clip.mkv")
	remux := exec.Command(ffmpeg, "-v", "error", "-r", strconv.Itoa(clip.FPS), "-i", raw, "-c", "copy", mkv)
	if out, err := remux.CombinedOutput(); err != nil {
		t.Fatalf("remux the clip with ffmpeg: %v\n%s", err, out)
	}
	port := freePort(t)
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "gst_rtsp_server.py")
	args := []string{script, strconv.Itoa(port), mkv, "--codec", codec}
	if cfg.Protocols != "" {
		args = append(args, "--protocols", cfg.Protocols)
	}
	if cfg.Auth != "" {
		args = append(args, "--auth", cfg.Auth, "--user", cfg.User, "--password", cfg.Password)
	}
	if cfg.SessionTimeout > 0 {
		args = append(args, "--timeout", strconv.Itoa(cfg.SessionTimeout))
	}
	scheme := "rtsp://"
	if cfg.TLS != nil {
		pem := filepath.Join(tmp, "server.pem")
		if err := os.WriteFile(pem, cfg.TLS, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--tls", pem)
		scheme = "rtsps://"
	}
	srv := &Server{URL: scheme + "127.0.0.1:" + strconv.Itoa(port) + "/clip"}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, SystemPython, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start GStreamer server: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			switch line := strings.TrimSpace(sc.Text()); {
			case line == "READY":
				ready <- true
			case line == "KEEPALIVE":
				srv.keepAlives.Add(1)
			case strings.HasPrefix(line, "EXPIRED "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "EXPIRED "))
				srv.expired.Add(int32(n))
			}
		}
		select { // Start may have given up waiting
		case ready <- false:
		default:
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("GStreamer server exited before it was ready")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("GStreamer server not ready within 20s")
	}
	return srv
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
