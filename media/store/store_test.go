package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	if !s.Recovery().Empty() {
		t.Errorf("fresh store recovery: %v", s.Recovery())
	}
	var want []SegmentMeta
	for i := range 40 { // crosses midnight and three epochs
		want = append(want, putSeg(t, s, cam, i, 1000+i))
	}
	putSeg(t, s, "brno/yard", 0, 10)

	check := func(s *Store) {
		t.Helper()
		got, err := s.Segments(cam, minTime, maxTime)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, sameMeta) {
			t.Fatalf("Segments: got %d, want %d (first %+v)", len(got), len(want), got[0])
		}
		for i, m := range got {
			b, err := s.ReadSegment(m)
			if err != nil || !bytes.Equal(b, payload(i, 1000+i)) {
				t.Fatalf("ReadSegment %d: %v (bytes equal: %v)", i, err, bytes.Equal(b, payload(i, 1000+i)))
			}
		}
		rec, err := s.Epoch(cam, base)
		if err != nil || !bytes.Equal(rec, record(base)) {
			t.Errorf("Epoch: %q, %v", rec, err)
		}
		cams, err := s.Cameras()
		if err != nil || !slices.Equal(cams, []string{"brno/yard", cam}) {
			t.Errorf("Cameras: %q, %v", cams, err)
		}
		st, err := s.Stats(cam)
		wantSt := Stats{Segments: 40, Bytes: 40*1000 + 39*40/2, Oldest: base, Newest: base.Add(40 * segLen), Epochs: 3}
		if err != nil || st != wantSt {
			t.Errorf("Stats: %+v, %v; want %+v", st, err, wantSt)
		}
		checkConsistent(t, s)
	}
	check(s)
	s.Close()
	if _, err := s.Segments(cam, minTime, maxTime); !errors.Is(err, ErrClosed) {
		t.Errorf("Segments after Close: %v, want ErrClosed", err)
	}
	s = openT(t, dir, Options{MinFree: -1})
	if !s.Recovery().Empty() {
		t.Errorf("clean reopen recovery: %v", s.Recovery())
	}
	check(s)
	// The date directories are the segments' start dates.
	for _, d := range []string{"2026-03-01", "2026-03-02"} {
		if _, err := os.Stat(filepath.Join(dir, segmentsDir, "praha-1%2Fentrance", d)); err != nil {
			t.Errorf("date directory: %v", err)
		}
	}
}

func sameMeta(a, b SegmentMeta) bool {
	return a.Camera == b.Camera && a.Start.Equal(b.Start) && a.End.Equal(b.End) &&
		a.EpochStart.Equal(b.EpochStart) && a.Size == b.Size && a.SHA256 == b.SHA256
}

