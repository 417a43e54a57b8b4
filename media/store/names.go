package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// Directory and file names inside the store's root (package doc).
const (
	indexName   = "index.db"
	segmentsDir = "segments"
	epochsDir   = "epochs"
	damagedDir  = "damaged"
	segSuffix   = ".seg"
	epochSuffix = ".epoch"
	tmpPrefix   = "."
	tmpSuffix   = ".tmp"
	dateLayout  = "2006-01-02"
	timeLayout  = "20060102T150405.000000000" // followed by "Z"
	timeLen     = len(timeLayout) + 1
	shaHexLen   = 64
	maxNameLen  = 255 // NAME_MAX of every Linux file system we run on
)

// Time bounds: index keys are Unix nanoseconds in an int64.
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Unix(0, 1<<63-1).UTC()
)

// escapeCamera turns a camera id into one path element, or says why it
// cannot be one. Every byte but A–Z a–z 0–9 '-' '_' becomes %XX, so the
// result never contains '/', never starts with '.', and is never "." or
// "..": whatever the id, it names a directory directly under its parent.
func escapeCamera(camera string) (string, error) {
	if err := checkCamera(camera); err != nil {
		return "", err
	}
	var b strings.Builder
	for i := 0; i < len(camera); i++ {
		c := camera[i]
		if plainByte(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() > maxNameLen {
		return "", fmt.Errorf("camera id %q is too long for a file name", camera)
	}
	return b.String(), nil
}

// unescapeCamera reverses escapeCamera and accepts only its canonical
// output, so one camera has exactly one directory.
func unescapeCamera(name string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case plainByte(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(name) && isUpperHex(name[i+1]) && isUpperHex(name[i+2]):
			v, _ := hex.DecodeString(name[i+1 : i+3])
			if plainByte(v[0]) {
				return "", fmt.Errorf("directory %q: %%%s need not be escaped", name, name[i+1:i+3])
			}
			b.WriteByte(v[0])
			i += 2
		default:
			return "", fmt.Errorf("directory %q is not an escaped camera id", name)
		}
	}
	camera := b.String()
	if err := checkCamera(camera); err != nil {
		return "", fmt.Errorf("directory %q: %w", name, err)
	}
	return camera, nil
}

// checkCamera refuses ids that could never be a policy camera ("site/name")
// and that a careless path join would turn into traversal: empty, absolute,
// with an empty, "." or ".." element, NUL or other control characters, or
// not UTF-8.
func checkCamera(camera string) error {
	switch {
	case camera == "":
		return errors.New("empty camera id")
	case !utf8.ValidString(camera):
		return fmt.Errorf("camera id %q is not UTF-8", camera)
	case strings.HasPrefix(camera, "/"):
		return fmt.Errorf("camera id %q is an absolute path", camera)
	}
	for _, r := range camera {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("camera id %q has control character %U", camera, r)
		}
	}
	for _, el := range strings.Split(camera, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("camera id %q has path element %q", camera, el)
		}
	}
	return nil
}

func plainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// checkTime refuses times the index cannot key.
func checkTime(what string, t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s %s is outside %s…%s", what, t, minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) + "Z" }

// parseTime accepts only formatTime's output.
func parseTime(s string) (time.Time, error) {
	if len(s) != timeLen || s[len(s)-1] != 'Z' {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	t, err := time.Parse(timeLayout, s[:len(s)-1])
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	if checkTime("time", t) != nil || formatTime(t) != s {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	return t, nil
}

// segName is what a segment file's name says.
type segName struct {
	Start, End, Epoch time.Time
	SHA256            [32]byte
}

func (n segName) String() string {
	return formatTime(n.Start) + "-" + formatTime(n.End) + "-" + formatTime(n.Epoch) + "-" + hex.EncodeToString(n.SHA256[:]) + segSuffix
}

// parseSegmentName parses and checks a segment file name: canonical
// (String gives it back), start before end, the epoch not after the start,
// and no longer than MaxSegmentDuration.
func parseSegmentName(name string) (segName, error) {
	var n segName
	f, ok := splitName(name, segSuffix, 3)
	if !ok {
		return n, fmt.Errorf("%q is not a segment file name", name)
	}
	var err [4]error
	n.Start, err[0] = parseTime(f[0])
	n.End, err[1] = parseTime(f[1])
	n.Epoch, err[2] = parseTime(f[2])
	n.SHA256, err[3] = parseSHA(f[3])
	if e := errors.Join(err[:]...); e != nil {
		return segName{}, fmt.Errorf("segment file %q: %w", name, e)
	}
	if e := checkSpan(n.Start, n.End, n.Epoch); e != nil {
		return segName{}, fmt.Errorf("segment file %q: %w", name, e)
	}
	return n, nil
}

// checkSpan checks a segment's times: start before end, at most
// MaxSegmentDuration, and its epoch starting no later than it does.
func checkSpan(start, end, epoch time.Time) error {
	for _, e := range []error{checkTime("start", start), checkTime("end", end), checkTime("epoch start", epoch)} {
		if e != nil {
			return e
		}
	}
	switch {
	case !start.Before(end):
		return fmt.Errorf("start %s is not before end %s", formatTime(start), formatTime(end))
	case end.Sub(start) > MaxSegmentDuration:
		return fmt.Errorf("segment %s…%s is longer than %v", formatTime(start), formatTime(end), MaxSegmentDuration)
	case epoch.After(start):
		return fmt.Errorf("epoch %s starts after the segment (%s)", formatTime(epoch), formatTime(start))
	}
	return nil
}

// epochName is what an epoch record file's name says.
type epochName struct {
	Start, End time.Time
	SHA256     [32]byte
}

func (n epochName) String() string {
	return formatTime(n.Start) + "-" + formatTime(n.End) + "-" + hex.EncodeToString(n.SHA256[:]) + epochSuffix
}

func parseEpochName(name string) (epochName, error) {
	var n epochName
	f, ok := splitName(name, epochSuffix, 2)
	if !ok {
		return n, fmt.Errorf("%q is not an epoch file name", name)
	}
	var err [3]error
	n.Start, err[0] = parseTime(f[0])
	n.End, err[1] = parseTime(f[1])
	n.SHA256, err[2] = parseSHA(f[2])
	if e := errors.Join(err[:]...); e != nil {
		return epochName{}, fmt.Errorf("epoch file %q: %w", name, e)
	}
	if e := checkEpochSpan(n.Start, n.End); e != nil {
		return epochName{}, fmt.Errorf("epoch file %q: %w", name, e)
	}
	return n, nil
}

func checkEpochSpan(start, end time.Time) error {
	if e := errors.Join(checkTime("epoch start", start), checkTime("epoch end", end)); e != nil {
		return e
	}
	switch {
	case !start.Before(end):
		return fmt.Errorf("epoch start %s is not before its end %s", formatTime(start), formatTime(end))
	case end.Sub(start) > MaxEpochDuration:
		return fmt.Errorf("epoch %s…%s is longer than %v", formatTime(start), formatTime(end), MaxEpochDuration)
	}
	return nil
}

// splitName splits "t1-…-tn-sha<suffix>" into n times and the hash.
func splitName(name, suffix string, times int) ([]string, bool) {
	if len(name) != times*(timeLen+1)+shaHexLen+len(suffix) || !strings.HasSuffix(name, suffix) {
		return nil, false
	}
	f := strings.Split(strings.TrimSuffix(name, suffix), "-")
	if len(f) != times+1 {
		return nil, false
	}
	return f, true
}

func parseSHA(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != shaHexLen || strings.ToLower(s) != s {
		return h, fmt.Errorf("bad sha256 %q", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("bad sha256 %q", s)
	}
	return h, nil
}

// segmentRel is a segment's path relative to the root.
func segmentRel(escCam string, n segName) string {
	return filepath.Join(segmentsDir, escCam, n.Start.UTC().Format(dateLayout), n.String())
}

func epochRel(escCam string, n epochName) string {
	return filepath.Join(epochsDir, escCam, n.String())
}

func isTemp(name string) bool {
	return strings.HasPrefix(name, tmpPrefix) && strings.HasSuffix(name, tmpSuffix)
}
