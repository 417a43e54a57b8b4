package keys

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// A redacted copy of an export (a subject access answer with everyone but
// the subject made unrecognisable) ships with its own manifest: which
// export it was made from (the file's and its manifest's SHA-256), every
// box and its time span, how (mode, block and blur size, encoder, the
// filter graph, the ffmpeg that ran), and the file it made. It follows the
// export manifest's rules: canonical JSON read back strictly, and a
// detached signature by the same admin key (the export's exporter), under
// its own domain so that neither manifest passes for the other. To check
// one with GnuPG:
//
//	{ printf 'custos/redaction/v1\0'; cat FILE.redaction.json; } | gpg --verify FILE.redaction.sig -

// RedactionVersion is the only redaction manifest version this package
// writes and reads.
const RedactionVersion = 1

// MaxRedactionLen bounds a redaction manifest's JSON encoding.
const MaxRedactionLen = 1 << 20

const (
	redactionDomain = "custos/redaction/v1\x00"
	// maxRedactionBoxes is media/redact.MaxBoxes (keys does not import
	// media): the filter graph's bound.
	maxRedactionBoxes = 64
	maxFilterLen      = 64 << 10
	maxToolLen        = 256
)

// Errors about redaction manifests and redacted files.
var (
	ErrBadRedaction       = errors.New("bad redaction manifest")
	ErrRedactionSignature = errors.New("redaction manifest signature does not verify")
	ErrRedactedMismatch   = errors.New("redacted file does not match its manifest")
	// ErrRedactionSource is wrapped when an export is not the one a
	// redaction manifest says it was made from.
	ErrRedactionSource = errors.New("export is not the redaction's source")
)

// RedactionManifest describes one redacted copy of an export. Times are
// UTC once decoded.
type RedactionManifest struct {
	Version    int    `json:"version"`
	Federation string `json:"federation"` // the source export's
	RequestID  string `json:"request_id"` // the source export's
	// Redactor is the user who made and signed it: the source export's
	// exporter, whose key signed both manifests.
	Redactor string          `json:"redactor"`
	Created  time.Time       `json:"created"`
	Source   RedactionSource `json:"source"`
	// Mode is "redact" (the inside of every box is made unrecognisable)
	// or "keep" (everything outside the boxes is).
	Mode    string         `json:"mode"`
	Boxes   []RedactionBox `json:"boxes"`   // as the operator gave them
	Applied []RedactionBox `json:"applied"` // as filtered: edges on even pixels, the same spans
	// The strength: pixelation blocks of BlockPx pixels (one mean value
	// each), then a box blur of radius BlurPx.
	BlockPx int            `json:"block_px"`
	BlurPx  int            `json:"blur_px"`
	Encoder string         `json:"encoder"` // "libx264 preset veryfast crf 20"
	Filter  string         `json:"filter"`  // the ffmpeg filter graph that ran
	Tool    string         `json:"tool"`    // "ffmpeg version 5.1.6-0+deb12u1"
	Output  ManifestOutput `json:"output"`
}

// RedactionSource is the export a redacted file was made from.
type RedactionSource struct {
	Name           string `json:"name"` // base name, beside the redacted file when it was made
	Bytes          int64  `json:"bytes"`
	SHA256         string `json:"sha256"`          // of the bytes that were redacted, lower-case hex
	ManifestSHA256 string `json:"manifest_sha256"` // of its signed manifest's body as on disk
	Frames         int    `json:"frames"`
	Width          int    `json:"width"` // the frame the boxes are in, pixels
	Height         int    `json:"height"`
}

// RedactionBox is a rectangle of the frame in pixels from the top left,
// and the span of the clip it applies to: From and To are Go durations
// from the clip's first frame ("0s", "1m30s"); To "" is the clip's end.
type RedactionBox struct {
	X    int    `json:"x"`
	Y    int    `json:"y"`
	W    int    `json:"w"`
	H    int    `json:"h"`
	From string `json:"from"`
	To   string `json:"to,omitempty"`
}

