package redact

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/custos-cctv/custos/media/clip"
)

// TestRedactH265: an export of an H.265 camera is redacted like an H.264
// one (the output is H.264 from libx264 either way): every frame kept, the
// box's detail gone.
func TestRedactH265(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "clip.h265")
	if err := os.WriteFile(raw, clip.H265, 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "export.ts")
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "hevc", "-framerate", "25", "-i", raw,
		"-c", "copy", "-f", "mpegts", src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making the H.265 TS: %v: %s", err, out)
	}
	box := Box{X: 0, Y: 0, W: 112, H: 64}
	dst, res := redactT(t, src, Options{Mode: Redact, Boxes: []Box{box}})
	if res.Source.Codec != "hevc" {
		t.Errorf("source codec %q, want hevc", res.Source.Codec)
	}
	orig, red := grayFrames(t, src), grayFrames(t, dst)
	var d drop
	for i := range orig {
		d.check(t, "frame", orig[i], red[i], box.rect().has)
	}
}
