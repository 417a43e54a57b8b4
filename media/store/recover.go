package store

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Recovery reports what Open repaired, for the node to log and audit.
// Paths are relative to the store's root.
type Recovery struct {
	RemovedTemp []string // temporary files of writes a crash interrupted; deleted
	Dropped     []string // index entries whose file was missing or had another size ("path: why")
	Reindexed   []string // complete files the index lacked (crash between rename and index); indexed again
	Damaged     []string // unindexed files whose bytes do not match the sha256 in their name; quarantined
	Unknown     []string // names the store does not make; left alone
	NoEpoch     []string // segments whose epoch record is not stored: nobody can decrypt them here
	// Missing: indexed objects a blob store (Options.Blobs) lacks or holds
	// with another size; kept in the index and alarmed (Health.Missing),
	// never dropped: the index is authoritative, and this is lost footage.
	Missing []string
}

// Empty reports whether Open found nothing to repair or report.
func (r Recovery) Empty() bool {
	return len(r.RemovedTemp)+len(r.Dropped)+len(r.Reindexed)+len(r.Damaged)+len(r.Unknown)+len(r.NoEpoch)+len(r.Missing) == 0
}

func (r Recovery) String() string {
	if r.Empty() {
		return "store recovery: nothing to repair"
	}
	out := fmt.Sprintf("store recovery: %d temporary files removed, %d index entries dropped, %d files re-indexed, %d damaged files quarantined, %d unknown files, %d segments without epoch record",
		len(r.RemovedTemp), len(r.Dropped), len(r.Reindexed), len(r.Damaged), len(r.Unknown), len(r.NoEpoch))
	if len(r.Missing) > 0 {
		out += fmt.Sprintf(", %d indexed objects MISSING from the blob store", len(r.Missing))
	}
	return out
}

// recover makes the index and the files agree again, camera by camera
// (package doc, Ordering and crash safety).
func (s *Store) recover() (Recovery, error) {
	var rec Recovery
	cams, err := s.recoveryCameras(&rec)
	if err != nil {
		return rec, err
	}
	for _, cam := range cams {
		if err := s.recoverCamera(cam, &rec); err != nil {
			return rec, fmt.Errorf("camera %s: %w", cam, err)
		}
	}
	return rec, nil
}

