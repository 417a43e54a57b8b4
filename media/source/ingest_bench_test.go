package source

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// benchCameras, when set, makes TestBenchCameraServer serve that many fake
// cameras for BenchmarkRTSPIngest from a process of its own, so that the
// benchmark's CPU time is the client's alone.
const benchCamerasEnv = "CUSTOS_BENCH_CAMERAS"

// BenchmarkRTSPIngest is the RTSP client's CPU per camera, receiving the
// fixture at 25 fps from 8 cameras over TCP interleaved and over RTP/UDP,
// in cpu-ms per camera-second of video (depacketizing included, recording
// not). `make bench` reports udp / tcp.
func BenchmarkRTSPIngest(b *testing.B) {
	for _, tr := range []Transport{TransportTCP, TransportUDP} {
		b.Run(string(tr), func(b *testing.B) { benchIngest(b, tr, 8) })
	}
}

func benchIngest(b *testing.B, tr Transport, cameras int) {
	urls := startBenchCameras(b, cameras)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var frames atomic.Int64
	var srcs []Source
	for _, u := range urls {
		src, err := Open(u, Options{Transport: tr})
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, src)
		wg.Go(func() {
			_ = src.Run(ctx, func(h264.Frame) error { frames.Add(1); return nil })
		})
	}
	defer func() { cancel(); wg.Wait() }()
	// Warm up: every camera playing.
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range srcs {
		for s.Stats().Frames < 25 {
			if time.Now().After(deadline) {
				b.Fatalf("camera not playing: %+v", s.Stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	window := time.Duration(b.N) * 5 * time.Second
	b.ResetTimer()
	cpu0, f0, t0 := cpuTime(b), frames.Load(), time.Now()
	time.Sleep(window)
	cpu, n, wall := cpuTime(b)-cpu0, frames.Load()-f0, time.Since(t0)
	b.StopTimer()
	camSec := float64(cameras) * wall.Seconds()
	b.ReportMetric(float64(cpu.Microseconds())/1e3/camSec, "cpu-ms/camera-s")
	b.ReportMetric(float64(n)/camSec, "fps/camera")
	for _, s := range srcs {
		if st := s.Stats(); st.Transport != string(tr) || st.Reconnects != 0 {
			b.Fatalf("Stats = %+v, want %s without reconnects", st, tr)
		}
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startBenchCameras runs TestBenchCameraServer in a child process.
func startBenchCameras(b *testing.B, n int) []string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchCameraServer$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), benchCamerasEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	var urls []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "CAMERA "); ok {
			urls = append(urls, u)
		}
		if line == "READY" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return urls
		}
	}
	b.Fatal("camera server exited before it was ready")
	return nil
}

// TestBenchCameraServer is BenchmarkRTSPIngest's camera process: it serves
// fake cameras at 25 fps until its stdin closes.
func TestBenchCameraServer(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(benchCamerasEnv))
	if n == 0 {
		t.Skip("the camera process of BenchmarkRTSPIngest")
	}
	fx := loadFixture(t)
	for range n {
		cam := &testCamera{t: t, fx: fx, udp: "ok", frameEvery: 40 * time.Millisecond}
		fmt.Println("CAMERA " + cam.start())
	}
	fmt.Println("READY")
	_, _ = bufio.NewReader(os.Stdin).ReadByte() // until the benchmark closes it
}
