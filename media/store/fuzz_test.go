package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeIndexEntry: decoding an index value never panics, and accepts
// only what encode gives back byte for byte.
func FuzzDecodeIndexEntry(f *testing.F) {
	seg := entry{kind: kindSegment, start: base, end: base.Add(segLen), epoch: base, size: 1234, sha: sha([]byte("x"))}
	ep := entry{kind: kindEpoch, start: base, end: base.Add(epochLen), epoch: base, size: 10, sha: sha([]byte("y"))}
	f.Add(seg.encode())
	f.Add(ep.encode())
	f.Add([]byte{})
	f.Add(seg.encode()[:entryFixed])
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if again := e.encode(); string(again) != string(b) {
			t.Fatalf("decode(%x) = %+v, which encodes to %x", b, e, again)
		}
		if e.kind == kindSegment && checkSpan(e.start, e.end, e.epoch) != nil {
			t.Fatalf("accepted a bad span: %+v", e)
		}
	})
}

// FuzzParseSegmentName: file names from disk never panic the parser, and
// an accepted name is canonical and sane.
func FuzzParseSegmentName(f *testing.F) {
	f.Add(segName{base, base.Add(segLen), base, sha([]byte("x"))}.String())
	f.Add(epochName{base, base.Add(epochLen), sha([]byte("x"))}.String())
	f.Add("20260301T235800.000000000Z-20260301T235804.000000000Z-20260301T235800.000000000Z-" + strings.Repeat("0", 64) + ".seg")
	f.Add("../x.seg")
	f.Fuzz(func(t *testing.T, name string) {
		if n, err := parseSegmentName(name); err == nil {
			if n.String() != name {
				t.Fatalf("parse(%q) = %+v, formats as %q", name, n, n.String())
			}
			if !n.Start.Before(n.End) || n.End.Sub(n.Start) > MaxSegmentDuration || n.Epoch.After(n.Start) {
				t.Fatalf("accepted %q: %+v", name, n)
			}
			if filepath.Base(name) != name || strings.HasPrefix(name, ".") {
				t.Fatalf("accepted a path or hidden name %q", name)
			}
		}
		if n, err := parseEpochName(name); err == nil && (n.String() != name || !n.Start.Before(n.End)) {
			t.Fatalf("parseEpochName(%q) = %+v", name, n)
		}
	})
}

// FuzzCameraDir: any camera id either is refused or escapes to one plain
// path element directly under its parent, and only its own escape
// unescapes to it.
func FuzzCameraDir(f *testing.F) {
	for _, s := range []string{"praha-1/entrance", "../../etc", "a/..", "x%2Fy", "ü/ñ", "a\x00b", ".", "%2E%2E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if esc, err := escapeCamera(s); err == nil {
			root := "/store/segments"
			if filepath.Dir(filepath.Join(root, esc)) != root || strings.HasPrefix(esc, ".") || len(esc) > maxNameLen {
				t.Fatalf("escapeCamera(%q) = %q leaves its directory", s, esc)
			}
			if back, err := unescapeCamera(esc); err != nil || back != s {
				t.Fatalf("unescapeCamera(%q) = %q, %v; want %q", esc, back, err, s)
			}
		}
		if c, err := unescapeCamera(s); err == nil {
			if esc, _ := escapeCamera(c); esc != s {
				t.Fatalf("unescapeCamera(%q) = %q, whose escape is %q", s, c, esc)
			}
		}
	})
}

func TestTimeNames(t *testing.T) {
	for _, tm := range []time.Time{minTime, maxTime, base, base.Add(123456789)} {
		s := formatTime(tm)
		got, err := parseTime(s)
		if err != nil || !got.Equal(tm) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", s, got, err, tm)
		}
	}
	for _, s := range []string{"", "20260301T235800Z", "20260301T235800.000000000z", "19691231T235959.999999999Z", "22620411T234748.000000000Z"} {
		if _, err := parseTime(s); err == nil {
			t.Errorf("parseTime(%q) accepted", s)
		}
	}
}
