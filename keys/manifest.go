package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// An export ships with a manifest: what was exported, under which request,
// approved by whom, from which segments, into which file, by whom. The
// manifest is canonical JSON (MarshalManifest), detached-signed by the
// exporter's admin key (manifest_sign.go), and read back strictly: the
// decoder accepts only the exact bytes MarshalManifest would write for the
// manifest it decoded, so no two tools can read one signed manifest two
// ways (duplicate keys, case-folded names, alternative number or time
// forms, trailing data are all refused).

// ManifestVersion is the only manifest version this package writes and
// reads. Version 2 states the chain of custody: each segment's store,
// sequence number and signed link, and every gap.
const ManifestVersion = 2

// MaxManifestLen bounds a manifest's JSON encoding.
const MaxManifestLen = 4 << 20

const (
	maxManifestTextLen = 1024 // purpose, basis
	maxManifestNameLen = 63   // federation, users, nodes: the policy's names
	maxOutputNameLen   = 255
)

// ErrBadManifest is wrapped by every error about a malformed manifest.
var ErrBadManifest = errors.New("bad export manifest")

// Manifest describes one export. Times are UTC once decoded.
type Manifest struct {
	Version      int               `json:"version"`
	Federation   string            `json:"federation"`
	RequestID    string            `json:"request_id"`
	Requester    string            `json:"requester"`
	Approvers    []string          `json:"approvers"` // distinct, never the requester
	Purpose      string            `json:"purpose"`
	Basis        string            `json:"basis"` // legal basis
	Cameras      []string          `json:"cameras"`
	From         time.Time         `json:"from"` // the requested range
	To           time.Time         `json:"to"`
	Exporter     string            `json:"exporter"`      // the user who exported
	ExporterNode string            `json:"exporter_node"` // the node it ran on
	Created      time.Time         `json:"created"`
	Segments     []ManifestSegment `json:"segments"`
	// Gaps lists footage of the range the export lacks although the
	// chain shows it was recorded (or that could not be opened); an
	// export has gaps only when it was asked to allow them.
	Gaps   []ManifestGap  `json:"gaps,omitempty"`
	Output ManifestOutput `json:"output"`
}

// ManifestGap is footage missing from an export, and why.
type ManifestGap struct {
	Camera string    `json:"camera"`
	From   time.Time `json:"from"` // the last footage before it ends here
	To     time.Time `json:"to"`   // the next footage after it starts here
	// Missing is how many segments the store's chain shows are missing
	// (0 when unknown: the chain restarts there).
	Missing uint64 `json:"missing"`
	Reason  string `json:"reason"`
}

// ManifestSegment is one recorded segment the export was made from.
type ManifestSegment struct {
	Camera           string    `json:"camera"`
	Start            time.Time `json:"start"`
	End              time.Time `json:"end"`
	CiphertextSHA256 string    `json:"ciphertext_sha256"` // lower-case hex, as stored
	PlaintextSHA256  string    `json:"plaintext_sha256"`  // lower-case hex, as decrypted
	// The store that sealed the segment, its place in that store's chain
	// of the camera, and the SHA-256 of its signed link (keys/custody.go):
	// consecutive segments of a camera have consecutive Seq, or a gap says
	// why not.
	Store string `json:"store"`
	Seq   uint64 `json:"seq"`
	Link  string `json:"link"` // lower-case hex
}

// ManifestOutput is the exported file.
type ManifestOutput struct {
	Name   string `json:"name"` // base name, no directory
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // lower-case hex
	Frames int    `json:"frames"`
}

// MarshalManifest returns m's canonical encoding: indented JSON in field
// order, times in UTC RFC 3339 with the fewest fraction digits, one final
// newline. It refuses a manifest that ParseManifest would refuse.
func MarshalManifest(m *Manifest) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("keys: marshal manifest: no manifest: %w", ErrBadManifest)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("keys: marshal manifest: %w", err)
	}
	b, err := m.encode()
	if err != nil {
		return nil, fmt.Errorf("keys: marshal manifest: %w", err)
	}
	return b, nil
}

func (m *Manifest) encode() ([]byte, error) {
	c := *m
	c.From, c.To, c.Created = c.From.UTC(), c.To.UTC(), c.Created.UTC()
	c.Segments = make([]ManifestSegment, len(m.Segments))
	for i, s := range m.Segments {
		s.Start, s.End = s.Start.UTC(), s.End.UTC()
		c.Segments[i] = s
	}
	if m.Gaps != nil {
		c.Gaps = make([]ManifestGap, len(m.Gaps))
		for i, g := range m.Gaps {
			g.From, g.To = g.From.UTC(), g.To.UTC()
			c.Gaps[i] = g
		}
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxManifestLen {
		return nil, fmt.Errorf("%d bytes, at most %d: %w", len(b)+1, MaxManifestLen, ErrBadManifest)
	}
	return append(b, '\n'), nil
}

// ParseManifest decodes and checks an untrusted manifest. It does not check
// a signature: VerifyManifest does both.
func ParseManifest(b []byte) (*Manifest, error) {
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("keys: manifest: %w", err)
	}
	return m, nil
}

func decodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestLen {
		return nil, fmt.Errorf("%d bytes, at most %d: %w", len(b), MaxManifestLen, ErrBadManifest)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var m Manifest
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %w", jsonError(err), ErrBadManifest)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the manifest: %w", ErrBadManifest)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if enc, err := m.encode(); err != nil || !bytes.Equal(enc, b) {
		return nil, fmt.Errorf("not in canonical form (as MarshalManifest writes it): %w", ErrBadManifest)
	}
	return &m, nil
}

