package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SegmentMeta describes a segment: one OpenPGP message of one camera's
// footage from Start to End.
type SegmentMeta struct {
	Camera     string    // the policy's camera id, "site/name"
	Start, End time.Time // the footage's span [Start, End); returned in UTC
	EpochStart time.Time // start of the epoch whose public key encrypted it
	Size       int64     // bytes of ciphertext; set by the store (Put checks a non-zero one)
	SHA256     [32]byte  // of the ciphertext; set by the store (Put checks a non-zero one)
}

// EpochMeta describes a stored epoch record.
type EpochMeta struct {
	Camera     string
	Start, End time.Time // the epoch's span [Start, End); returned in UTC
	Size       int64
	SHA256     [32]byte
}

// Put stores a segment durably (file and index) before it returns. The
// segment's epoch record must already be stored and cover seg.Start
// (ErrNoEpoch otherwise). Putting the same segment again is a no-op;
// different bytes or times under the same camera and start are
// ErrConflict. A segment that overlaps an erased range (AddTombstone) is
// ErrErased. It returns ErrDiskFull when space runs out, with nothing
// stored harmed.
func (s *Store) Put(seg SegmentMeta, ciphertext []byte) error {
	err := s.put(seg, ciphertext)
	if err != nil {
		err = fmt.Errorf("store: put segment %s %s: %w", seg.Camera, formatTime(seg.Start), err)
	}
	s.noteWrite(err)
	return err
}

func (s *Store) put(seg SegmentMeta, data []byte) error {
	e := entry{kind: kindSegment, start: seg.Start.UTC(), end: seg.End.UTC(), epoch: seg.EpochStart.UTC(),
		size: int64(len(data)), sha: sha256.Sum256(data)}
	esc, err := checkPut(seg.Camera, data, seg.Size, seg.SHA256, e.sha)
	if err == nil {
		err = checkSpan(e.start, e.end, e.epoch)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	defer s.lockCamera(seg.Camera)()

	var done bool
	err = s.db.View(func(tx *bolt.Tx) error {
		// Erased first: the answer to a replica re-sending erased footage
		// is final, whatever else is missing or stored.
		if err := checkNotErased(tx, seg.Camera, e.start, e.end); err != nil {
			return err
		}
		ep, ok, err := lookup(tx, bucketEpochs, seg.Camera, e.epoch)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: no epoch record %s stored; store the epoch record first", ErrNoEpoch, formatTime(e.epoch))
		}
		if !e.start.Before(ep.end) {
			return fmt.Errorf("%w: epoch %s ends at %s, before the segment starts", ErrNoEpoch, formatTime(ep.start), formatTime(ep.end))
		}
		old, ok, err := lookup(tx, bucketSegments, seg.Camera, e.start)
		if ok && err == nil {
			if !old.same(e) {
				return fmt.Errorf("%w: segment %s is already stored with other contents", ErrConflict, old.name())
			}
			done = true
		}
		return err
	})
	if err != nil || done {
		return err
	}
	return s.store(seg.Camera, segmentRel(esc, segName{e.start, e.end, e.epoch, e.sha}), e, data)
}

// PutEpoch stores an epoch record durably before it returns; segments of
// the epoch can be stored only after it. The same record again is a
// no-op; another record under the same start, or an epoch overlapping a
// stored one, is ErrConflict; one whose whole span was erased
// (AddTombstone) is ErrErased.
func (s *Store) PutEpoch(camera string, start, end time.Time, record []byte) error {
	err := s.putEpoch(camera, start, end, record)
	if err != nil {
		err = fmt.Errorf("store: put epoch record %s %s: %w", camera, formatTime(start), err)
	}
	s.noteWrite(err)
	return err
}