// MarshalRedaction returns r's canonical encoding (as MarshalManifest
// writes a manifest). It refuses what ParseRedaction would refuse.
func MarshalRedaction(r *RedactionManifest) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("keys: marshal redaction: no manifest: %w", ErrBadRedaction)
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("keys: marshal redaction: %w", err)
	}
	b, err := r.encode()
	if err != nil {
		return nil, fmt.Errorf("keys: marshal redaction: %w", err)
	}
	return b, nil
}

func (r *RedactionManifest) encode() ([]byte, error) {
	c := *r
	c.Created = c.Created.UTC()
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxRedactionLen {
		return nil, fmt.Errorf("%d bytes, at most %d: %w", len(b)+1, MaxRedactionLen, ErrBadRedaction)
	}
	return append(b, '\n'), nil
}

// ParseRedaction decodes and checks an untrusted redaction manifest,
// accepting only its canonical encoding. It does not check a signature:
// VerifyRedaction does both.
func ParseRedaction(b []byte) (*RedactionManifest, error) {
	r, err := decodeRedaction(b)
	if err != nil {
		return nil, fmt.Errorf("keys: redaction manifest: %w", err)
	}
	return r, nil
}

func decodeRedaction(b []byte) (*RedactionManifest, error) {
	if len(b) > MaxRedactionLen {
		return nil, fmt.Errorf("%d bytes, at most %d: %w", len(b), MaxRedactionLen, ErrBadRedaction)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var r RedactionManifest
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", jsonError(err), ErrBadRedaction)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the manifest: %w", ErrBadRedaction)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	if enc, err := r.encode(); err != nil || !bytes.Equal(enc, b) {
		return nil, fmt.Errorf("not in canonical form (as MarshalRedaction writes it): %w", ErrBadRedaction)
	}
	return &r, nil
}

// check validates every field; errors wrap ErrBadRedaction.
func (r *RedactionManifest) check() error {
	if err := r.checkFields(); err != nil {
		return fmt.Errorf("%w: %w", err, ErrBadRedaction)
	}
	return nil
}

func (r *RedactionManifest) checkFields() error {
	if r.Version != RedactionVersion {
		return fmt.Errorf("version %d; this build reads version %d", r.Version, RedactionVersion)
	}
	if err := validManifestName(r.Federation); err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	if err := validManifestName(r.Redactor); err != nil {
		return fmt.Errorf("redactor: %w", err)
	}
	if err := validRequestID(r.RequestID); err != nil {
		return err
	}
	if !validTime(r.Created) {
		return errors.New("creation time missing or out of range")
	}
	if err := r.Source.check(); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if r.Mode != "redact" && r.Mode != "keep" {
		return fmt.Errorf("mode %q: want redact or keep", r.Mode)
	}
	if len(r.Boxes) == 0 || len(r.Boxes) > maxRedactionBoxes {
		return fmt.Errorf("%d boxes: want 1 to %d", len(r.Boxes), maxRedactionBoxes)
	}
	if len(r.Applied) != len(r.Boxes) {
		return fmt.Errorf("%d boxes applied for %d given", len(r.Applied), len(r.Boxes))
	}
	for i, b := range r.Boxes {
		if err := b.check(r.Source); err != nil {
			return fmt.Errorf("box %d: %w", i+1, err)
		}
		a := r.Applied[i]
		if err := a.check(r.Source); err != nil {
			return fmt.Errorf("applied box %d: %w", i+1, err)
		}
		if a.From != b.From || a.To != b.To {
			return fmt.Errorf("applied box %d has another time span than box %d", i+1, i+1)
		}
	}
	if r.BlockPx < 1 || r.BlurPx < 0 {
		return fmt.Errorf("block %d px, blur %d px: want a block of at least 1 px and no negative blur", r.BlockPx, r.BlurPx)
	}
	for _, f := range []struct {
		what, v string
		max     int
	}{{"encoder", r.Encoder, maxManifestTextLen}, {"filter", r.Filter, maxFilterLen}, {"tool", r.Tool, maxToolLen}} {
		if err := validText(f.what, f.v, f.max); err != nil {
			return err
		}
	}
	if err := r.Output.check(); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if r.Output.Name == r.Source.Name {
		return errors.New("the output has the source's name: a redacted copy is a new file")
	}
	if r.Output.Frames != r.Source.Frames {
		return fmt.Errorf("the output has %d frames, the source %d: redaction keeps every frame", r.Output.Frames, r.Source.Frames)
	}
	return nil
}

