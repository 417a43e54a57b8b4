package demo

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/custos-cctv/custos/media/redact"
)

// subjectAccess: the exported minute answers a subject access request.
// A redacted copy keeps the subject's box and pixelates everyone else; the
// export itself stays as it was (its SHA-256 before and after).
func (r *keyRelease) subjectAccess() error {
	r.say("\n== Subject access (GDPR art. 15): the exported minute, with everyone but the subject made unrecognisable")
	ffprobe, err := exec.LookPath("ffprobe")
	if _, err2 := exec.LookPath("ffmpeg"); err != nil || err2 != nil {
		r.say("   skipped: redaction needs ffmpeg and ffprobe (Debian: apt-get install ffmpeg)")
		return nil
	}
	clip, err := redact.Probe(r.ctx, ffprobe, r.out)
	if err != nil {
		return fmt.Errorf("probe the export: %w", err)
	}
	before, err := fileSum(r.out)
	if err != nil {
		return err
	}
	// The subject: a box in the middle of the frame, for the whole minute.
	box := redact.Box{X: clip.Width / 3 &^ 1, Y: clip.Height / 4 &^ 1, W: clip.Width / 3 &^ 1, H: clip.Height / 2 &^ 1}
	out := strings.TrimSuffix(r.out, filepath.Ext(r.out)) + ".redacted.ts"
	res, err := redact.File(r.ctx, r.out, out, redact.Options{Mode: redact.Keep, Boxes: []redact.Box{box}})
	if err != nil {
		return fmt.Errorf("redact: %w", err)
	}
	after, err := fileSum(r.out)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("the export changed while it was redacted")
	}
	r.say("   %s: %d frames, %.1f MB; kept box %s of %dx%d, everything else pixelated in %d-pixel blocks and blurred, by %s",
		out, res.Frames, float64(res.Size)/1e6, box, clip.Width, clip.Height, res.Block, res.Tool)
	r.say("   the export %s is unchanged (sha256 %x…); custos export --keep/--redact signs such a copy's manifest with the source's hash and every box", filepath.Base(r.out), before[:8])
	return nil
}

func fileSum(path string) ([32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}
