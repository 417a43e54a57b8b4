package redact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
)

// needTools skips the test without ffmpeg and ffprobe (CI installs them).
func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install ffmpeg)", tool)
		}
	}
}

// fixtureTS writes the project's fixture clip (640x360, 25 fps, 250
// frames) as MPEG-TS in a temporary directory, remuxed without
// re-encoding, as an export is.
func fixtureTS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "clip.h264")
	if err := os.WriteFile(raw, clip.H264, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(dir, "export.ts")
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "h264", "-framerate", "25", "-i", raw,
		"-c", "copy", "-f", "mpegts", ts)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making the fixture TS: %v: %s", err, out)
	}
	return ts
}

const sampleEvery = 25 // frames 0, 25, …, 225: one per second

// grayFrames decodes every sampleEvery-th frame of a TS file to 8-bit gray.
func grayFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "mpegts", "-i", path,
		"-vf", "select='not(mod(n,25))'", "-fps_mode", "passthrough", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("decoding %s: %v: %s", path, err, stderr.String())
	}
	size := clip.Width * clip.Height
	if len(out)%size != 0 || len(out)/size != clip.Frames/sampleEvery {
		t.Fatalf("decoding %s: %d bytes, want %d frames of %d", path, len(out), clip.Frames/sampleEvery, size)
	}
	var frames [][]byte
	for len(out) > 0 {
		frames, out = append(frames, out[:size]), out[size:]
	}
	return frames
}

type rect struct{ x0, y0, x1, y1 int }

func (b Box) rect() rect { return rect{b.X, b.Y, b.X + b.W, b.Y + b.H} }

// inset shrinks r by m on every side (negative m grows it).
func (r rect) inset(m int) rect { return rect{r.x0 + m, r.y0 + m, r.x1 - m, r.y1 - m} }

func (r rect) has(x, y int) bool { return x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1 }

// edgeEnergy is the mean of |∂x|+|∂y| over the pixels of f for which in
// holds (both neighbours included): how much detail there is.
func edgeEnergy(f []byte, in func(x, y int) bool) float64 {
	const w, h = clip.Width, clip.Height
	var sum, n float64
	for y := 0; y+1 < h; y++ {
		for x := 0; x+1 < w; x++ {
			if !in(x, y) || !in(x+1, y) || !in(x, y+1) {
				continue
			}
			p := int(f[y*w+x])
			sum += float64(abs(int(f[y*w+x+1])-p) + abs(int(f[(y+1)*w+x])-p))
			n++
		}
	}
	return sum / n
}

// laplacian is the mean of |4p − its four neighbours| over the pixels of
// f for which in holds (neighbours included): fine detail, the kind that
// makes a face or a number plate, without the smooth ramps that blurred
// blocks leave (those count in edgeEnergy but carry nothing recognisable).
func laplacian(f []byte, in func(x, y int) bool) float64 {
	const w, h = clip.Width, clip.Height
	var sum, n float64
	for y := 1; y+1 < h; y++ {
		for x := 1; x+1 < w; x++ {
			if !in(x, y) || !in(x-1, y) || !in(x+1, y) || !in(x, y-1) || !in(x, y+1) {
				continue
			}
			i := y*w + x
			sum += float64(abs(4*int(f[i]) - int(f[i-1]) - int(f[i+1]) - int(f[i-w]) - int(f[i+w])))
			n++
		}
	}
	return sum / n
}

