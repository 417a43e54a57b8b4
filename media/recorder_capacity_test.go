package media

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// capacitySource is one 4 Mbit/s camera: the clip paced in real time,
// each frame padded to about four times its size; capacitySourceH265 is
// the same of the H.265 clip (about 3.8 Mbit/s).
const (
	capacitySource     = "synthetic:?scale=4"
	capacitySourceH265 = "synthetic:?codec=h265&scale=4"
)

// BenchmarkStoreCapacity answers how many 4 Mbit/s cameras one store
// sustains on this machine without falling behind, and what recording
// costs per camera. Each sub-benchmark cameras=N runs N real Recorders
// into ONE store on the real disk (t.TempDir, fsync and all), as a store
// node does, each from its own paced synthetic:?scale=4 source with the
// default ~4 s segments. The cameras start spread over one segment's
// time, as real cameras' GOPs are, and are measured over a fixed wall
// window once every camera has stored its first segment.
//
// Metrics: fps/camera (median; 25 is real time), min-fps/camera,
// Mbit/s/camera (median, from the source's bytes: the real bitrate),
// lost-segments, max-queued (the longest queue a camera had), max-lag-s
// (the most any camera's newest stored footage trailed the clock; about
// one segment, 4 s, plus the write when keeping up), cpu-s/camera-hour
// (process user+sys CPU over the window, per camera, per hour of video)
// stored-seg/s (segments the store took per second over the window; the
// cameras cut N/4 per second), other-procs-cores (CPU the rest of the
// machine used meanwhile: other processes, and kernel threads, including
// writeback done for this one; the machine has 2 cores, so anything
// there skews the result) and behind: 1 if a segment was lost, any camera
// fell below 24 fps or lagged by more than two segments, else 0.
//
// Run it as
//
//	go test -run '^$' -bench BenchmarkStoreCapacity -benchtime=1x ./media/
//
// CUSTOS_CAPACITY_SECONDS sets the window (default 20) and
// CUSTOS_CAPACITY_CAMERAS the camera counts (default 25,50,100,150,200).
// The target is at least 100 cameras per store.
func BenchmarkStoreCapacity(b *testing.B) { benchCapacity(b, capacitySource) }

// BenchmarkStoreCapacityH265 is BenchmarkStoreCapacity with H.265
// cameras. A store neither decodes nor re-encodes, so the codec costs
// only its share of parsing (keyframes' parameter sets): what matters
// is the bitrate, and cmd/benchreport -capacity compares the two.
func BenchmarkStoreCapacityH265(b *testing.B) { benchCapacity(b, capacitySourceH265) }

func benchCapacity(b *testing.B, src string) {
	window := 20 * time.Second
	if v := os.Getenv("CUSTOS_CAPACITY_SECONDS"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			b.Fatalf("CUSTOS_CAPACITY_SECONDS=%q: want a positive number of seconds", v)
		}
		window = time.Duration(s * float64(time.Second))
	}
	counts := []int{25, 50, 100, 150, 200}
	if v := os.Getenv("CUSTOS_CAPACITY_CAMERAS"); v != "" {
		counts = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("CUSTOS_CAPACITY_CAMERAS=%q: want camera counts separated by commas", v)
			}
			counts = append(counts, n)
		}
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("cameras=%d", n), func(b *testing.B) {
			var res capacityResult
			for b.Loop() {
				res = runCapacity(b, src, n, window)
			}
			b.ReportMetric(res.fps, "fps/camera")
			b.ReportMetric(res.minFPS, "min-fps/camera")
			b.ReportMetric(res.mbps, "Mbit/s/camera")
			b.ReportMetric(float64(res.lost), "lost-segments")
			b.ReportMetric(float64(res.maxQueued), "max-queued")
			b.ReportMetric(res.maxLag.Seconds(), "max-lag-s")
			b.ReportMetric(res.cpuPerCameraHour, "cpu-s/camera-hour")
			b.ReportMetric(res.storedPerSec, "stored-seg/s")
			b.ReportMetric(res.otherCPU, "other-procs-cores")
			if res.otherCPU > 0.1 {
				b.Logf("other processes kept %.2f cores busy during the window: the numbers are skewed; run it on a quiet machine", res.otherCPU)
			}
			behind := 0.0
			if res.behind {
				behind = 1
			}
			b.ReportMetric(behind, "behind")
			b.Logf("cameras=%d over %v: %.2f fps/camera (min %.2f), %.2f Mbit/s/camera, %d segments stored (%.1f/s over the window; the cameras cut %.1f/s), %d lost, max queue %d, max lag %v, CPU %.1f%% of one core (%.1f cpu-s/camera-hour), behind=%v",
				n, window, res.fps, res.minFPS, res.mbps, res.written, res.storedPerSec, res.neededPerSec, res.lost, res.maxQueued, res.maxLag.Round(time.Millisecond),
				100*res.cpu.Seconds()/window.Seconds(), res.cpuPerCameraHour, res.behind)
		})
	}
}

