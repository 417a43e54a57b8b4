// Package redact makes a new, redacted copy of an export: everyone but a
// data subject made unrecognisable (GDPR Art. 15 access with third
// parties protected). It owns the filter graph, the checks of the boxes
// against the clip, and the ffmpeg and ffprobe subprocesses that do the
// decoding, filtering and encoding; it never decodes or encodes video
// itself, and never touches the source file.
//
// A box is pixelated hard, then blurred: the region is shrunk by area
// averaging to one value per block of at least MinBlock pixels, blown up
// again with nearest-neighbour scaling, and box-blurred, so each block
// carries one mean value and nothing a sharpening filter could bring back.
// Redact does this inside the boxes; Keep does it to the whole frame and
// puts the original pixels back only inside the boxes. Each box may apply
// to a time span of the clip.
//
// The input is MPEG-TS with H.264 (what an export writes); the output is
// MPEG-TS with H.264 from libx264, written to a new file the caller names.
// Result carries what a signed manifest records: the tool's version, the
// boxes as asked and as applied, the filter graph, and both files'
// SHA-256.
package redact

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mode says which side of the boxes is made unrecognisable.
type Mode int

const (
	// Redact makes the inside of every box unrecognisable.
	Redact Mode = iota + 1
	// Keep makes everything outside the boxes unrecognisable (the whole
	// frame outside a box's time span).
	Keep
)