func (s RedactionSource) check() error {
	if err := (ManifestOutput{Name: s.Name, Bytes: s.Bytes, SHA256: s.SHA256, Frames: s.Frames}).check(); err != nil {
		return err
	}
	if !validSHA256Hex(s.ManifestSHA256) {
		return errors.New("manifest hash is not 64 lower-case hex digits")
	}
	if s.Frames < 1 || s.Width < 1 || s.Height < 1 || s.Width > 1<<16 || s.Height > 1<<16 {
		return fmt.Errorf("%d frames of %dx%d: want at least one frame of 1x1 to 65536x65536", s.Frames, s.Width, s.Height)
	}
	return nil
}

// check: a rectangle with area inside the source's frame, and a span
// whose end (if any) is after its start.
func (b RedactionBox) check(src RedactionSource) error {
	if b.W < 1 || b.H < 1 || b.X < 0 || b.Y < 0 || b.X > src.Width-b.W || b.Y > src.Height-b.H {
		return fmt.Errorf("(%d,%d %dx%d) is not inside the %dx%d frame", b.X, b.Y, b.W, b.H, src.Width, src.Height)
	}
	from, err := spanTime(b.From)
	if err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if b.To == "" {
		return nil
	}
	to, err := spanTime(b.To)
	if err != nil {
		return fmt.Errorf("to: %w", err)
	}
	if to <= from {
		return fmt.Errorf("span %s to %s ends before it starts", b.From, b.To)
	}
	return nil
}

// spanTime reads a box's time: a non-negative Go duration in the form
// time.Duration.String writes (one spelling per duration).
func spanTime(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d.String() != s {
		return 0, fmt.Errorf("%q is not a non-negative duration as Go writes it (0s, 1.5s, 1m30s)", s)
	}
	return d, nil
}

// SpanText is how a redaction manifest writes a box's From or To; a
// zero to (the clip's end) is "".
func SpanText(d time.Duration, isTo bool) string {
	if isTo && d == 0 {
		return ""
	}
	return d.String()
}

func redactionSigned(body []byte) []byte {
	return append([]byte(redactionDomain), body...)
}

// SignRedaction encodes r canonically and signs it with the redactor's
// admin key. It returns the body to ship (FILE.redaction.json) and the
// detached signature.
func SignRedaction(k *AdminKey, r *RedactionManifest) (body, sig []byte, err error) {
	body, err = MarshalRedaction(r)
	if err != nil {
		return nil, nil, err
	}
	sig, err = k.Sign(redactionSigned(body), time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("keys: sign redaction: %w", err)
	}
	return body, sig, nil
}