// jsonError keeps the decoder's message but not the input it quotes, which
// may be long or hostile (terminal escapes).
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("field %q has the wrong type", typ.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return errors.New("unknown field")
	}
	return errors.New("invalid JSON")
}

// check validates every field; errors wrap ErrBadManifest.
func (m *Manifest) check() error {
	if err := m.checkHeader(); err != nil {
		return fmt.Errorf("%w: %w", err, ErrBadManifest)
	}
	for i, s := range m.Segments {
		if err := m.checkSegment(s); err != nil {
			return fmt.Errorf("segment %d: %w: %w", i, err, ErrBadManifest)
		}
	}
	for i, g := range m.Gaps {
		if err := m.checkGap(g); err != nil {
			return fmt.Errorf("gap %d: %w: %w", i, err, ErrBadManifest)
		}
	}
	if err := m.Output.check(); err != nil {
		return fmt.Errorf("output: %w: %w", err, ErrBadManifest)
	}
	return nil
}

func (m *Manifest) checkGap(g ManifestGap) error {
	if !slices.Contains(m.Cameras, g.Camera) {
		return errors.New("camera not among the manifest's cameras")
	}
	if !validTime(g.From) || !validTime(g.To) || g.To.Before(g.From) {
		return errors.New("its end is before its start")
	}
	return validText("reason", g.Reason, maxManifestTextLen)
}

func (m *Manifest) checkHeader() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("version %d; this build reads version %d", m.Version, ManifestVersion)
	}
	for _, f := range []struct{ what, v string }{{"federation", m.Federation}, {"requester", m.Requester},
		{"exporter", m.Exporter}, {"exporter node", m.ExporterNode}} {
		if err := validManifestName(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	if err := validRequestID(m.RequestID); err != nil {
		return err
	}
	if err := m.checkApprovers(); err != nil {
		return err
	}
	if err := validText("purpose", m.Purpose, maxManifestTextLen); err != nil {
		return err
	}
	if err := validText("legal basis", m.Basis, maxManifestTextLen); err != nil {
		return err
	}
	if err := checkCameras(m.Cameras); err != nil {
		return err
	}
	if err := validRange("requested range", m.From, m.To); err != nil {
		return err
	}
	if !validTime(m.Created) {
		return errors.New("creation time missing or out of range")
	}
	if len(m.Segments) == 0 {
		return errors.New("no segments")
	}
	return nil
}

func (m *Manifest) checkApprovers() error {
	if len(m.Approvers) == 0 {
		return errors.New("no approvers")
	}
	for i, a := range m.Approvers {
		if err := validManifestName(a); err != nil {
			return fmt.Errorf("approver %d: %w", i, err)
		}
		if a == m.Requester {
			return fmt.Errorf("the requester %s is listed as an approver", a)
		}
		for _, b := range m.Approvers[:i] {
			if a == b {
				return fmt.Errorf("approver %s is listed twice", a)
			}
		}
	}
	return nil
}

func checkCameras(cams []string) error {
	if len(cams) == 0 {
		return errors.New("no cameras")
	}
	seen := make(map[string]bool, len(cams))
	for _, c := range cams {
		if err := validCamera(c); err != nil {
			return err
		}
		if seen[c] {
			return fmt.Errorf("camera %s is listed twice", c)
		}
		seen[c] = true
	}
	return nil
}

// checkSegment: a camera of the manifest, a valid range that overlaps the
// requested one, two SHA-256 hashes.
func (m *Manifest) checkSegment(s ManifestSegment) error {
	if !slices.Contains(m.Cameras, s.Camera) {
		return errors.New("camera not among the manifest's cameras")
	}
	if err := validRange("range", s.Start, s.End); err != nil {
		return err
	}
	if !s.End.After(m.From) || !s.Start.Before(m.To) {
		return errors.New("outside the requested range")
	}
	if !validSHA256Hex(s.CiphertextSHA256) || !validSHA256Hex(s.PlaintextSHA256) || !validSHA256Hex(s.Link) {
		return errors.New("a hash is not 64 lower-case hex digits")
	}
	if err := validManifestName(s.Store); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func (o ManifestOutput) check() error {
	if err := validText("name", o.Name, maxOutputNameLen); err != nil {
		return err
	}
	if strings.ContainsAny(o.Name, `/\`) || o.Name == "." || o.Name == ".." {
		return errors.New("name must be a file name without a directory")
	}
	if o.Bytes < 0 || o.Frames < 0 {
		return errors.New("negative size or frame count")
	}
	if !validSHA256Hex(o.SHA256) {
		return errors.New("hash is not 64 lower-case hex digits")
	}
	return nil
}

// validManifestName accepts the policy's names: 1–63 letters, digits, '-',
// '_' and '.'.
func validManifestName(s string) error {
	if s == "" || len(s) > maxManifestNameLen || !nameChars(s, "-_.") {
		return fmt.Errorf("names have 1 to %d letters, digits, '-', '_' or '.'", maxManifestNameLen)
	}
	return nil
}

// validText accepts 1..max bytes of UTF-8 without control or format
// characters (no newlines, terminal escapes or bidi overrides to make a
// printed manifest say something else than it does).
func validText(what, s string, max int) error {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%s must be 1 to %d bytes of UTF-8", what, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%s holds control character %U", what, r)
		}
	}
	return nil
}

func validRange(what string, from, to time.Time) error {
	if !validTime(from) || !validTime(to) || !from.Before(to) {
		return fmt.Errorf("%s must have a start before its end, both after 1970", what)
	}
	return nil
}

// validTime: set, and within what RFC 3339 (and so JSON) can write.
func validTime(t time.Time) bool { y := t.UTC().Year(); return y >= 1970 && y <= 9999 }

func validSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