func (s *Store) putEpoch(camera string, start, end time.Time, record []byte) error {
	e := entry{kind: kindEpoch, start: start.UTC(), end: end.UTC(), epoch: start.UTC(),
		size: int64(len(record)), sha: sha256.Sum256(record)}
	esc, err := checkPut(camera, record, 0, [32]byte{}, e.sha)
	if err == nil {
		err = checkEpochSpan(e.start, e.end)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	defer s.lockCamera(camera)()

	var done bool
	err = s.db.View(func(tx *bolt.Tx) error {
		if err := checkEpochNotErased(tx, camera, e.start, e.end); err != nil {
			return err
		}
		old, ok, err := lookup(tx, bucketEpochs, camera, e.start)
		if err != nil {
			return err
		}
		if ok {
			if !old.same(e) {
				return fmt.Errorf("%w: epoch record %s is already stored with other contents", ErrConflict, old.name())
			}
			done = true
			return nil
		}
		// Epochs of a camera do not overlap: a segment names its epoch by
		// start, and retention reasons about epochs by their end.
		c := cameraBucket(tx, bucketEpochs, camera)
		if c == nil {
			return nil
		}
		cur := c.Cursor()
		k, v := cur.Seek(timeKey(e.start))
		if k != nil {
			if next, err := decodeEntry(v); err == nil && next.start.Before(e.end) {
				return fmt.Errorf("%w: overlaps epoch %s…%s", ErrConflict, formatTime(next.start), formatTime(next.end))
			}
			k, v = cur.Prev()
		} else {
			k, v = cur.Last()
		}
		if k != nil {
			if prev, err := decodeEntry(v); err == nil && prev.end.After(e.start) {
				return fmt.Errorf("%w: overlaps epoch %s…%s", ErrConflict, formatTime(prev.start), formatTime(prev.end))
			}
		}
		return nil
	})
	if err != nil || done {
		return err
	}
	return s.store(camera, epochRel(esc, epochName{e.start, e.end, e.sha}), e, record)
}

// checkPut checks what Put and PutEpoch share: the camera id, the size,
// and the caller's size and hash if given. It returns the escaped id.
func checkPut(camera string, data []byte, size int64, want, got [32]byte) (string, error) {
	esc, err := escapeCamera(camera)
	if err != nil {
		return "", err
	}
	switch {
	case len(data) == 0:
		return "", errors.New("empty")
	case len(data) > MaxSegmentBytes:
		return "", fmt.Errorf("%d bytes is over the %d-byte limit", len(data), MaxSegmentBytes)
	case size != 0 && size != int64(len(data)):
		return "", fmt.Errorf("meta says %d bytes, got %d", size, len(data))
	case want != [32]byte{} && want != got:
		return "", fmt.Errorf("meta's sha256 %x does not match the data's %x", want, got)
	}
	return esc, nil
}

// store writes data to rel and then indexes e under camera. If the index
// cannot be written it removes the file again, so that the running store's
// index and files agree.
func (s *Store) store(camera, rel string, e entry, data []byte) error {
	if s.blobs != nil {
		return s.storeBlob(camera, rel, e, data)
	}
	if err := s.checkSpace(int64(len(data))); err != nil {
		return err
	}
	if err := s.writeFile(rel, data); err != nil {
		return diskFull(err)
	}
	if err := s.at(pointBeforeIndex); err != nil {
		return err
	}
	bucket := bucketSegments
	if e.kind == kindEpoch {
		bucket = bucketEpochs
	}
	// Batch: concurrent Puts (one per camera) share one index commit and
	// its fsyncs instead of queueing for bbolt's single writer, which under
	// load held back the whole store (the capacity benchmark found it).
	// The function is idempotent, as Batch requires: it may run twice.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		c, err := tx.Bucket(bucket).CreateBucketIfNotExists([]byte(camera))
		if err != nil {
			return err
		}
		return c.Put(timeKey(e.start), e.encode())
	})
	if err != nil {
		path := filepath.Join(s.dir, rel)
		if rmErr := os.Remove(path); rmErr == nil {
			syncDir(filepath.Dir(path))
		}
		return fmt.Errorf("index: %w", diskFull(err))
	}
	return nil
}

// storeBlob is store for a blob store: upload (a no-op for an object
// already there with these bytes), then index. The local disk holds only
// the index, so only the index's space is checked.
func (s *Store) storeBlob(camera, rel string, e entry, data []byte) error {
	if err := s.blobReady(); err != nil {
		return err
	}
	if err := s.checkSpace(0); err != nil {
		return err
	}
	if err := s.putBlob(rel, data); err != nil {
		return err
	}
	if err := s.at(pointBeforeIndex); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		c, err := tx.Bucket(topOf(e)).CreateBucketIfNotExists([]byte(camera))
		if err != nil {
			return err
		}
		return c.Put(timeKey(e.start), e.encode())
	})
	if err != nil {
		// Left unindexed, the object is re-indexed (or deleted) by the
		// next start's recovery; the write is not acknowledged.
		return fmt.Errorf("index: %w", diskFull(err))
	}
	return nil
}

// writeFile writes data to root/rel: a temporary file in the same
// directory, fsync, rename, fsync of the directory. On failure it removes
// the temporary file, except at a simulated crash.
func (s *Store) writeFile(rel string, data []byte) (err error) {
	dir := filepath.Dir(rel)
	if err := s.ensureDir(dir); err != nil {
		return err
	}
	dir = filepath.Join(s.dir, dir)
	f, err := os.CreateTemp(dir, tmpPrefix+"put-*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp, crashed := f.Name(), false
	defer func() {
		if err != nil && !crashed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.at(pointTempWritten); err != nil {
		crashed = true
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, rel)); err != nil {
		return err
	}
	crashed = true // renamed: the temporary file is gone; what is left is the caller's
	if err := s.at(pointRenamed); err != nil {
		return err
	}
	return syncDir(dir)
}

// ensureDir makes root/rel and any missing parents, fsyncing the parent of
// each directory it makes: a file's directory entry is durable only if
// its directory's is.
func (s *Store) ensureDir(rel string) error {
	parent := s.dir
	for _, el := range strings.Split(rel, string(filepath.Separator)) {
		d := filepath.Join(parent, el)
		err := os.Mkdir(d, 0o700)
		if err == nil {
			if err := syncDir(parent); err != nil {
				return err
			}
		} else if !errors.Is(err, os.ErrExist) {
			return err
		}
		parent = d
	}
	return nil
}

// cameraBucket is camera's bucket under top, or nil.
func cameraBucket(tx *bolt.Tx, top []byte, camera string) *bolt.Bucket {
	return tx.Bucket(top).Bucket([]byte(camera))
}

// lookup reads the entry of camera at start under top.
func lookup(tx *bolt.Tx, top []byte, camera string, start time.Time) (entry, bool, error) {
	c := cameraBucket(tx, top, camera)
	if c == nil {
		return entry{}, false, nil
	}
	v := c.Get(timeKey(start))
	if v == nil {
		return entry{}, false, nil
	}
	e, err := decodeEntry(v)
	if err != nil {
		return entry{}, false, fmt.Errorf("index of %s at %s: %w", camera, formatTime(start), err)
	}
	return e, true, nil
}
