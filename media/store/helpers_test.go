package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	cam      = "praha-1/entrance"
	segLen   = 4 * time.Second
	epochLen = time.Minute // 15 segments
)

var base = time.Date(2026, 3, 1, 23, 58, 0, 0, time.UTC) // crosses midnight after 30 segments

// segAt is segment i of camera: [base+i·4s, +4s), in the epoch that holds
// its start.
func segAt(camera string, i int) SegmentMeta {
	start := base.Add(time.Duration(i) * segLen)
	return SegmentMeta{Camera: camera, Start: start, End: start.Add(segLen), EpochStart: epochOf(start)}
}

func epochOf(t time.Time) time.Time { return base.Add(t.Sub(base) / epochLen * epochLen) }

// payload is deterministic "ciphertext" for segment i: its index, then
// filler, n bytes in all.
func payload(i, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, uint64(i))
	for j := 8; j < n; j++ {
		b[j] = byte(i*31 + j)
	}
	return b
}

func record(start time.Time) []byte { return []byte("epoch record " + formatTime(start)) }

func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putSeg stores segment i of camera (and its epoch record first if needed).
func putSeg(t testing.TB, s *Store, camera string, i, size int) SegmentMeta {
	t.Helper()
	m := segAt(camera, i)
	if err := ensureEpoch(s, camera, m.EpochStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(m, payload(i, size)); err != nil {
		t.Fatalf("Put %d: %v", i, err)
	}
	m.Size, m.SHA256 = int64(size), sha256.Sum256(payload(i, size))
	return m
}

func ensureEpoch(s *Store, camera string, start time.Time) error {
	if _, err := s.Epoch(camera, start); err == nil {
		return nil
	}
	return s.PutEpoch(camera, start, start.Add(epochLen), record(start))
}

// segIndex is the i of a segment made by segAt.
func segIndex(m SegmentMeta) int { return int(m.Start.Sub(base) / segLen) }

// checkConsistent checks the store's invariants on disk: no temporary
// file, every index entry's file there with the right bytes, every file
// indexed, every segment's epoch record stored.
func checkConsistent(t testing.TB, s *Store) {
	t.Helper()
	onDisk := map[string]bool{}
	filepath.WalkDir(s.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk: %v", err)
			return nil
		}
		if isTemp(d.Name()) {
			t.Errorf("temporary file left: %s", path)
		}
		rel, _ := filepath.Rel(s.Dir(), path)
		if !d.IsDir() && (strings.HasSuffix(rel, segSuffix) || strings.HasSuffix(rel, epochSuffix)) && !strings.HasPrefix(rel, damagedDir) {
			onDisk[rel] = true
		}
		return nil
	})
	cams, err := s.Cameras()
	if err != nil {
		t.Fatal(err)
	}
	indexed := 0
	for _, c := range cams {
		esc, _ := escapeCamera(c)
		segs, err := s.Segments(c, minTime, maxTime)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := s.Epochs(c, minTime, maxTime)
		if err != nil {
			t.Fatal(err)
		}
		haveEpoch := map[time.Time]bool{}
		for _, e := range eps {
			haveEpoch[e.Start] = true
			if _, err := s.Epoch(c, e.Start); err != nil {
				t.Errorf("epoch %s %s: %v", c, formatTime(e.Start), err)
			}
			rel := epochRel(esc, epochName{e.Start, e.End, e.SHA256})
			if !onDisk[rel] {
				t.Errorf("indexed epoch file %s is not on disk", rel)
			}
			indexed++
		}
		for _, m := range segs {
			b, err := s.ReadSegment(m)
			if err != nil {
				t.Errorf("segment %s: %v", formatTime(m.Start), err)
			} else if sha256.Sum256(b) != m.SHA256 {
				t.Errorf("segment %s: read bytes differ from its meta", formatTime(m.Start))
			}
			if !haveEpoch[m.EpochStart] {
				t.Errorf("segment %s has no epoch record %s", formatTime(m.Start), formatTime(m.EpochStart))
			}
			rel := segmentRel(esc, segName{m.Start, m.End, m.EpochStart, m.SHA256})
			if !onDisk[rel] {
				t.Errorf("indexed segment file %s is not on disk", rel)
			}
			indexed++
		}
	}
	if indexed != len(onDisk) {
		t.Errorf("%d files on disk, %d indexed", len(onDisk), indexed)
	}
}

// errCrash is what the tests' hook returns to stop an operation as a crash
// would.
var errCrash = errors.New("simulated crash")

// crashAt makes s stop (as if killed) the n-th time it reaches point.
func crashAt(s *Store, point string, n int) {
	s.hook = func(p string) error {
		if p == point {
			if n--; n == 0 {
				return errCrash
			}
		}
		return nil
	}
}

func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && isTemp(d.Name()) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

func mustNotExist(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (err %v)", path, err)
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
