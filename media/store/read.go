package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats summarizes one camera's stored footage.
type Stats struct {
	Segments int
	Bytes    int64     // ciphertext bytes of all segments
	Oldest   time.Time // start of the oldest segment; zero if none
	Newest   time.Time // end of the newest segment; zero if none
	Epochs   int       // epoch records
}

// Segments lists camera's segments that overlap [from, to), by start.
func (s *Store) Segments(camera string, from, to time.Time) ([]SegmentMeta, error) {
	var out []SegmentMeta
	if !from.Before(to) {
		return nil, emptyRange(camera)
	}
	err := s.scan(bucketSegments, camera, from.Add(-MaxSegmentDuration), to, func(e entry) bool {
		if e.end.After(from) {
			out = append(out, e.segment(camera))
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("store: segments of %s %s…%s: %w", camera, formatTime(from), formatTime(to), err)
	}
	return out, nil
}

// Epochs lists camera's epoch records that overlap [from, to), by start.
func (s *Store) Epochs(camera string, from, to time.Time) ([]EpochMeta, error) {
	var out []EpochMeta
	if !from.Before(to) {
		return nil, emptyRange(camera)
	}
	err := s.scan(bucketEpochs, camera, from.Add(-MaxEpochDuration), to, func(e entry) bool {
		if e.end.After(from) {
			out = append(out, EpochMeta{Camera: camera, Start: e.start, End: e.end, Size: e.size, SHA256: e.sha})
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("store: epochs of %s %s…%s: %w", camera, formatTime(from), formatTime(to), err)
	}
	return out, nil
}

// emptyRange is the answer to a query of an empty range: nothing, or the
// camera id's error.
func emptyRange(camera string) error {
	if err := checkCamera(camera); err != nil {
		return fmt.Errorf("store: %w: %v", ErrInvalid, err)
	}
	return nil
}

// scan calls fn, in start order, for camera's entries under top that
// start in [from, to), until fn returns false.
func (s *Store) scan(top []byte, camera string, from, to time.Time, fn func(entry) bool) error {
	if err := checkCamera(camera); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	end := clampKey(to)
	return s.db.View(func(tx *bolt.Tx) error {
		b := cameraBucket(tx, top, camera)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(clampKey(from)); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
			e, err := decodeEntry(v)
			if err != nil {
				return fmt.Errorf("%w: index: %v", ErrCorrupt, err)
			}
			if !fn(e) {
				return nil
			}
		}
		return nil
	})
}

// ReadSegment returns the ciphertext of the stored segment with meta's
// camera and start, after checking it against the SHA-256 recorded when it
// was stored (ErrCorrupt if it differs). A non-zero meta.SHA256 must be the
// stored one.
func (s *Store) ReadSegment(meta SegmentMeta) ([]byte, error) {
	b, err := s.read(bucketSegments, meta.Camera, meta.Start, meta.SHA256)
	if err != nil {
		return nil, fmt.Errorf("store: read segment %s %s: %w", meta.Camera, formatTime(meta.Start), err)
	}
	return b, nil
}

// Epoch returns camera's epoch record that starts at start, checked
// against its SHA-256.
func (s *Store) Epoch(camera string, start time.Time) ([]byte, error) {
	b, err := s.read(bucketEpochs, camera, start, [32]byte{})
	if err != nil {
		return nil, fmt.Errorf("store: read epoch record %s %s: %w", camera, formatTime(start), err)
	}
	return b, nil
}

func (s *Store) read(top []byte, camera string, start time.Time, want [32]byte) ([]byte, error) {
	esc, err := escapeCamera(camera)
	if err == nil {
		err = checkTime("start", start)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var e entry
	var ok bool
	err = s.db.View(func(tx *bolt.Tx) (err error) {
		e, ok, err = lookup(tx, top, camera, start)
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	case !ok:
		return nil, ErrNotFound
	case want != [32]byte{} && want != e.sha:
		return nil, fmt.Errorf("%w: a segment with another sha256 is stored there", ErrNotFound)
	}
	if s.blobs != nil {
		return s.readBlob(e.rel(esc), e)
	}
	return readChecked(filepath.Join(s.dir, e.rel(esc)), e)
}

// readChecked reads a stored file (never through a symlink) and checks
// its size and hash against e.
func readChecked(path string, e entry) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: file %s is gone (removed by retention?)", ErrNotFound, filepath.Base(path))
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != e.size {
		return nil, fmt.Errorf("%w: %s is %d bytes (%v), the index says %d", ErrCorrupt, filepath.Base(path), fi.Size(), fi.Mode().Type(), e.size)
	}
	b := make([]byte, e.size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Base(path), err)
	}
	if sha256.Sum256(b) != e.sha {
		return nil, fmt.Errorf("%w: %s does not match its sha256", ErrCorrupt, filepath.Base(path))
	}
	return b, nil
}

// Cameras lists the cameras that have segments or epoch records, sorted.
func (s *Store) Cameras() ([]string, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, top := range [][]byte{bucketSegments, bucketEpochs} {
			err := tx.Bucket(top).ForEachBucket(func(k []byte) error {
				if k1, _ := tx.Bucket(top).Bucket(k).Cursor().First(); k1 != nil {
					out = append(out, string(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: cameras: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Stats summarizes camera's stored segments and epoch records.
func (s *Store) Stats(camera string) (Stats, error) {
	var st Stats
	all := func(e entry) bool {
		st.Segments++
		st.Bytes += e.size
		if st.Oldest.IsZero() {
			st.Oldest = e.start
		}
		if e.end.After(st.Newest) {
			st.Newest = e.end
		}
		return true
	}
	err := s.scan(bucketSegments, camera, minTime, maxTime, all)
	if err == nil {
		err = s.scan(bucketEpochs, camera, minTime, maxTime, func(entry) bool { st.Epochs++; return true })
	}
	if err != nil {
		return Stats{}, fmt.Errorf("store: stats of %s: %w", camera, err)
	}
	return st, nil
}

func (e entry) segment(camera string) SegmentMeta {
	return SegmentMeta{Camera: camera, Start: e.start, End: e.end, EpochStart: e.epoch, Size: e.size, SHA256: e.sha}
}

// rel is the path of e's file relative to the root.
func (e entry) rel(escCam string) string {
	if e.kind == kindEpoch {
		return epochRel(escCam, epochName{e.start, e.end, e.sha})
	}
	return segmentRel(escCam, segName{e.start, e.end, e.epoch, e.sha})
}

// Newest returns camera's newest segment and newest epoch record (ok false
// for each that is missing): a replica's cursor, since a camera's segments
// and epochs are stored in time order.
func (s *Store) Newest(camera string) (seg SegmentMeta, segOK bool, ep EpochMeta, epOK bool, err error) {
	if err := checkCamera(camera); err != nil {
		return seg, false, ep, false, fmt.Errorf("store: newest of %s: %w: %v", camera, ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return seg, false, ep, false, err
	}
	defer s.closeMu.RUnlock()
	err = s.db.View(func(tx *bolt.Tx) error {
		if b := cameraBucket(tx, bucketSegments, camera); b != nil {
			if _, v := b.Cursor().Last(); v != nil {
				e, err := decodeEntry(v)
				if err != nil {
					return fmt.Errorf("%w: index: %v", ErrCorrupt, err)
				}
				seg, segOK = e.segment(camera), true
			}
		}
		if b := cameraBucket(tx, bucketEpochs, camera); b != nil {
			if _, v := b.Cursor().Last(); v != nil {
				e, err := decodeEntry(v)
				if err != nil {
					return fmt.Errorf("%w: index: %v", ErrCorrupt, err)
				}
				ep, epOK = EpochMeta{Camera: camera, Start: e.start, End: e.end, Size: e.size, SHA256: e.sha}, true
			}
		}
		return nil
	})
	if err != nil {
		return SegmentMeta{}, false, EpochMeta{}, false, fmt.Errorf("store: newest of %s: %w", camera, err)
	}
	return seg, segOK, ep, epOK, nil
}