func (m Mode) String() string {
	switch m {
	case Redact:
		return "redact"
	case Keep:
		return "keep"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Limits and defaults.
const (
	// MinBlock is the smallest pixelation block: below it a face at CCTV
	// resolution may stay recognisable.
	MinBlock = 16
	// DefaultCRF is libx264's quality setting when Options.CRF is 0: near
	// the source's quality, so the parts left alone stay as they were.
	DefaultCRF = 20
	// DefaultPreset is libx264's speed preset when Options.Preset is "".
	DefaultPreset = "veryfast"
	// MaxBoxes bounds the filter graph.
	MaxBoxes = 64
	// stderrCap bounds what is kept of a tool's stderr for its error.
	stderrCap = 8 << 10
	// waitDelay bounds the wait for a killed tool's pipes to close.
	waitDelay = 5 * time.Second
)

var presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}

// Box is a rectangle of the frame, in pixels from the top left, and the
// span of the clip it applies to, [From, To) from the clip's first frame.
// A zero To means to the end of the clip.
type Box struct {
	X, Y, W, H int
	From, To   time.Duration
}

// String is the box as ParseBox reads it.
func (b Box) String() string {
	s := fmt.Sprintf("%d,%d,%d,%d", b.X, b.Y, b.W, b.H)
	if b.From != 0 || b.To != 0 {
		s += "@" + b.From.String() + "-"
		if b.To != 0 {
			s += b.To.String()
		}
	}
	return s
}

// describe is the box for an error message.
func (b Box) describe() string {
	s := fmt.Sprintf("(%d,%d %dx%d", b.X, b.Y, b.W, b.H)
	if b.From != 0 || b.To != 0 {
		s += fmt.Sprintf(" from %v", b.From)
		if b.To != 0 {
			s += fmt.Sprintf(" to %v", b.To)
		}
	}
	return s + ")"
}

// ParseBox reads "x,y,w,h" or "x,y,w,h@from-to", where from and to are Go
// durations ("1m30s") or seconds ("90", "2.5"), and to may be empty (to the
// end of the clip).
func ParseBox(s string) (Box, error) {
	var b Box
	rect, span, timed := strings.Cut(s, "@")
	f := strings.Split(rect, ",")
	if len(f) != 4 {
		return b, fmt.Errorf("box %q: want x,y,w,h[@from-to]", s)
	}
	for i, p := range []*int{&b.X, &b.Y, &b.W, &b.H} {
		n, err := strconv.Atoi(strings.TrimSpace(f[i]))
		if err != nil {
			return b, fmt.Errorf("box %q: %q is not a whole number of pixels", s, f[i])
		}
		*p = n
	}
	if timed {
		from, to, ok := strings.Cut(span, "-")
		if !ok {
			return b, fmt.Errorf("box %q: want a time span from-to after @", s)
		}
		var err error
		if b.From, err = parseSpanTime(from); err != nil {
			return b, fmt.Errorf("box %q: from: %v", s, err)
		}
		if to != "" {
			if b.To, err = parseSpanTime(to); err != nil {
				return b, fmt.Errorf("box %q: to: %v", s, err)
			}
			if b.To == 0 {
				return b, fmt.Errorf("box %q: to is 0; leave it empty for the end of the clip", s)
			}
		}
	}
	return b, nil
}

func parseSpanTime(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("%q is not a duration (2.5, 2.5s or 1m30s)", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// Options say what to do and with which tools.
type Options struct {
	Mode  Mode
	Boxes []Box
	// Block is the edge of a pixelation block in pixels; 0 means MinBlock,
	// and less than MinBlock is refused.
	Block int
	// CRF is libx264's constant rate factor, 1–51; 0 means DefaultCRF.
	CRF int
	// Preset is libx264's preset; "" means DefaultPreset.
	Preset string
	// FFmpeg and FFprobe are the tools' paths; "" looks them up on PATH.
	FFmpeg, FFprobe string
}

// Result describes a redacted file for its signed manifest.
type Result struct {
	Tool    string // the ffmpeg that made it: "ffmpeg version 5.1.6-0+deb12u1"
	Mode    Mode
	Boxes   []Box  // as asked
	Applied []Box  // as applied: aligned to even pixels (outward for Redact, inward for Keep)
	Block   int    // pixelation block edge, pixels
	Blur    int    // box blur radius after pixelation, pixels (luma)
	Filter  string // the ffmpeg filter graph
	Encoder string // "libx264 preset veryfast crf 20"

	Source       Clip
	SourceSHA256 [32]byte

	Frames int   // video frames in the output
	Size   int64 // bytes of the output
	SHA256 [32]byte
}

// File writes a redacted copy of the MPEG-TS export src to dst, a new
// file (an existing dst is refused, never overwritten). It checks the
// options and the boxes against the clip (frame size and duration, from
// ffprobe) before it starts, and checks the output's frame count after.
// On any error dst is removed. ctx bounds the tools: cancelling it kills
// them.
func File(ctx context.Context, src, dst string, opts Options) (Result, error) {
	res, err := file(ctx, src, dst, opts)
	if err != nil {
		return Result{}, fmt.Errorf("redact %s: %w", src, err)
	}
	return res, nil
}

func file(ctx context.Context, src, dst string, opts Options) (Result, error) {
	if err := opts.check(); err != nil {
		return Result{}, err
	}
	tools, err := opts.tools()
	if err != nil {
		return Result{}, err
	}
	clip, err := Probe(ctx, tools.ffprobe, src)
	if err != nil {
		return Result{}, err
	}
	if err := CheckBoxes(opts.Mode, opts.Boxes, clip); err != nil {
		return Result{}, err
	}
	version, err := toolVersion(ctx, tools.ffmpeg)
	if err != nil {
		return Result{}, err
	}
	// ffmpeg reads the source through us, so the hash in the result is
	// of exactly the bytes it redacted, even if the file changes meanwhile.
	in, err := os.Open(src)
	if err != nil {
		return Result{}, err
	}
	defer in.Close()
	srcHash := sha256.New()
	res := Result{
		Tool: version, Mode: opts.Mode, Boxes: slices.Clone(opts.Boxes), Block: opts.block(),
		Source:  clip,
		Encoder: fmt.Sprintf("libx264 preset %s crf %d", opts.preset(), opts.crf()),
	}
	res.Applied = make([]Box, len(opts.Boxes))
	for i, b := range opts.Boxes {
		res.Applied[i] = align(b, opts.Mode, clip)
	}
	res.Filter, res.Blur = graph(opts.Mode, res.Applied, clip, res.Block)

	// O_EXCL: the redacted file is always new; the source (or anything
	// else) at dst is never overwritten.
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(dst)
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	args := []string{"-nostdin", "-hide_banner", "-v", "error",
		"-protocol_whitelist", "pipe", "-f", "mpegts", "-i", "pipe:0",
		"-filter_complex", res.Filter, "-map", "[out]", "-an", "-sn", "-dn", "-map_metadata", "-1",
		"-c:v", "libx264", "-preset", opts.preset(), "-crf", strconv.Itoa(opts.crf()), "-pix_fmt", "yuv420p",
		"-fps_mode", "passthrough", "-f", "mpegts", "pipe:1"}
	if err := run(ctx, tools.ffmpeg, args, io.TeeReader(in, srcHash), cw); err != nil {
		return Result{}, err
	}
	if _, err := io.Copy(srcHash, in); err != nil { // what ffmpeg left unread, if anything
		return Result{}, fmt.Errorf("reading %s: %w", src, err)
	}
	srcHash.Sum(res.SourceSHA256[:0])
	if err := out.Sync(); err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	if err := out.Close(); err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	res.Size = cw.n
	h.Sum(res.SHA256[:0])
	got, err := Probe(ctx, tools.ffprobe, dst)
	if err != nil {
		return Result{}, fmt.Errorf("checking the output: %w", err)
	}
	if got.Frames != clip.Frames || got.Width != clip.Width || got.Height != clip.Height {
		return Result{}, fmt.Errorf("the output has %d frames of %dx%d, the source %d of %dx%d",
			got.Frames, got.Width, got.Height, clip.Frames, clip.Width, clip.Height)
	}
	res.Frames = got.Frames
	ok = true
	return res, nil
}

func (o Options) block() int {
	if o.Block == 0 {
		return MinBlock
	}
	return o.Block
}

func (o Options) crf() int {
	if o.CRF == 0 {
		return DefaultCRF
	}
	return o.CRF
}

func (o Options) preset() string {
	if o.Preset == "" {
		return DefaultPreset
	}
	return o.Preset
}

// check checks the options that do not depend on the clip.
func (o Options) check() error {
	switch {
	case o.Mode != Redact && o.Mode != Keep:
		return fmt.Errorf("mode %v: want Redact or Keep", o.Mode)
	case len(o.Boxes) == 0:
		return fmt.Errorf("no boxes: %v needs at least one", o.Mode)
	case len(o.Boxes) > MaxBoxes:
		return fmt.Errorf("%d boxes: at most %d", len(o.Boxes), MaxBoxes)
	case o.Block != 0 && o.Block < MinBlock:
		return fmt.Errorf("block %d px: pixelation blocks are at least %d px", o.Block, MinBlock)
	case o.CRF < 0 || o.CRF > 51:
		return fmt.Errorf("crf %d: want 1–51", o.CRF)
	case o.Preset != "" && !slices.Contains(presets, o.Preset):
		return fmt.Errorf("preset %q: want one of %s", o.Preset, strings.Join(presets, ", "))
	}
	return nil
}

type tools struct{ ffmpeg, ffprobe string }

func (o Options) tools() (tools, error) {
	ffmpeg, err1 := lookTool(o.FFmpeg, "ffmpeg")
	ffprobe, err2 := lookTool(o.FFprobe, "ffprobe")
	return tools{ffmpeg, ffprobe}, errors.Join(err1, err2)
}

// lookTool is path, or if it is "" where name is on PATH.
func lookTool(path, name string) (string, error) {
	if path != "" {
		return path, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (apt-get install ffmpeg): %w", name, err)
	}
	return p, nil
}

// CheckBoxes checks boxes against the clip: each inside the frame, at
// least MinBlock pixels wide and high, and its time span non-empty and
// inside the clip (its end may pass the clip's by one frame, the
// difference between a clip's duration and its last frame's start).
func CheckBoxes(mode Mode, boxes []Box, clip Clip) error {
	if len(boxes) == 0 {
		return fmt.Errorf("no boxes: %v needs at least one", mode)
	}
	slack := time.Millisecond
	if clip.FrameRate > 0 {
		slack += time.Duration(float64(time.Second) / clip.FrameRate)
	}
	for i, b := range boxes {
		n := i + 1
		switch {
		case b.W <= 0 || b.H <= 0:
			return fmt.Errorf("box %d %s has no area", n, b.describe())
		case b.X < 0 || b.Y < 0:
			return fmt.Errorf("box %d %s starts left of or above the frame", n, b.describe())
		case b.X > clip.Width-b.W || b.Y > clip.Height-b.H:
			return fmt.Errorf("box %d %s extends past the %dx%d frame", n, b.describe(), clip.Width, clip.Height)
		case b.W < MinBlock || b.H < MinBlock:
			return fmt.Errorf("box %d %s is smaller than %dx%d pixels; draw it larger", n, b.describe(), MinBlock, MinBlock)
		case b.From < 0 || b.To < 0:
			return fmt.Errorf("box %d %s has a negative time", n, b.describe())
		case b.To != 0 && b.To <= b.From:
			return fmt.Errorf("box %d %s ends before it starts", n, b.describe())
		case b.From >= clip.Duration:
			return fmt.Errorf("box %d %s starts after the %v clip ends", n, b.describe(), clip.Duration)
		case b.To > clip.Duration+slack:
			return fmt.Errorf("box %d %s ends after the %v clip; leave its end empty for the end of the clip", n, b.describe(), clip.Duration)
		}
	}
	return nil
}

// align moves a checked box's edges to even pixels, which 4:2:0 chroma
// needs for crop and overlay to land exactly: outward for Redact (a
// pixel more is hidden), inward for Keep (a pixel less is shown).
func align(b Box, mode Mode, clip Clip) Box {
	x0, y0, x1, y1 := b.X, b.Y, b.X+b.W, b.Y+b.H
	if mode == Redact {
		x0, y0 = x0&^1, y0&^1
		x1, y1 = min(x1+x1&1, clip.Width), min(y1+y1&1, clip.Height)
	} else {
		x0, y0 = x0+x0&1, y0+y0&1
		x1, y1 = x1&^1, y1&^1
	}
	b.X, b.Y, b.W, b.H = x0, y0, x1-x0, y1-y0
	return b
}

// graph is the filter graph for boxes (aligned) on clip, and the luma
// blur radius it uses. Timestamps start at 0 (setpts) so that a box's
// span is relative to the clip's first frame.
func graph(mode Mode, boxes []Box, clip Clip, block int) (string, int) {
	var g strings.Builder
	var radius int
	n := len(boxes)
	if mode == Redact {
		fmt.Fprintf(&g, "[0:v]setpts=PTS-STARTPTS,split=%d[base]", n+1)
		for i := range n {
			fmt.Fprintf(&g, "[s%d]", i)
		}
		for i, b := range boxes {
			var f string
			f, radius = pixelate(b.W, b.H, block)
			fmt.Fprintf(&g, ";[s%d]crop=w=%d:h=%d:x=%d:y=%d,%s[p%d]", i, b.W, b.H, b.X, b.Y, f, i)
		}
		prev := "base"
		for i, b := range boxes {
			next := fmt.Sprintf("v%d", i)
			if i == n-1 {
				next = "out"
			}
			fmt.Fprintf(&g, ";[%s][p%d]overlay=x=%d:y=%d%s[%s]", prev, i, b.X, b.Y, enable(b), next)
			prev = next
		}
		return g.String(), radius
	}
	f, radius := pixelate(clip.Width, clip.Height, block)
	fmt.Fprintf(&g, "[0:v]setpts=PTS-STARTPTS,split=2[orig][bg];[bg]%s[blurred];[orig]split=%d", f, n)
	for i := range n {
		fmt.Fprintf(&g, "[k%d]", i)
	}
	for i, b := range boxes {
		fmt.Fprintf(&g, ";[k%d]crop=w=%d:h=%d:x=%d:y=%d[c%d]", i, b.W, b.H, b.X, b.Y, i)
	}
	prev := "blurred"
	for i, b := range boxes {
		next := fmt.Sprintf("v%d", i)
		if i == n-1 {
			next = "out"
		}
		fmt.Fprintf(&g, ";[%s][c%d]overlay=x=%d:y=%d%s[%s]", prev, i, b.X, b.Y, enable(b), next)
		prev = next
	}
	return g.String(), radius
}

// pixelate is the filter chain that pixelates a w×h picture in blocks of
// at least block pixels and blurs it, and its luma blur radius. Shrinking
// by area averaging leaves one mean per block; nearest-neighbour scaling
// blows the blocks up again; the blur then smooths away the blocks' edges,
// which would otherwise be the only detail left. The radii stay within
// what boxblur allows for the picture and its half-size 4:2:0 chroma.
func pixelate(w, h, block int) (string, int) {
	sw, sh := max(w/block, 1), max(h/block, 1)
	luma := max(min(block/2, min(w, h)/2), 1)
	chroma := max(min(block/4, min(w, h)/4), 1)
	return fmt.Sprintf("scale=w=%d:h=%d:flags=area,scale=w=%d:h=%d:flags=neighbor,boxblur=luma_radius=%d:luma_power=2:chroma_radius=%d:chroma_power=2",
		sw, sh, w, h, luma, chroma), luma
}

// enable is the overlay's timeline option for b's span.
func enable(b Box) string {
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) }
	switch {
	case b.From == 0 && b.To == 0:
		return ""
	case b.To == 0:
		return ":enable='gte(t," + sec(b.From) + ")'"
	}
	return ":enable='gte(t," + sec(b.From) + ")*lt(t," + sec(b.To) + ")'"
}

// fileURL makes ffmpeg read path as a local file whatever its name (a
// name with a colon would otherwise be taken for a protocol).
func fileURL(path string) string { return "file:" + path }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// run runs a tool with stdin from r (nil: none) and stdout to w, killing it when ctx ends, and returns
// an error that carries the end of its stderr.
func run(ctx context.Context, tool string, args []string, r io.Reader, w io.Writer) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = r
	cmd.Stdout = w
	stderr := &tail{max: stderrCap}
	cmd.Stderr = stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", tool, ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return fmt.Errorf("%s: %v: %s", tool, err, msg)
	}
	return nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	max       int
	b         []byte
	truncated bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.truncated = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	b := t.b
	if len(b) > t.max {
		b, t.truncated = b[len(b)-t.max:], true
	}
	if t.truncated {
		return "…" + string(b)
	}
	return string(b)
}

// toolVersion is the first line of `ffmpeg -version` up to its copyright.
func toolVersion(ctx context.Context, ffmpeg string) (string, error) {
	var out strings.Builder
	if err := run(ctx, ffmpeg, []string{"-version"}, nil, &limitWriter{w: &out, n: 4096}); err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	line, _, _ = strings.Cut(line, " Copyright")
	if !strings.HasPrefix(line, "ffmpeg version ") {
		return "", fmt.Errorf("%s -version printed %q, not an ffmpeg version", ffmpeg, line)
	}
	return strings.TrimSpace(line), nil
}

// limitWriter keeps the first n bytes and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