type capacityResult struct {
	fps, minFPS      float64 // frames per second per camera over the window
	mbps             float64 // Mbit/s per camera over the window
	written          uint64  // segments stored over the whole run
	lost             uint64  // segments lost over the whole run
	storedPerSec     float64 // segments the store took per second over the window
	neededPerSec     float64 // segments the cameras cut per second
	maxQueued        int
	maxLag           time.Duration
	cpu              time.Duration // process CPU over the window
	otherCPU         float64       // cores other processes kept busy over the window; -1 if unknown
	cpuPerCameraHour float64
	behind           bool
}

// capacityCamera is one recorder of the capacity benchmark.
type capacityCamera struct {
	src  source.Source
	rec  *Recorder
	done chan error

	started         time.Time
	frames0, bytes0 uint64 // source counters at the window's start
}

// runCapacity records n cameras into one store for a warm-up and the
// window and measures the window.
func runCapacity(b *testing.B, url string, n int, window time.Duration) capacityResult {
	b.Helper()
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	seg := ts.Config{} // the default ~4 s
	cams := make([]*capacityCamera, n)
	for i := range cams {
		src, err := source.Open(url, source.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rec, err := NewRecorder(RecorderConfig{
			Camera:     fmt.Sprintf("bench/cam-%03d", i),
			Source:     src,
			Store:      st,
			Custodians: custodians(b),
			Signer:     testSigner(b),
			Segment:    seg,
		})
		if err != nil {
			b.Fatal(err)
		}
		cams[i] = &capacityCamera{src: src, rec: rec, done: make(chan error, 1)}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		wg.Wait()
	}
	defer stop()
	// Spread the starts over one segment's time, so segments are cut
	// (and written) evenly rather than all at once.
	segDur := ts.DefaultTarget
	for i, c := range cams {
		c.started = time.Now()
		wg.Go(func() { c.done <- c.rec.Run(ctx) })
		if i < n-1 {
			time.Sleep(segDur / time.Duration(n))
		}
	}
	// Warm-up: every camera stores its first segment (and its epoch keys
	// are made, ahead of time too), or, on a store that cannot keep up,
	// two segments' time passes; the window measures either way.
	deadline := time.Now().Add(2 * segDur)
	for _, c := range cams {
		for c.rec.Stats().SegmentsWritten == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}

	var res capacityResult
	sample := func() {
		now := time.Now()
		for _, c := range cams {
			s := c.rec.Stats()
			res.maxQueued = max(res.maxQueued, s.Queued)
			last := s.LastSegment
			if last.IsZero() { // nothing stored yet: it trails since it started
				last = c.started
			}
			res.maxLag = max(res.maxLag, now.Sub(last))
		}
	}
	var written0 uint64
	for _, c := range cams {
		s := c.src.Stats()
		c.frames0, c.bytes0 = s.Frames, s.Bytes
		written0 += c.rec.Stats().SegmentsWritten
	}
	cpu0, busy0, all0 := processCPU(b), machineBusy(), time.Now()
	began := time.Now()
	tick := time.NewTicker(time.Second)
	for time.Since(began) < window {
		<-tick.C
		sample()
	}
	tick.Stop()
	cpu1, busy1 := processCPU(b), machineBusy()
	elapsed := time.Since(began)
	if busy0 >= 0 && busy1 >= 0 {
		// CPU that other processes used: on a shared machine they skew
		// every number here, so it is reported with them.
		res.otherCPU = max(0, (busy1-busy0)-(cpu1-cpu0).Seconds()) / time.Since(all0).Seconds()
	} else {
		res.otherCPU = -1
	}

	fps := make([]float64, n)
	mbps := make([]float64, n)
	var written1 uint64
	for i, c := range cams {
		s := c.src.Stats()
		fps[i] = float64(s.Frames-c.frames0) / elapsed.Seconds()
		mbps[i] = float64(s.Bytes-c.bytes0) * 8 / 1e6 / elapsed.Seconds()
		written1 += c.rec.Stats().SegmentsWritten
	}
	res.storedPerSec = float64(written1-written0) / elapsed.Seconds()
	res.neededPerSec = float64(n) / segDur.Seconds()
	stop()
	for _, c := range cams {
		if err := <-c.done; err != context.Canceled {
			b.Errorf("camera %s: Run: %v", c.rec.cfg.Camera, err)
		}
		s := c.rec.Stats()
		res.written += s.SegmentsWritten
		res.lost += s.SegmentsLost
	}
	slices.Sort(fps)
	slices.Sort(mbps)
	res.fps, res.minFPS, res.mbps = fps[n/2], fps[0], mbps[n/2]
	res.cpu = cpu1 - cpu0
	res.cpuPerCameraHour = res.cpu.Seconds() / float64(n) * float64(time.Hour) / float64(elapsed)
	res.behind = res.lost > 0 || res.minFPS < 24 || res.maxLag > 2*segDur
	return res
}

// processCPU is the user and system CPU time the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time, in seconds, all processes of the machine
// used since boot (/proc/stat: user, nice, system, irq, softirq, steal),
// or -1 if it cannot be read.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // not idle (4) or iowait (5)
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return -1
		}
		ticks += v
	}
	return ticks / 100 // USER_HZ
}