// VerifyRedaction checks sig over body with signerPublicKey (binary
// OpenPGP), accepting exactly the signature form SignRedaction writes,
// then decodes body strictly. It returns the signing key's fingerprint
// (hex) for the caller to compare with the key the policy holds for the
// redactor.
func VerifyRedaction(body, sig, signerPublicKey []byte) (*RedactionManifest, string, error) {
	if len(body) > MaxRedactionLen {
		return nil, "", fmt.Errorf("keys: verify redaction: %d bytes, at most %d: %w", len(body), MaxRedactionLen, ErrBadRedaction)
	}
	p, err := parseManifestSignature(sig)
	if err != nil {
		return nil, "", fmt.Errorf("keys: verify redaction: %w: %w", err, ErrRedactionSignature)
	}
	signed := redactionSigned(body)
	fp, err := VerifyAdminSignature(signerPublicKey, signed, sig)
	if err == nil && !hashTagMatches(p, signed) {
		err = errors.New("hash tag does not match")
	}
	if err != nil {
		return nil, "", fmt.Errorf("keys: verify redaction: %w: %w", err, ErrRedactionSignature)
	}
	r, err := ParseRedaction(body)
	if err != nil {
		return nil, "", err
	}
	return r, fp, nil
}

// CheckRedacted reads the redacted file and checks it is the one r
// describes: its size and SHA-256.
func CheckRedacted(r *RedactionManifest, file io.Reader) error {
	if r == nil {
		return fmt.Errorf("keys: check redacted file: no manifest: %w", ErrBadRedaction)
	}
	if err := checkFile(r.Output, file, ErrRedactedMismatch); err != nil {
		return fmt.Errorf("keys: check redacted file %s: %w", r.Output.Name, err)
	}
	return nil
}

// CheckRedactionSource checks that the export whose manifest is m (body
// as on disk, already verified with VerifyManifest, its file with
// CheckExport) is the one r was made from: the manifest's hash, and the
// file's hash, size and frames as m states them, the same request and
// federation.
func CheckRedactionSource(r *RedactionManifest, m *Manifest, manifestBody []byte) error {
	if r == nil || m == nil {
		return fmt.Errorf("keys: check redaction source: no manifest: %w", ErrBadRedaction)
	}
	sum := sha256.Sum256(manifestBody)
	got := hex.EncodeToString(sum[:])
	switch {
	case subtle.ConstantTimeCompare([]byte(got), []byte(r.Source.ManifestSHA256)) != 1:
		return fmt.Errorf("keys: check redaction source: its manifest's SHA-256 is %s, the redaction records %s: %w", got, r.Source.ManifestSHA256, ErrRedactionSource)
	case m.Output.SHA256 != r.Source.SHA256 || m.Output.Bytes != r.Source.Bytes:
		return fmt.Errorf("keys: check redaction source: the export has %d bytes with SHA-256 %s, the redaction records %d bytes with %s: %w",
			m.Output.Bytes, m.Output.SHA256, r.Source.Bytes, r.Source.SHA256, ErrRedactionSource)
	case m.Output.Frames != r.Source.Frames:
		return fmt.Errorf("keys: check redaction source: the export has %d frames, the redaction records %d: %w", m.Output.Frames, r.Source.Frames, ErrRedactionSource)
	case m.RequestID != r.RequestID || m.Federation != r.Federation:
		return fmt.Errorf("keys: check redaction source: the export is of request %s in federation %q, the redaction of %s in %q: %w",
			m.RequestID, m.Federation, r.RequestID, r.Federation, ErrRedactionSource)
	}
	return nil
}

// checkFile reads at most one byte more than out says, and compares size
// and SHA-256; a mismatch wraps mismatch.
func checkFile(out ManifestOutput, file io.Reader, mismatch error) error {
	if out.Bytes < 0 || !validSHA256Hex(out.SHA256) {
		return errors.New("no valid size and hash to check against")
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(file, out.Bytes+1))
	if err != nil {
		return err
	}
	if n > out.Bytes {
		return fmt.Errorf("longer than the %d bytes the manifest says: %w", out.Bytes, mismatch)
	}
	if n < out.Bytes {
		return fmt.Errorf("%d bytes, the manifest says %d: %w", n, out.Bytes, mismatch)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if subtle.ConstantTimeCompare([]byte(got), []byte(out.SHA256)) != 1 {
		return fmt.Errorf("SHA-256 %s, the manifest says %s: %w", got, out.SHA256, mismatch)
	}
	return nil
}
