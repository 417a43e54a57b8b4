package redact

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/custos-cctv/custos/media/clip"
)

// BenchmarkRedact is redaction's throughput in frames/s (decode, filter,
// encode) on the fixture, one box; BenchmarkCopy is ffmpeg's plain remux
// (-c copy) of the same file, the floor it is compared with.
func BenchmarkRedact(b *testing.B) {
	needTools(b)
	src := fixtureTS(b)
	dir := b.TempDir()
	opts := Options{Mode: Redact, Boxes: []Box{{X: 10, Y: 10, W: 150, H: 70}}}
	for b.Loop() {
		dst := filepath.Join(dir, "out.ts")
		if _, err := File(context.Background(), src, dst, opts); err != nil {
			b.Fatal(err)
		}
		os.Remove(dst)
	}
	b.ReportMetric(float64(clip.Frames*b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkCopy(b *testing.B) {
	needTools(b)
	src := fixtureTS(b)
	dst := filepath.Join(b.TempDir(), "out.ts")
	for b.Loop() {
		cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "mpegts", "-i", src, "-c", "copy", "-f", "mpegts", dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	b.ReportMetric(float64(clip.Frames*b.N)/b.Elapsed().Seconds(), "frames/s")
}