// meanAbsDiff is the mean absolute difference of a and b over the pixels
// for which in holds.
func meanAbsDiff(a, b []byte, in func(x, y int) bool) float64 {
	const w, h = clip.Width, clip.Height
	var sum, n float64
	for y := range h {
		for x := range w {
			if in(x, y) {
				sum += float64(abs(int(a[y*w+x]) - int(b[y*w+x])))
				n++
			}
		}
	}
	return sum / n
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func fileSHA(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// redactT runs File and checks what every result must say.
func redactT(t *testing.T, src string, opts Options) (string, Result) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "redacted.ts")
	before := fileSHA(t, src)
	res, err := File(context.Background(), src, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSHA(t, src); got != before || res.SourceSHA256 != before {
		t.Errorf("source hash %x before, %x after, %x in the result", before, got, res.SourceSHA256)
	}
	if got := fileSHA(t, dst); got != res.SHA256 {
		t.Errorf("output hash %x, result says %x", got, res.SHA256)
	}
	if fi, _ := os.Stat(dst); fi == nil || fi.Size() != res.Size || fi.Mode().Perm() != 0o600 {
		t.Errorf("output file %v; result says %d bytes", fi, res.Size)
	}
	if !strings.HasPrefix(res.Tool, "ffmpeg version ") || res.Frames != clip.Frames || res.Block < MinBlock ||
		res.Mode != opts.Mode || len(res.Boxes) != len(opts.Boxes) || !strings.Contains(res.Filter, "boxblur") {
		t.Errorf("result: %+v", res)
	}
	if res.Source.Width != clip.Width || res.Source.Height != clip.Height || res.Source.Frames != clip.Frames {
		t.Errorf("source clip: %+v", res.Source)
	}
	t.Logf("%s; %s; %d bytes; filter %s", res.Tool, res.Encoder, res.Size, res.Filter)
	return dst, res
}

// Measured on the fixture (ffmpeg 5.1.9, libx264 veryfast crf 20, blocks
// of 16 px), worst of the ten sampled frames: inside redacted boxes the
// Laplacian detail falls 28.5x and the edge energy 14.4x (Keep mode,
// outside the box: 32.6x and 15.1x); where nothing was redacted the mean
// difference is 0.20 grey levels, and up to 3.0 over the sharp white-on-
// black frame number. The assertions leave a wide margin.
const (
	minDetailDrop = 10.0 // original Laplacian detail / redacted, where redacted
	minEdgeDrop   = 3.0  // original edge energy / redacted, where redacted
	maxUnchanged  = 2.0  // mean absolute difference, grey levels, where nothing was redacted
	maxReencoded  = 6.0  // the same over sharp text (the frame number), which re-encoding blurs a little
	detailFloor   = 3.0  // the original's Laplacian detail where it is measured, so there is something to remove
	margin        = 16   // pixels left out around a box's border (encoder blocks straddle it)
)

// drop measures how much detail redaction removed from the pixels where
// in holds, and fails the test if too little.
type drop struct{ detail, edge float64 } // the worst factors seen

func (d *drop) check(t *testing.T, what string, orig, red []byte, in func(x, y int) bool) {
	t.Helper()
	lo, lr := laplacian(orig, in), laplacian(red, in)
	eo, er := edgeEnergy(orig, in), edgeEnergy(red, in)
	if lo < detailFloor {
		t.Fatalf("%s: the original has little detail (%.2f) to remove; measure elsewhere", what, lo)
	}
	if d.detail == 0 || lo/lr < d.detail {
		d.detail = lo / lr
	}
	if d.edge == 0 || eo/er < d.edge {
		d.edge = eo / er
	}
	if lo/lr < minDetailDrop || eo/er < minEdgeDrop {
		t.Errorf("%s: Laplacian detail %.2f → %.2f (%.1fx less), edge energy %.2f → %.2f (%.1fx less); want at least %vx and %vx",
			what, lo, lr, lo/lr, eo, er, eo/er, minDetailDrop, minEdgeDrop)
	}
}

// TestRedactBox redacts the frame number and clock (top left) and the
// noisy checkerboard (bottom right): inside the boxes the detail is gone
// in every sampled frame, outside the frame is the original up to
// re-encoding.
func TestRedactBox(t *testing.T) {
	needTools(t)
	src := fixtureTS(t)
	boxes := []Box{{X: 0, Y: 0, W: 110, H: 60}, {X: 399, Y: 221, W: 163, H: 87}} // odd on purpose: aligned outward
	dst, res := redactT(t, src, Options{Mode: Redact, Boxes: boxes})
	if want := (Box{X: 398, Y: 220, W: 164, H: 88}); res.Applied[1] != want {
		t.Errorf("applied box 2: %+v, want %+v", res.Applied[1], want)
	}
	orig, red := grayFrames(t, src), grayFrames(t, dst)
	outside := func(x, y int) bool {
		for _, b := range res.Applied {
			if b.rect().inset(-margin).has(x, y) {
				return false
			}
		}
		return true
	}
	var d drop
	worstDiff := 0.0
	for i := range orig {
		for k, b := range boxes {
			d.check(t, fmt.Sprintf("frame %d box %d", i*sampleEvery, k+1), orig[i], red[i], b.rect().has)
		}
		diff := meanAbsDiff(orig[i], red[i], outside)
		worstDiff = max(worstDiff, diff)
		if diff > maxUnchanged {
			t.Errorf("frame %d: outside the boxes the output differs by %.2f grey levels on average", i*sampleEvery, diff)
		}
	}
	t.Logf("inside the boxes: Laplacian detail at least %.1fx lower, edge energy %.1fx; outside: mean difference at most %.2f grey levels",
		d.detail, d.edge, worstDiff)
}

// TestKeepBox keeps one box (the subject: here the frame number) and
// makes the rest of the frame unrecognisable.
func TestKeepBox(t *testing.T) {
	needTools(t)
	src := fixtureTS(t)
	keep := Box{X: 0, Y: 0, W: 110, H: 60}
	dst, _ := redactT(t, src, Options{Mode: Keep, Boxes: []Box{keep}})
	orig, red := grayFrames(t, src), grayFrames(t, dst)
	// Detail is measured where the fixture has some outside the box: the
	// noisy checkerboard (bottom right); the rest is mostly flat colour.
	checker := rect{400, 222, 560, 306}.has
	inside := keep.rect().inset(2).has // the kept pixels are the original's, up to re-encoding
	var d drop
	worstDiff := 0.0
	for i := range orig {
		d.check(t, fmt.Sprintf("frame %d outside the kept box", i*sampleEvery), orig[i], red[i], checker)
		diff := meanAbsDiff(orig[i], red[i], inside)
		worstDiff = max(worstDiff, diff)
		if diff > maxReencoded {
			t.Errorf("frame %d: inside the kept box the output differs by %.2f grey levels on average", i*sampleEvery, diff)
		}
	}
	t.Logf("outside the kept box: Laplacian detail at least %.1fx lower, edge energy %.1fx; inside: mean difference at most %.2f grey levels",
		d.detail, d.edge, worstDiff)
}

// TestRedactTimeSpan: a box with a time span redacts only inside it.
func TestRedactTimeSpan(t *testing.T) {
	needTools(t)
	src := fixtureTS(t)
	box := Box{X: 0, Y: 0, W: 110, H: 60, From: 2 * time.Second, To: 4 * time.Second}
	dst, _ := redactT(t, src, Options{Mode: Redact, Boxes: []Box{box}})
	orig, red := grayFrames(t, src), grayFrames(t, dst)
	r := box.rect()
	var d drop
	redacted := 0
	for i := range orig {
		at := time.Duration(i*sampleEvery) * time.Second / clip.FPS
		if at >= box.From && at < box.To {
			d.check(t, fmt.Sprintf("at %v (inside the span)", at), orig[i], red[i], r.has)
			redacted++
		} else {
			// Re-encoding sharp text costs a few grey levels; redaction
			// costs tens, and takes the detail with it.
			diff, kept := meanAbsDiff(orig[i], red[i], r.has), laplacian(red[i], r.has)/laplacian(orig[i], r.has)
			t.Logf("at %v (outside the span): mean difference %.2f, detail kept %.2f", at, diff, kept)
			if diff > maxReencoded || kept < 0.7 {
				t.Errorf("at %v (outside the span) the box differs from the original by %.2f grey levels, and keeps %.0f%% of its detail", at, diff, 100*kept)
			}
		}
	}
	if redacted != 2 {
		t.Errorf("%d sampled frames in the span, want 2 (2 s and 3 s)", redacted)
	}
}

// TestBadBoxes: boxes outside the frame, too small, or outside the clip's
// time are refused with a message that names the box, and no file is
// written.
func TestBadBoxes(t *testing.T) {
	c := Clip{Codec: "h264", Width: 640, Height: 360, FrameRate: 25, Frames: 250, Duration: 10 * time.Second}
	for _, tc := range []struct {
		boxes []Box
		want  string
	}{
		{[]Box{{X: 0, Y: 0, W: 100, H: 100}, {X: 600, Y: 300, W: 100, H: 100}}, "box 2 (600,300 100x100) extends past the 640x360 frame"},
		{[]Box{{X: -1, Y: 0, W: 100, H: 100}}, "box 1 (-1,0 100x100) starts left of or above the frame"},
		{[]Box{{X: 0, Y: 0, W: 0, H: 100}}, "has no area"},
		{[]Box{{X: 0, Y: 0, W: 8, H: 100}}, "smaller than 16x16"},
		{[]Box{{X: 1 << 62, Y: 0, W: 1 << 62, H: 100}}, "extends past"},
		{[]Box{{X: 0, Y: 0, W: 100, H: 100, From: 3 * time.Second, To: 2 * time.Second}}, "ends before it starts"},
		{[]Box{{X: 0, Y: 0, W: 100, H: 100, From: -time.Second}}, "negative time"},
		{[]Box{{X: 0, Y: 0, W: 100, H: 100, From: 11 * time.Second}}, "starts after the 10s clip ends"},
		{[]Box{{X: 0, Y: 0, W: 100, H: 100, From: time.Second, To: 12 * time.Second}}, "ends after the 10s clip"},
		{nil, "no boxes"},
	} {
		err := CheckBoxes(Redact, tc.boxes, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckBoxes(%v): %v; want %q", tc.boxes, err, tc.want)
		}
	}
	// A box to the clip's end, or one frame past its duration, is fine.
	for _, b := range []Box{{X: 540, Y: 260, W: 100, H: 100}, {X: 0, Y: 0, W: 16, H: 16, From: 9 * time.Second, To: 10*time.Second + 40*time.Millisecond}} {
		if err := CheckBoxes(Keep, []Box{b}, c); err != nil {
			t.Errorf("CheckBoxes(%v): %v", b, err)
		}
	}

	needTools(t)
	src := fixtureTS(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "out.ts")
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Mode: Redact, Boxes: []Box{{X: 600, Y: 300, W: 100, H: 100}}}, "box 1 (600,300 100x100) extends past the 640x360 frame"},
		{Options{Mode: Keep, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100, From: 20 * time.Second}}}, "starts after the 10s clip ends"},
		{Options{Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}}, "mode Mode(0)"},
		{Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}, Block: 8}, "at least 16 px"},
		{Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}, Preset: "-y"}, `preset "-y"`},
		{Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}, CRF: 52}, "crf 52"},
		{Options{Mode: Redact, Boxes: make([]Box, MaxBoxes+1)}, "65 boxes: at most 64"},
		{Options{Mode: Keep}, "no boxes: keep needs at least one"},
	} {
		_, err := File(context.Background(), src, dst, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("File(%+v): %v; want %q", tc.opts, err, tc.want)
		}
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("File(%+v) left %s", tc.opts, dst)
		}
	}
	// Never over an existing file, the source least of all.
	before := fileSHA(t, src)
	if _, err := File(context.Background(), src, src, Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}}); err == nil || !errors.Is(err, fs.ErrExist) {
		t.Errorf("File onto its source: %v", err)
	}
	if fileSHA(t, src) != before {
		t.Error("the source changed")
	}
	// Not an MPEG-TS export.
	notTS := filepath.Join(dir, "not.ts")
	os.WriteFile(notTS, []byte("this is not video"), 0o600)
	if _, err := File(context.Background(), notTS, dst, Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}}); err == nil {
		t.Error("File of a text file succeeded")
	} else {
		t.Logf("text file: %v", err)
	}
}

