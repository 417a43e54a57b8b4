package main

// Redacted exports: export --redact/--keep and redact make a new file
// from an export with boxes made unrecognisable (media/redact runs
// ffmpeg), and sign a redaction manifest beside it (keys.RedactionManifest)
// with the export's own signing key; verify-export checks it and, when it
// is beside it, the export it was made from.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/redact"
)

// redactionPaths are where a redacted file's manifest, signature and the
// signer's public key go. They differ from an export's (FILE.manifest.*)
// so that verify-export knows which kind of file it checks.
func redactionPaths(file string) (body, sig, pub string) {
	return file + ".redaction.json", file + ".redaction.sig", file + ".redaction.pub"
}

// redactedName is where export --redact writes by default: FILE with
// ".redacted" before its extension (theft.ts: theft.redacted.ts).
func redactedName(file string) string {
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + ".redacted" + ext
}

// boxFlag collects a repeated --redact or --keep; each value is parsed
// (and a malformed one refused) as the flags are.
type boxFlag struct{ boxes []redact.Box }

func (f *boxFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(f.boxes))
	for i, b := range f.boxes {
		s[i] = b.String()
	}
	return strings.Join(s, " ")
}

func (f *boxFlag) Set(s string) error {
	b, err := redact.ParseBox(s)
	if err != nil {
		return err
	}
	f.boxes = append(f.boxes, b)
	return nil
}

// redactFlags are the flags export and redact share.
type redactFlags struct {
	redact, keep boxFlag
	block        *int
}

func addRedactFlags(fs *flag.FlagSet) *redactFlags {
	f := &redactFlags{}
	fs.Var(&f.redact, "redact", "make the box `BOX` unrecognisable. BOX is x,y,w,h[@from-to]: pixels from the frame's top left, "+
		"and optionally a span of the clip, from and to in seconds (2.5) or as durations (1m30s) from its start, to empty for its end; repeat for more boxes")
	fs.Var(&f.keep, "keep", "make everything but the box `BOX` (x,y,w,h[@from-to], the data subject) unrecognisable; outside its span the whole frame is; repeat for more boxes; not with --redact")
	f.block = fs.Int("block", redact.MinBlock, fmt.Sprintf("the pixelation block's edge `PX`, at least %d: each block keeps only its mean, then is blurred", redact.MinBlock))
	return f
}

func (f *redactFlags) given() bool { return len(f.redact.boxes) > 0 || len(f.keep.boxes) > 0 }

// options are the redaction the flags ask for, checked as far as it can
// be without the video (the frame and the clip's length are checked
// against the export itself): usage errors.
func (f *redactFlags) options() (redact.Options, error) {
	o := redact.Options{Mode: redact.Redact, Boxes: f.redact.boxes, Block: *f.block}
	switch {
	case len(f.redact.boxes) > 0 && len(f.keep.boxes) > 0:
		return o, usageError{errors.New("give --redact or --keep, not both: --redact hides what is in the boxes, --keep everything but the boxes")}
	case len(f.keep.boxes) > 0:
		o.Mode, o.Boxes = redact.Keep, f.keep.boxes
	case len(f.redact.boxes) == 0:
		return o, usageError{errors.New("--redact or --keep is required")}
	}
	if len(o.Boxes) > redact.MaxBoxes {
		return o, usageError{fmt.Errorf("%d boxes: at most %d", len(o.Boxes), redact.MaxBoxes)}
	}
	if o.Block < redact.MinBlock {
		return o, usageError{fmt.Errorf("--block %d: pixelation blocks are at least %d px (smaller ones may leave a face recognisable)", o.Block, redact.MinBlock)}
	}
	for i, b := range o.Boxes {
		n := i + 1
		switch {
		case b.W <= 0 || b.H <= 0:
			return o, usageError{fmt.Errorf("box %d (%s) has no area: its width and height must be positive", n, b)}
		case b.X < 0 || b.Y < 0:
			return o, usageError{fmt.Errorf("box %d (%s) starts left of or above the frame: x and y count from its top left, from 0", n, b)}
		case b.W < redact.MinBlock || b.H < redact.MinBlock:
			return o, usageError{fmt.Errorf("box %d (%s) is smaller than %dx%d pixels; draw it larger", n, b, redact.MinBlock, redact.MinBlock)}
		case b.From < 0 || b.To < 0:
			return o, usageError{fmt.Errorf("box %d (%s) has a negative time", n, b)}
		case b.To != 0 && b.To <= b.From:
			return o, usageError{fmt.Errorf("box %d (%s) ends before it starts", n, b)}
		}
	}
	return o, nil
}