func TestPutRules(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	m := segAt(cam, 0)
	if err := s.Put(m, payload(0, 100)); !errors.Is(err, ErrNoEpoch) {
		t.Fatalf("Put before its epoch record: %v, want ErrNoEpoch", err)
	}
	if err := s.PutEpoch(cam, base, base.Add(epochLen), record(base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(m, payload(0, 100)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		do   func() error
	}{
		{"same segment again", nil, func() error { return s.Put(m, payload(0, 100)) }},
		{"other bytes, same start", ErrConflict, func() error { return s.Put(m, payload(1, 100)) }},
		{"starts after its epoch ends", ErrNoEpoch, func() error { return s.Put(segAtEpoch(15, base), payload(15, 10)) }},
		{"epoch not stored", ErrNoEpoch, func() error { return s.Put(segAt(cam, 15), payload(15, 10)) }},
		{"empty", ErrInvalid, func() error { return s.Put(segAt(cam, 1), nil) }},
		{"end before start", ErrInvalid, func() error { x := segAt(cam, 1); x.End = x.Start; return s.Put(x, payload(1, 9)) }},
		{"too long", ErrInvalid, func() error { x := segAt(cam, 1); x.End = x.Start.Add(2 * time.Hour); return s.Put(x, payload(1, 9)) }},
		{"epoch after start", ErrInvalid, func() error { x := segAt(cam, 1); x.EpochStart = x.End; return s.Put(x, payload(1, 9)) }},
		{"wrong size in meta", ErrInvalid, func() error { x := segAt(cam, 1); x.Size = 3; return s.Put(x, payload(1, 9)) }},
		{"wrong hash in meta", ErrInvalid, func() error { x := segAt(cam, 1); x.SHA256[0] = 1; return s.Put(x, payload(1, 9)) }},
		{"before 1970", ErrInvalid, func() error {
			x := SegmentMeta{Camera: cam, Start: time.Unix(-10, 0), End: time.Unix(-5, 0), EpochStart: time.Unix(-10, 0)}
			return s.Put(x, payload(1, 9))
		}},
		{"same epoch again", nil, func() error { return s.PutEpoch(cam, base, base.Add(epochLen), record(base)) }},
		{"other epoch record, same start", ErrConflict, func() error { return s.PutEpoch(cam, base, base.Add(epochLen), []byte("x")) }},
		{"overlapping epoch (later)", ErrConflict, func() error { return s.PutEpoch(cam, base.Add(time.Second), base.Add(epochLen*2), []byte("x")) }},
		{"overlapping epoch (earlier)", ErrConflict, func() error { return s.PutEpoch(cam, base.Add(-time.Second), base.Add(time.Second), []byte("x")) }},
		{"adjacent epoch", nil, func() error { return s.PutEpoch(cam, base.Add(epochLen), base.Add(2*epochLen), []byte("x")) }},
		{"epoch too long", ErrInvalid, func() error { return s.PutEpoch(cam, base.Add(time.Hour), base.Add(48*time.Hour), []byte("x")) }},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
	checkConsistent(t, s)
}

// segAtEpoch is segment i of cam, claiming the epoch at epoch.
func segAtEpoch(i int, epoch time.Time) SegmentMeta {
	m := segAt(cam, i)
	m.EpochStart = epoch
	return m
}

func TestSegmentsRange(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	for i := range 10 {
		putSeg(t, s, cam, i, 50)
	}
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	cases := []struct {
		from, to time.Time
		want     []int
	}{
		{at(0), at(40), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{at(0), at(4), []int{0}},     // [from, to) excludes the segment starting at to
		{at(4), at(8), []int{1}},     // and the one ending at from
		{at(5), at(6), []int{1}},     // inside one segment
		{at(3), at(5), []int{0, 1}},  // overlaps two
		{at(-100), at(1), []int{0}},  // from before everything
		{at(39), at(1000), []int{9}}, // to after everything
		{at(40), at(50), nil},        // after the last end
		{at(-50), at(0), nil},        // before the first start
		{at(10), at(10), nil},        // empty range
		{at(20), at(10), nil},        // reversed range
		{minTime.Add(-time.Hour), maxTime, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
	}
	for _, c := range cases {
		got, err := s.Segments(cam, c.from, c.to)
		if err != nil {
			t.Fatal(err)
		}
		var idx []int
		for _, m := range got {
			idx = append(idx, segIndex(m))
		}
		if !slices.Equal(idx, c.want) {
			t.Errorf("Segments(%v, %v) = %v, want %v", c.from.Sub(base), c.to.Sub(base), idx, c.want)
		}
	}
	if got, err := s.Segments("no/such", minTime, maxTime); err != nil || len(got) != 0 {
		t.Errorf("unknown camera: %v, %v", got, err)
	}
	eps, err := s.Epochs(cam, at(59), at(61))
	if err != nil || len(eps) != 1 || !eps[0].Start.Equal(base) {
		t.Errorf("Epochs: %+v, %v", eps, err)
	}
}

func TestCorruptionDetected(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MinFree: -1})
	m := putSeg(t, s, cam, 3, 4096)
	esc, _ := escapeCamera(cam)
	path := filepath.Join(dir, segmentRel(esc, segName{m.Start, m.End, m.EpochStart, m.SHA256}))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[1234] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadSegment(m); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadSegment of a flipped byte: %v, want ErrCorrupt", err)
	}
	other := m
	other.SHA256[0] ^= 1
	if _, err := s.ReadSegment(other); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadSegment with another hash: %v, want ErrNotFound", err)
	}
	// Truncated: the size no longer matches; Open drops the entry, finds
	// the bytes do not match the name's hash, and quarantines the file.
	if err := os.WriteFile(path, b[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadSegment(m); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadSegment of a truncated file: %v, want ErrCorrupt", err)
	}
	epPath := filepath.Join(dir, epochsDir, esc, epochName{base, base.Add(epochLen), sha(record(base))}.String())
	if err := os.WriteFile(epPath, []byte("epoch record XXXX"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Epoch(cam, base); err == nil {
		t.Errorf("Epoch of an edited record: no error")
	}
	s.Close()
	s = openT(t, dir, Options{MinFree: -1})
	r := s.Recovery()
	// Both files changed size: both entries dropped, both files damaged.
	if len(r.Dropped) != 2 || len(r.Damaged) != 2 || len(r.Reindexed) != 0 || len(r.NoEpoch) != 0 {
		t.Errorf("recovery: %+v; want 2 dropped, 2 damaged", r)
	}
	mustNotExist(t, path)
	if _, err := os.Stat(filepath.Join(dir, damagedDir, esc, filepath.Base(path))); err != nil {
		t.Errorf("damaged file not quarantined: %v", err)
	}
	checkConsistent(t, s)
}

func TestCameraIDs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	s := openT(t, root, Options{MinFree: -1})
	bad := []string{"../../etc", "..", ".", "/etc/passwd", "site/../../x", "site/..", "./x", "a//b", "a/",
		"", "a\x00b", "a\nb", "a\x7fb", "bad\xffutf8", "a/\u0085"}
	for _, c := range bad {
		if err := s.PutEpoch(c, base, base.Add(epochLen), []byte("r")); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutEpoch(%q): %v, want ErrInvalid", c, err)
		}
		if err := s.Put(SegmentMeta{Camera: c, Start: base, End: base.Add(time.Second), EpochStart: base}, []byte("x")); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%q): %v, want ErrInvalid", c, err)
		}
		if _, err := s.Segments(c, minTime, maxTime); !errors.Is(err, ErrInvalid) {
			t.Errorf("Segments(%q): %v, want ErrInvalid", c, err)
		}
		if _, err := s.DeleteBefore(c, maxTime); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeleteBefore(%q): %v, want ErrInvalid", c, err)
		}
	}
	// Odd but valid ids stay inside the store, one directory each.
	for i, c := range []string{"..x/y", "site/.hidden", "a b/c%2F", "x/y/z", "ü/ñ"} {
		putSeg(t, s, c, i, 10)
		esc, _ := escapeCamera(c)
		if strings.ContainsAny(esc, "/.") || esc == "" {
			t.Errorf("escape(%q) = %q", c, esc)
		}
	}
	// Nothing escaped the root: its parent holds only the root.
	ents, err := os.ReadDir(filepath.Dir(root))
	if err != nil || len(ents) != 1 {
		t.Errorf("parent of the root holds %v (%v)", ents, err)
	}
	checkConsistent(t, s)
}

func TestEscapeCamera(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"praha-1/entrance", "praha-1%2Fentrance"},
		{"a.b/c_d", "a%2Eb%2Fc_d"},
		{"%/x", "%25%2Fx"},
	} {
		got, err := escapeCamera(c.in)
		if err != nil || got != c.want {
			t.Errorf("escapeCamera(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		back, err := unescapeCamera(got)
		if err != nil || back != c.in {
			t.Errorf("unescapeCamera(%q) = %q, %v", got, back, err)
		}
	}
	for _, name := range []string{"a%2fb", "a%41", "..", "a%2", "%2E%2E", "a/b", "x%00y"} {
		if c, err := unescapeCamera(name); err == nil {
			t.Errorf("unescapeCamera(%q) = %q, want an error", name, c)
		}
	}
}