// fakeTool writes a shell script standing in for ffmpeg or ffprobe.
func fakeTool(t *testing.T, body string) string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	p := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestToolBounds: a tool that hangs is killed when the context ends, and
// a tool's error carries only the end of what it wrote to stderr.
func TestToolBounds(t *testing.T) {
	needTools(t)
	src := fixtureTS(t)
	opts := Options{Mode: Redact, Boxes: []Box{{X: 0, Y: 0, W: 100, H: 100}}}

	opts.FFmpeg = fakeTool(t, `case "$1" in -version) echo "ffmpeg version 9.9-fake Copyright (c) you";; *) exec sleep 60;; esac`)
	dst := filepath.Join(t.TempDir(), "out.ts")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := File(ctx, src, dst, opts)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging ffmpeg: %v; want the context's deadline", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("hanging ffmpeg held File for %v", d)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a killed run left its output")
	}

	opts.FFmpeg = fakeTool(t, `case "$1" in -version) echo "ffmpeg version 9.9-fake";; *) head -c 200000 /dev/zero | tr '\0' x >&2; echo "the real reason" >&2; exit 1;; esac`)
	_, err = File(context.Background(), src, dst, opts)
	if err == nil || !strings.HasSuffix(err.Error(), "the real reason") || len(err.Error()) > stderrCap+1024 {
		n := 0
		if err != nil {
			n = len(err.Error())
		}
		t.Errorf("failing ffmpeg: error of %d bytes, want the end of its stderr within %d", n, stderrCap+1024)
	}

	opts.FFmpeg = fakeTool(t, `echo "not a video tool"`)
	if _, err := File(context.Background(), src, dst, opts); err == nil || !strings.Contains(err.Error(), "not an ffmpeg version") {
		t.Errorf("a tool that is not ffmpeg: %v", err)
	}
}