// flagsAgain is the redaction's flags as a command line, for the hint
// that says how to redact again.
func (f *redactFlags) flagsAgain() string {
	var s []string
	for _, b := range f.redact.boxes {
		s = append(s, "--redact "+b.String())
	}
	for _, b := range f.keep.boxes {
		s = append(s, "--keep "+b.String())
	}
	if *f.block != redact.MinBlock {
		s = append(s, fmt.Sprintf("--block %d", *f.block))
	}
	return strings.Join(s, " ")
}

// prepareRedaction checks, before anything is exported or redacted, what
// can fail without the video: the tools are installed, and the redacted
// file and its manifest do not exist yet.
func prepareRedaction(out string) error {
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("redaction runs %s, which is not installed (apt-get install ffmpeg)", tool)
		}
	}
	b, s, p := redactionPaths(out)
	for _, f := range []string{out, b, s, p} {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s exists; refusing to overwrite it", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// distinctNames refuses a redacted copy named as its export: verify-export
// finds the export beside the copy by its name.
func distinctNames(src, out, flag string) error {
	if filepath.Base(src) == filepath.Base(out) {
		return usageError{fmt.Errorf("%s %s has the export's name: give the redacted copy a name of its own (verify-export looks for the export beside it by name)", flag, out)}
	}
	return nil
}

// redacted is what redactExport made.
type redacted struct {
	r    *keys.RedactionManifest
	body string // the manifest's path
	took time.Duration
}

// redactExport writes a redacted copy of the export src to out, a new
// file, with its redaction manifest signed by k. m is src's manifest,
// verified, and body its bytes as on disk; k must be the key that signed
// it. The boxes are checked against the frame and length of src as
// ffprobe reads them (a usage error when they do not fit). On any error
// nothing is left at out or beside it; src is only read.
func redactExport(ctx context.Context, src string, m *keys.Manifest, body []byte, k *keys.AdminKey, opts redact.Options, out string) (redacted, error) {
	clip, err := redact.Probe(ctx, "", src)
	if err != nil {
		return redacted{}, err
	}
	if err := redact.CheckBoxes(opts.Mode, opts.Boxes, clip); err != nil {
		return redacted{}, usageError{fmt.Errorf("%w (the export is %dx%d, %v long)", err, clip.Width, clip.Height, clip.Duration.Round(time.Millisecond))}
	}
	if err := prepareRedaction(out); err != nil {
		return redacted{}, err
	}
	start := time.Now()
	res, err := redact.File(ctx, src, out, opts)
	if err != nil {
		return redacted{}, err
	}
	took := time.Since(start)
	written := []string{out}
	ok := false
	defer func() {
		if !ok {
			for _, f := range written {
				os.Remove(f)
			}
		}
	}()
	// The hash of the bytes ffmpeg read, not of the file before or after:
	// what was redacted is exactly the export the manifest describes.
	if got := hex.EncodeToString(res.SourceSHA256[:]); got != m.Output.SHA256 {
		return redacted{}, fmt.Errorf("%s changed while it was redacted: ffmpeg read bytes with SHA-256 %s, its manifest says %s", src, got, m.Output.SHA256)
	}
	msum := sha256.Sum256(body)
	r := &keys.RedactionManifest{
		Version: keys.RedactionVersion, Federation: m.Federation, RequestID: m.RequestID, Redactor: m.Exporter,
		Created: time.Now().UTC(),
		Source: keys.RedactionSource{Name: filepath.Base(src), Bytes: m.Output.Bytes, SHA256: m.Output.SHA256,
			ManifestSHA256: hex.EncodeToString(msum[:]), Frames: res.Source.Frames, Width: res.Source.Width, Height: res.Source.Height},
		Mode:    res.Mode.String(),
		Boxes:   manifestBoxes(res.Boxes),
		Applied: manifestBoxes(res.Applied),
		BlockPx: res.Block, BlurPx: res.Blur, Encoder: res.Encoder, Filter: res.Filter, Tool: res.Tool,
		Output: keys.ManifestOutput{Name: filepath.Base(out), Bytes: res.Size, SHA256: hex.EncodeToString(res.SHA256[:]), Frames: res.Frames},
	}
	rbody, sig, err := keys.SignRedaction(k, r)
	if err != nil {
		return redacted{}, err
	}
	bp, sp, pp := redactionPaths(out)
	for _, f := range []struct {
		path string
		data []byte
	}{{bp, rbody}, {sp, sig}, {pp, k.ArmoredPublicKey()}} {
		if err := writeNew(f.path, f.data); err != nil {
			return redacted{}, err
		}
		written = append(written, f.path)
	}
	ok = true
	return redacted{r: r, body: bp, took: took}, nil
}

// writeNew writes a new file (0600), never over an existing one.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err2 := f.Sync(); err == nil {
		err = err2
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func manifestBoxes(bs []redact.Box) []keys.RedactionBox {
	out := make([]keys.RedactionBox, len(bs))
	for i, b := range bs {
		out[i] = keys.RedactionBox{X: b.X, Y: b.Y, W: b.W, H: b.H, From: keys.SpanText(b.From, false), To: keys.SpanText(b.To, true)}
	}
	return out
}

// printRedacted says what redactExport made.
func printRedacted(w io.Writer, out string, d redacted, k *keys.AdminKey) {
	r := d.r
	o := r.Output
	fmt.Fprintf(w, "redacted %s: %s, %d frames, %d bytes, sha256 %s\n", r.Source.Name, out, o.Frames, o.Bytes, o.SHA256)
	fmt.Fprintf(w, "%s; pixelation blocks of %d px, then a blur of %d px; %s; %s\n", modeText(r), r.BlockPx, r.BlurPx, r.Encoder, r.Tool)
	for i, b := range r.Boxes {
		fmt.Fprintf(w, "  box %d: %s\n", i+1, boxText(b, r.Applied[i]))
	}
	fps := 0.0
	if d.took > 0 {
		fps = float64(o.Frames) / d.took.Seconds()
	}
	fmt.Fprintf(w, "redaction manifest %s, signed by %s (%s); redaction took %v (%.0f frames/s)\n",
		d.body, r.Redactor, k.Fingerprint(), d.took.Round(time.Millisecond), fps)
}

// modeText says which side of the boxes was made unrecognisable.
func modeText(r *keys.RedactionManifest) string {
	n := len(r.Boxes)
	s := "es"
	if n == 1 {
		s = ""
	}
	if r.Mode == "keep" {
		return fmt.Sprintf("everything but %d box%s made unrecognisable", n, s)
	}
	return fmt.Sprintf("%d box%s made unrecognisable", n, s)
}

// boxText is a box as given, its span, and as applied if that differs.
func boxText(b, applied keys.RedactionBox) string {
	to := b.To
	if to == "" {
		to = "the end"
	}
	s := fmt.Sprintf("%d,%d %dx%d from %s to %s", b.X, b.Y, b.W, b.H, b.From, to)
	if applied != b {
		s += fmt.Sprintf(" (applied as %d,%d %dx%d: edges on even pixels)", applied.X, applied.Y, applied.W, applied.H)
	}
	return s
}

func runRedact(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("redact", flag.ContinueOnError)
	rf := addRedactFlags(fs)
	out := fs.String("out", "", "the redacted `FILE2` to write, a new file (keep it beside EXPORT for verify-export to check both)")
	as := fs.String("as", "", "the exporter's private key file `KEY`: the key that signed EXPORT's manifest signs the redaction's")
	dir := fs.String("dir", "", "the data directory `DIR` of a node of the exporter's federation: EXPORT's manifest must be signed by the exporter's key in its policy (without it, by the key in EXPORT.manifest.pub)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	src := pos[0]
	if src == "" {
		return usageError{errors.New("which export? give EXPORT before the flags")}
	}
	if *out == "" || *as == "" {
		return usageError{errors.New("--out and --as are required")}
	}
	opts, err := rf.options()
	if err != nil {
		return err
	}
	absOut, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if absOut == absSrc {
		return usageError{errors.New("--out is the export itself: the redacted copy is a new file")}
	}
	if err := distinctNames(absSrc, absOut, "--out"); err != nil {
		return err
	}
	if err := prepareRedaction(absOut); err != nil {
		return err
	}
	v, err := verifyExport(ctx, src, *dir, "")
	if err != nil {
		return err
	}
	k, err := loadKey(*as)
	if err != nil {
		return err
	}
	defer k.Close()
	// One key signs both manifests, so whoever identifies the export's
	// signer identifies the redaction's.
	if !strings.EqualFold(v.fingerprint, k.Fingerprint()) {
		return errDenied{fmt.Sprintf("%s's manifest is signed by key %s (%s's), not by the key in %s (%s): only the key that signed an export signs a redaction of it",
			src, v.fingerprint, v.m.Exporter, *as, k.Fingerprint())}
	}
	fmt.Fprintf(stdout, "verified %s, the export of request %s:\n", src, v.m.RequestID)
	for _, c := range v.checks {
		fmt.Fprintf(stdout, "  %s\n", c)
	}
	d, err := redactExport(ctx, absSrc, v.m, v.body, k, opts, absOut)
	if err != nil {
		return err
	}
	printRedacted(stdout, absOut, d, k)
	if filepath.Dir(absOut) != filepath.Dir(absSrc) {
		hint(ctx, "note: verify-export checks the export a redacted file was made from only when it is beside it: keep %s in %s", filepath.Base(absSrc), filepath.Dir(absOut))
	}
	return nil
}

// redactionVerified is what verifyRedacted found; unchecked are the
// checks it could not make.
type redactionVerified struct {
	r           *keys.RedactionManifest
	fingerprint string
	identified  bool
	checks      []string
	unchecked   []string
}

// verifyRedacted checks a redacted file against its signed redaction
// manifest (the key found as for an export), and the export it was made
// from when that is beside it under its recorded name.
func verifyRedacted(ctx context.Context, file, dir, keyFile string) (redactionVerified, error) {
	var v redactionVerified
	bp, sp, pp := redactionPaths(file)
	body, err := os.ReadFile(bp)
	if err != nil {
		return v, err
	}
	sig, err := os.ReadFile(sp)
	if err != nil {
		return v, err
	}
	claimed, err := keys.ParseRedaction(body)
	if err != nil {
		return v, err
	}
	ks, err := signerKey(ctx, dir, keyFile, pp, claimed.Federation, claimed.Redactor, "redactor")
	if errors.Is(err, errNoKeyBeside) {
		return v, fmt.Errorf("no %s beside the redacted file: give --dir DIR, a node of the federation, or --key REDACTOR.pub", pp)
	}
	if err != nil {
		return v, err
	}
	r, fp, err := keys.VerifyRedaction(body, sig, ks.pub)
	if err != nil {
		return v, err
	}
	if ks.wantFP != "" && !strings.EqualFold(fp, ks.wantFP) {
		return v, fmt.Errorf("the redaction manifest is signed by key %s, not by %s's key %s", fp, r.Redactor, ks.wantFP)
	}
	v.r, v.fingerprint, v.identified = r, fp, ks.identified
	v.checks = append(v.checks, fmt.Sprintf("signature: the redaction manifest is signed by key %s, %s", fp, ks.source))
	f, err := os.Open(file)
	if err != nil {
		return v, err
	}
	defer f.Close()
	if err := keys.CheckRedacted(r, f); err != nil {
		return v, err
	}
	v.checks = append(v.checks, fmt.Sprintf("file: %s has the %d bytes and the SHA-256 the redaction manifest states", file, r.Output.Bytes))
	if dir != "" {
		v.checks = append(v.checks, fmt.Sprintf("redactor: %s is a user of federation %q and the key is theirs", r.Redactor, r.Federation))
	}
	src := filepath.Join(filepath.Dir(file), r.Source.Name)
	if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
		v.unchecked = append(v.unchecked, fmt.Sprintf("the source export: %s is not beside %s, so it was not verified (the redaction records its SHA-256 %s and its manifest's %s; put it there and run verify-export again)",
			r.Source.Name, filepath.Base(file), r.Source.SHA256, r.Source.ManifestSHA256))
		return v, nil
	}
	sv, err := verifyExport(ctx, src, dir, keyFile)
	if err != nil {
		return v, fmt.Errorf("the source export %s: %w", src, err)
	}
	if !strings.EqualFold(sv.fingerprint, fp) {
		return v, fmt.Errorf("the source export %s is signed by key %s, the redaction by key %s: one key signs both", src, sv.fingerprint, fp)
	}
	if err := keys.CheckRedactionSource(r, sv.m, sv.body); err != nil {
		return v, err
	}
	v.identified = v.identified && sv.identified
	v.checks = append(v.checks, fmt.Sprintf("source: %s is the export of request %s, verified against its manifest (same key), and the one the redaction was made from (its SHA-256 and its manifest's as recorded)",
		src, sv.m.RequestID))
	return v, nil
}

func printRedactionVerified(ctx context.Context, w io.Writer, file string, v redactionVerified) {
	r := v.r
	head := "OK"
	if !v.identified {
		head = "INTACT"
	}
	fmt.Fprintf(w, "%s: %s is a redacted copy of %s, the export of request %s: %s; pixelation blocks of %d px, then a blur of %d px; %d frames; redacted by %s at %s with %s\n",
		head, file, r.Source.Name, r.RequestID, modeText(r), r.BlockPx, r.BlurPx, r.Output.Frames, r.Redactor, stamp(r.Created), r.Tool)
	for i, b := range r.Boxes {
		fmt.Fprintf(w, "  box %d: %s\n", i+1, boxText(b, r.Applied[i]))
	}
	fmt.Fprintf(w, "checked:\n")
	for _, c := range v.checks {
		fmt.Fprintf(w, "  %s\n", c)
	}
	if !v.identified {
		v.unchecked = append(v.unchecked, fmt.Sprintf("whose key %s is. Compare it with %s's key fingerprint, or run verify-export with --dir on a node of federation %q",
			v.fingerprint, r.Redactor, r.Federation))
	}
	for _, u := range v.unchecked {
		fmt.Fprintf(w, "not checked: %s\n", u)
	}
	if r.Output.Name != filepath.Base(file) {
		hint(ctx, "note: the file was written as %s", r.Output.Name)
	}
}
