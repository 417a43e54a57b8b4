package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Deleted reports what DeleteBefore removed, for the audit journal.
type Deleted struct {
	Camera     string
	Cutoff     time.Time
	Segments   int
	Bytes      int64     // ciphertext bytes of the segments removed
	From, To   time.Time // earliest start and latest end of the segments removed; zero if none
	Epochs     int       // epoch records removed
	EpochsFrom time.Time // earliest start of the epoch records removed; zero if none
	EpochsTo   time.Time // latest end of the epoch records removed
	Damaged    int       // quarantined damaged files removed (Recovery.Damaged)
	Held       int       // segments past the cutoff kept because they are held (DeleteBeforeExcept)
}

// DeleteBefore removes camera's segments that end before cutoff, then its
// epoch records that end before cutoff and that no remaining segment
// references. It removes files first and index entries after (package
// doc), so a crash in between leaves entries that Open drops, never
// footage that comes back. Running it again with the same cutoff removes
// nothing more. On an error it reports what it did remove.
func (s *Store) DeleteBefore(camera string, cutoff time.Time) (Deleted, error) {
	return s.DeleteBeforeExcept(camera, cutoff, nil)
}

// DeleteBeforeExcept is DeleteBefore that keeps the segments for which
// held returns true (an evidence hold keeps footage past retention), and
// with them the epoch records they use. Deleted.Held counts the segments
// it kept. A nil held holds nothing. held runs while the camera's writers
// wait, so it must not write to this store.
func (s *Store) DeleteBeforeExcept(camera string, cutoff time.Time, held func(SegmentMeta) bool) (Deleted, error) {
	d := Deleted{Camera: camera, Cutoff: cutoff.UTC()}
	err := s.deleteBefore(camera, cutoff.UTC(), held, &d)
	if err != nil {
		err = fmt.Errorf("store: delete %s before %s: %w", camera, formatTime(cutoff), err)
	}
	return d, err
}

func (s *Store) deleteBefore(camera string, cutoff time.Time, held func(SegmentMeta) bool, d *Deleted) error {
	esc, err := escapeCamera(camera)
	if err == nil {
		err = checkTime("cutoff", cutoff)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	defer s.lockCamera(camera)()

	var segs []entry
	err = s.db.View(func(tx *bolt.Tx) error {
		return eachBefore(tx, bucketSegments, camera, cutoff, func(e entry) {
			if e.end.Before(cutoff) {
				segs = append(segs, e)
			}
		})
	})
	if err != nil {
		return err
	}
	// The predicate runs outside the index transaction: it is the
	// caller's code, and may read the store.
	segs = slices.DeleteFunc(segs, func(e entry) bool {
		if held != nil && held(e.segment(camera)) {
			d.Held++
			return true
		}
		return false
	})
	gone, err := s.removeFiles(esc, segs)
	for _, e := range gone {
		d.Segments++
		d.Bytes += e.size
		if d.From.IsZero() || e.start.Before(d.From) {
			d.From = e.start
		}
		if e.end.After(d.To) {
			d.To = e.end
		}
	}
	if ierr := s.unindex(bucketSegments, camera, gone); ierr != nil || err != nil {
		return errors.Join(err, ierr)
	}

	// Epoch records only after the segments are gone from the index: a
	// segment must never outlive the record that makes it decryptable.
	var eps []entry
	err = s.db.View(func(tx *bolt.Tx) error {
		used := map[int64]bool{}
		// A segment starts inside its epoch, so only segments that start
		// before cutoff can reference an epoch that ends before it.
		err := eachBefore(tx, bucketSegments, camera, cutoff, func(e entry) { used[e.epoch.UnixNano()] = true })
		if err != nil {
			return err
		}
		return eachBefore(tx, bucketEpochs, camera, cutoff, func(e entry) {
			if e.end.Before(cutoff) && !used[e.start.UnixNano()] {
				eps = append(eps, e)
			}
		})
	})
	if err != nil {
		return err
	}
	gone, err = s.removeFiles(esc, eps)
	for _, e := range gone {
		d.Epochs++
		if d.EpochsFrom.IsZero() {
			d.EpochsFrom = e.start
		}
		if e.end.After(d.EpochsTo) {
			d.EpochsTo = e.end
		}
	}
	if err := errors.Join(err, s.unindex(bucketEpochs, camera, gone)); err != nil {
		return err
	}
	d.Damaged, err = s.purgeDamaged(esc, func(e entry) bool {
		return e.end.Before(cutoff) && (e.kind != kindSegment || held == nil || !held(e.segment(camera)))
	})
	return err
}

// purgeDamaged removes camera's quarantined files (Recovery.Damaged) for
// whose entry (as parsed from the name; size unknown) del returns true,
// as retention or erasure would have removed them.
func (s *Store) purgeDamaged(esc string, del func(entry) bool) (int, error) {
	if s.blobs != nil {
		return 0, nil // a blob store's damaged objects are deleted at recovery
	}
	dir := filepath.Join(s.dir, damagedDir, esc)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, de := range ents {
		e, err := entryFromName(de.Name(), bucketSegments)
		if err != nil {
			e, err = entryFromName(de.Name(), bucketEpochs)
		}
		if err != nil || !del(e) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	if n > 0 {
		return n, syncDir(dir)
	}
	return 0, nil
}

// eachBefore calls fn for camera's entries under top that start before
// cutoff, in order.
func eachBefore(tx *bolt.Tx, top []byte, camera string, cutoff time.Time, fn func(entry)) error {
	b := cameraBucket(tx, top, camera)
	if b == nil {
		return nil
	}
	end := timeKey(cutoff)
	c := b.Cursor()
	for k, v := c.First(); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("%w: index: %v", ErrCorrupt, err)
		}
		fn(e)
	}
	return nil
}

// removeFiles deletes the files of es (a file already gone counts as
// removed), makes the removals durable, and removes directories they left
// empty. It returns the entries whose files are gone.
func (s *Store) removeFiles(esc string, es []entry) ([]entry, error) {
	if s.blobs != nil {
		return s.removeBlobs(esc, es)
	}
	var gone []entry
	dirs := map[string]bool{}
	var err error
	for _, e := range es {
		path := filepath.Join(s.dir, e.rel(esc))
		if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = rmErr
			break
		}
		gone = append(gone, e)
		dirs[filepath.Dir(path)] = true
		if err = s.at(pointFileRemoved); err != nil {
			return nil, err
		}
	}
	for dir := range dirs {
		if serr := syncDir(dir); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
			err = errors.Join(err, serr)
		}
		// A date directory left empty goes too; Remove fails (harmlessly)
		// if it is not empty.
		if filepath.Dir(filepath.Dir(dir)) == filepath.Join(s.dir, segmentsDir) && os.Remove(dir) == nil {
			syncDir(filepath.Dir(dir))
		}
	}
	if herr := s.at(pointFilesRemoved); herr != nil {
		return nil, herr
	}
	return gone, err
}

// unindex deletes es's entries from camera's bucket under top.
func (s *Store) unindex(top []byte, camera string, es []entry) error {
	if len(es) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := cameraBucket(tx, top, camera)
		if b == nil {
			return nil
		}
		for _, e := range es {
			if err := b.Delete(timeKey(e.start)); err != nil {
				return err
			}
		}
		return s.unmarkBlobs(tx, camera, es)
	})
	if err != nil {
		return fmt.Errorf("index: %w (Open will drop the entries of the removed files)", diskFull(err))
	}
	return nil
}