// TestParseBox reads the command line's box syntax.
func TestParseBox(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Box
	}{
		{"10,20,30,40", Box{X: 10, Y: 20, W: 30, H: 40}},
		{"10,20,30,40@2-4.5", Box{X: 10, Y: 20, W: 30, H: 40, From: 2 * time.Second, To: 4500 * time.Millisecond}},
		{"10,20,30,40@1m30s-", Box{X: 10, Y: 20, W: 30, H: 40, From: 90 * time.Second}},
		{"0,0,16,16@0s-2s", Box{W: 16, H: 16, To: 2 * time.Second}},
	} {
		got, err := ParseBox(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBox(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseBox(got.String()); err != nil || again != got {
			t.Errorf("ParseBox(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "1,2,3", "1,2,3,4,5", "a,2,3,4", "1,2,3,4@", "1,2,3,4@x-2", "1,2,3,4@1-y", "1,2,3,4@1-0", "1,2,3,4@-5-6"} {
		if b, err := ParseBox(bad); err == nil {
			t.Errorf("ParseBox(%q) = %+v, want an error", bad, b)
		}
	}
}

// TestParseProbe: ffprobe's answers that cannot describe an export are refused.
func TestParseProbe(t *testing.T) {
	good := `{"streams":[{"codec_name":"h264","width":640,"height":360,"r_frame_rate":"25/1","nb_read_packets":"250"}],"format":{"duration":"10.000000"}}`
	c, err := parseProbe([]byte(good))
	if err != nil || c != (Clip{Codec: "h264", Width: 640, Height: 360, FrameRate: 25, Frames: 250, Duration: 10 * time.Second}) {
		t.Errorf("parseProbe: %+v, %v", c, err)
	}
	for _, bad := range []struct{ json, want string }{
		{`{"streams":[],"format":{"duration":"10"}}`, "no video stream"},
		{`{"streams":[{"codec_name":"mpeg2video","width":640,"height":360,"nb_read_packets":"250"}],"format":{"duration":"10"}}`, "not H.264 or H.265"},
		{`{"streams":[{"codec_name":"h264","width":0,"height":360,"nb_read_packets":"250"}],"format":{"duration":"10"}}`, "no frame size"},
		{`{"streams":[{"codec_name":"h264","width":640,"height":360,"nb_read_packets":"0"}],"format":{"duration":"10"}}`, "no video frames"},
		{`{"streams":[{"codec_name":"h264","width":640,"height":360,"nb_read_packets":"250"}],"format":{"duration":"N/A"}}`, "duration"},
		{`not json`, "ffprobe's answer"},
	} {
		if _, err := parseProbe([]byte(bad.json)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseProbe(%s): %v; want %q", bad.json, err, bad.want)
		}
	}
}