// recoveryCameras lists the cameras with a directory or an index bucket.
// It drops index buckets whose name is no camera id.
func (s *Store) recoveryCameras(rec *Recovery) ([]string, error) {
	set := map[string]bool{}
	for _, top := range []string{epochsDir, segmentsDir} {
		ents, err := os.ReadDir(filepath.Join(s.dir, top))
		if err != nil {
			return nil, err
		}
		for _, d := range ents {
			rel := filepath.Join(top, d.Name())
			if cam, err := unescapeCamera(d.Name()); err == nil && d.IsDir() {
				set[cam] = true
			} else {
				rec.Unknown = append(rec.Unknown, rel)
			}
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, top := range [][]byte{bucketEpochs, bucketSegments} {
			var bad [][]byte
			tx.Bucket(top).ForEachBucket(func(k []byte) error {
				if checkCamera(string(k)) == nil {
					set[string(k)] = true
				} else {
					bad = append(bad, k)
				}
				return nil
			})
			for _, k := range bad {
				rec.Dropped = append(rec.Dropped, fmt.Sprintf("index %s/%q: not a camera id", top, k))
				if err := tx.Bucket(top).DeleteBucket(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	return out, nil
}

// recoverCamera repairs one camera: epoch records first, so that the
// segments' check for their epoch sees the repaired epochs.
func (s *Store) recoverCamera(camera string, rec *Recovery) error {
	esc, err := escapeCamera(camera)
	if err != nil {
		return err
	}
	epochFiles, err := s.listFiles(filepath.Join(epochsDir, esc), false, rec)
	if err != nil {
		return err
	}
	segFiles, err := s.listFiles(filepath.Join(segmentsDir, esc), true, rec)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range []struct {
			top   []byte
			files map[string]int64
		}{{bucketEpochs, epochFiles}, {bucketSegments, segFiles}} {
			b, err := tx.Bucket(k.top).CreateBucketIfNotExists([]byte(camera))
			if err != nil {
				return err
			}
			if err := dropStale(b, esc, k.files, rec); err != nil {
				return err
			}
			if err := s.reindex(b, esc, k.top, k.files, rec); err != nil {
				return err
			}
		}
		return noteNoEpoch(tx, camera, esc, rec)
	})
}

// listFiles maps the store's files under rel (relative paths) to their
// sizes, deleting temporary files on the way. dated says that rel holds
// date directories, as a camera's segment directory does.
func (s *Store) listFiles(rel string, dated bool, rec *Recovery) (map[string]int64, error) {
	files := map[string]int64{}
	ents, err := os.ReadDir(filepath.Join(s.dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	for _, d := range ents {
		r := filepath.Join(rel, d.Name())
		switch {
		case dated && d.IsDir() && isDate(d.Name()):
			sub, err := s.listFiles(r, false, rec)
			if err != nil {
				return nil, err
			}
			if len(sub) == 0 {
				os.Remove(filepath.Join(s.dir, r)) // left empty by retention; fails if not empty
			}
			for k, v := range sub {
				files[k] = v
			}
		case !dated && d.Type().IsRegular() && isTemp(d.Name()):
			if err := os.Remove(filepath.Join(s.dir, r)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			rec.RemovedTemp = append(rec.RemovedTemp, r)
		case !dated && d.Type().IsRegular() && (strings.HasSuffix(r, segSuffix) || strings.HasSuffix(r, epochSuffix)):
			fi, err := d.Info()
			if err != nil {
				return nil, err
			}
			files[r] = fi.Size()
		default:
			rec.Unknown = append(rec.Unknown, r)
		}
	}
	return files, nil
}

func isDate(s string) bool {
	t, err := time.Parse(dateLayout, s)
	return err == nil && t.Format(dateLayout) == s
}

// dropStale deletes the entries of b whose file is missing from files or
// has another size, and removes the others from files, leaving there the
// files the index lacks.
func dropStale(b *bolt.Bucket, esc string, files map[string]int64, rec *Recovery) error {
	var stale [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeEntry(v)
		if err == nil && string(k) != string(timeKey(e.start)) {
			err = errors.New("key is not the entry's start")
		}
		if err != nil {
			stale = append(stale, k)
			rec.Dropped = append(rec.Dropped, fmt.Sprintf("index entry %x: %v", k, err))
			continue
		}
		rel := e.rel(esc)
		size, ok := files[rel]
		switch {
		case !ok:
			stale = append(stale, k)
			rec.Dropped = append(rec.Dropped, rel+": file missing")
		case size != e.size:
			stale = append(stale, k)
			rec.Dropped = append(rec.Dropped, fmt.Sprintf("%s: file has %d bytes, index %d", rel, size, e.size))
		default:
			delete(files, rel)
		}
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// reindex adds an entry for each file left in files: one whose name parses
// and whose bytes match the sha256 in the name. It moves files whose bytes
// do not to the damaged directory (quarantine).
func (s *Store) reindex(b *bolt.Bucket, esc string, top []byte, files map[string]int64, rec *Recovery) error {
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		size := files[rel]
		e, err := entryFromName(rel, top)
		if err == nil && e.rel(esc) != rel {
			err = errors.New("not in its date directory")
		}
		if err != nil {
			rec.Unknown = append(rec.Unknown, rel)
			continue
		}
		if b.Get(timeKey(e.start)) != nil {
			rec.Unknown = append(rec.Unknown, rel+": another file is indexed at its start")
			continue
		}
		e.size = size
		path := filepath.Join(s.dir, rel)
		if size == 0 || size > MaxSegmentBytes {
			err = fmt.Errorf("%d bytes", size)
		} else if _, err = readChecked(path, e); errors.Is(err, ErrCorrupt) {
			err = errors.New("contents do not match the sha256 in its name")
		}
		if err != nil {
			if qErr := s.quarantine(esc, path); qErr != nil {
				return qErr
			}
			rec.Damaged = append(rec.Damaged, fmt.Sprintf("%s: %v", rel, err))
			continue
		}
		if err := b.Put(timeKey(e.start), e.encode()); err != nil {
			return err
		}
		rec.Reindexed = append(rec.Reindexed, rel)
	}
	return nil
}

func entryFromName(rel string, top []byte) (entry, error) {
	name := filepath.Base(rel)
	if string(top) == string(bucketEpochs) {
		n, err := parseEpochName(name)
		return entry{kind: kindEpoch, start: n.Start, end: n.End, epoch: n.Start, sha: n.SHA256}, err
	}
	n, err := parseSegmentName(name)
	return entry{kind: kindSegment, start: n.Start, end: n.End, epoch: n.Epoch, sha: n.SHA256}, err
}

// noteNoEpoch reports camera's segments whose epoch record is missing.
func noteNoEpoch(tx *bolt.Tx, camera, esc string, rec *Recovery) error {
	eps := cameraBucket(tx, bucketEpochs, camera)
	return cameraBucket(tx, bucketSegments, camera).ForEach(func(k, v []byte) error {
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		if eps.Get(timeKey(e.epoch)) == nil {
			rec.NoEpoch = append(rec.NoEpoch, e.rel(esc))
		}
		return nil
	})
}

// quarantine moves a damaged file to DIR/damaged/<camera>/: out of the
// index and of every read, kept for inspection (it is ciphertext, and
// crypto-shredding makes it unreadable once its epoch passes retention),
// and removed by DeleteBefore like the footage it was.
func (s *Store) quarantine(esc, path string) error {
	rel := filepath.Join(damagedDir, esc)
	if err := s.ensureDir(rel); err != nil {
		return err
	}
	dst := filepath.Join(s.dir, rel, filepath.Base(path))
	if err := os.Rename(path, dst); err != nil {
		return err
	}
	return errors.Join(syncDir(filepath.Dir(path)), syncDir(filepath.Dir(dst)))
}
