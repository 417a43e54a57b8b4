package store

// The store's files kept elsewhere than its own disk (Options.Blobs): an
// S3-compatible bucket for a datacenter's replicas.
//
// The index stays local (DIR/index.db) and is authoritative: it holds each
// object's size and SHA-256, so what the blob store returns is checked on
// every read exactly as a file is, and the blob store is trusted with
// nothing but keeping bytes. Objects are named by the files' relative paths
// ("segments/<camera>/<date>/<name>.seg", "epochs/<camera>/<name>.epoch"),
// so a name still carries its whole index entry but the size and a restart
// can re-index what a crash left unindexed.
//
// What changes beside files:
//   - Put: the object is uploaded (one PUT, complete or absent: S3 has no
//     partial objects, so no temporary names), then indexed. An object that
//     is already there with the same bytes is not uploaded again.
//   - Deleting: the keys to delete are first written to the index's
//     pending-deletion bucket, then the objects are deleted, then the index
//     entries and the pending marks. A crash in between is finished at the
//     next start, so deleted footage never comes back and an indexed
//     object that is missing for any other reason is known to be a loss.
//   - Recovery (the first write after Open, and Open itself when the blob
//     store answers): pending deletions are finished; a LIST of the bucket
//     re-indexes objects that the index lacks and whose bytes match the
//     SHA-256 in their name (a crash between upload and index), and deletes
//     those whose bytes do not (nothing acknowledged them; the puller
//     fetches them again); an indexed object that is missing, or has
//     another size, stays indexed and is reported (Recovery.Missing, and
//     Health) — never silently dropped. Until recovery has run, writes
//     are refused with ErrUnavailable, so nothing is acknowledged on top
//     of an index that has not been reconciled.
//   - Health: a blob store that cannot be reached, refuses the
//     credentials or lacks the bucket raises Unavailable (cleared by the
//     next successful write); one that is full or over quota raises
//     DiskFull, as a full disk does; a read whose bytes do not match the
//     index counts in Corrupt.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Blobs keeps the bytes of a store's segments and epoch records when they
// are not on the store's own disk. Keys are slash-separated relative paths
// made by the store. Implementations must be safe for concurrent use.
type Blobs interface {
	// Put stores data under key, durably when it returns. If key already
	// holds these bytes it must succeed without uploading them again.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the bytes under key, at most limit of them (more is an
	// error); an error wrapping ErrNotFound if there is no such key.
	Get(ctx context.Context, key string, limit int64) ([]byte, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn with every key under prefix and its size.
	List(ctx context.Context, prefix string, fn func(key string, size int64) error) error
	// String names the location for status and errors, without secrets
	// (e.g. "s3://bucket/prefix").
	String() string
}

// Prober is a Blobs that can tell cheaply whether it answers (its bucket
// exists and takes the credentials), without moving footage.
type Prober interface {
	Probe(ctx context.Context) error
}

// Probe asks the blob store whether it answers now, so that a caller can
// wait for it before fetching footage it could not store; nil for files
// or a blob store that cannot tell (the next write tells). A failure keeps
// the Unavailable alarm; only a successful write clears it.
func (s *Store) Probe() error {
	p, ok := s.blobs.(Prober)
	if !ok {
		return nil
	}
	ctx, cancel := s.blobCtx()
	defer cancel()
	err := p.Probe(ctx)
	if err != nil {
		s.noteWrite(err)
	}
	return err
}

// ErrUnavailable: the blob store could not be reached, refused the
// credentials, or lacks its bucket. Nothing was stored; the write can be
// repeated once it answers again.
var ErrUnavailable = errors.New("blob storage unavailable")

var (
	bucketMeta     = []byte("meta")          // "storage" → where the files live
	bucketDeleting = []byte("blob-deleting") // object key → nothing: deletions under way
	metaStorage    = []byte("storage")
)

// blobTimeout bounds one blob operation (the client's own retries
// included), so a hung blob store holds a camera's writer no longer.
const blobTimeout = 2 * time.Minute

func (s *Store) blobCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.blobTimeout)
}

// blobKey is the object key of the file at rel.
func blobKey(rel string) string { return strings.ReplaceAll(rel, "\\", "/") }

// checkStorage makes sure the index was made for the storage it is opened
// with: an index of files on disk opened over a bucket (or the other way
// round, or another bucket) would report every object missing.
func (s *Store) checkStorage() error {
	want := "disk"
	if s.blobs != nil {
		want = s.blobs.String()
	}
	update := s.db.Update
	if s.blobs == nil {
		update = s.db.View // files: read only, as Open always was
	}
	return update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			if s.blobs == nil {
				return nil // the disk's index as it always was
			}
			var err error
			if b, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
		}
		have := string(b.Get(metaStorage))
		if have == "" {
			have = "disk"
			if s.blobs != nil && indexEmpty(tx) {
				return b.Put(metaStorage, []byte(want))
			}
		}
		if have != want {
			return fmt.Errorf("%w: this index keeps its files on %s, not on %s; open it with the storage it was made with, or start the replicas in a new directory", ErrInvalid, have, want)
		}
		return nil
	})
}

func indexEmpty(tx *bolt.Tx) bool {
	for _, top := range [][]byte{bucketSegments, bucketEpochs} {
		empty := true
		tx.Bucket(top).ForEachBucket(func(k []byte) error {
			if k1, _ := tx.Bucket(top).Bucket(k).Cursor().First(); k1 != nil {
				empty = false
			}
			return nil
		})
		if !empty {
			return false
		}
	}
	return true
}

// blobReady runs the blob store's recovery once, before the first write
// (Open tries it too; a blob store that did not answer then is tried
// again here), so that nothing is acknowledged on an index that has not
// been reconciled with the bucket.
func (s *Store) blobReady() error {
	if s.blobs == nil {
		return nil
	}
	s.blobRecMu.Lock()
	defer s.blobRecMu.Unlock()
	if s.blobRecovered {
		return nil
	}
	rec, err := s.recoverBlobs()
	if err != nil {
		return fmt.Errorf("reconciling the index with %s: %w", s.blobs, err)
	}
	s.blobRecovered = true
	s.recMu.Lock()
	s.recovery = rec
	s.recMu.Unlock()
	s.noteMissing(rec.Missing)
	return nil
}

// recoverBlobs finishes deletions a crash interrupted, then re-indexes
// the objects the index lacks and reports the indexed ones that are
// missing (see the file comment).
func (s *Store) recoverBlobs() (Recovery, error) {
	var rec Recovery
	ctx, cancel := s.blobCtx()
	defer cancel()
	var pending []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeleting).ForEach(func(k, _ []byte) error {
			pending = append(pending, string(k))
			return nil
		})
	})
	if err != nil {
		return rec, err
	}
	for _, key := range pending {
		if err := s.blobs.Delete(ctx, key); err != nil {
			return rec, err
		}
	}
	objects := map[string]int64{}
	for _, top := range []string{epochsDir, segmentsDir} {
		err := s.blobs.List(ctx, top+"/", func(key string, size int64) error {
			objects[key] = size
			return nil
		})
		if err != nil {
			return rec, err
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, key := range pending {
			if e, cam, err := entryFromKey(key); err == nil {
				if b := cameraBucket(tx, topOf(e), cam); b != nil {
					if old, ok, _ := lookup(tx, topOf(e), cam, e.start); ok && old.sha == e.sha {
						if err := b.Delete(timeKey(e.start)); err != nil {
							return err
						}
					}
				}
			}
			if err := tx.Bucket(bucketDeleting).Delete([]byte(key)); err != nil {
				return err
			}
			delete(objects, key)
		}
		return nil
	})
	if err != nil {
		return rec, err
	}
	// Indexed objects: present with their size, or reported.
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, top := range [][]byte{bucketEpochs, bucketSegments} {
			err := tx.Bucket(top).ForEachBucket(func(cam []byte) error {
				esc, err := escapeCamera(string(cam))
				if err != nil {
					return nil
				}
				return tx.Bucket(top).Bucket(cam).ForEach(func(_, v []byte) error {
					e, err := decodeEntry(v)
					if err != nil {
						return nil
					}
					key := blobKey(e.rel(esc))
					size, ok := objects[key]
					switch {
					case !ok:
						rec.Missing = append(rec.Missing, key+": indexed, not in "+s.blobs.String())
					case size != e.size:
						rec.Missing = append(rec.Missing, fmt.Sprintf("%s: %d bytes in %s, the index says %d", key, size, s.blobs, e.size))
					}
					delete(objects, key)
					return nil
				})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return rec, err
	}
	// Objects the index lacks: epoch records first, so that segments find
	// their epoch.
	keys := slices.SortedFunc(maps.Keys(objects), func(a, b string) int {
		if ea, eb := strings.HasPrefix(a, epochsDir+"/"), strings.HasPrefix(b, epochsDir+"/"); ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, key := range keys {
		if err := s.reindexBlob(ctx, key, objects[key], &rec); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// reindexBlob indexes one object the index lacks if its bytes match its
// name, and deletes it if they do not.
func (s *Store) reindexBlob(ctx context.Context, key string, size int64, rec *Recovery) error {
	e, cam, err := entryFromKey(key)
	if err != nil {
		rec.Unknown = append(rec.Unknown, key)
		return nil
	}
	e.size = size
	var data []byte
	if size <= 0 || size > MaxSegmentBytes {
		err = fmt.Errorf("%d bytes", size)
	} else if data, err = s.blobs.Get(ctx, key, MaxSegmentBytes); err == nil {
		err = checkBytes(key, data, e)
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if err != nil {
		if derr := s.blobs.Delete(ctx, key); derr != nil {
			return derr
		}
		rec.Damaged = append(rec.Damaged, fmt.Sprintf("%s: %v; deleted (it was never acknowledged)", key, err))
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(topOf(e)).CreateBucketIfNotExists([]byte(cam))
		if err != nil {
			return err
		}
		if b.Get(timeKey(e.start)) != nil {
			rec.Unknown = append(rec.Unknown, key+": another object is indexed at its start")
			return nil
		}
		if e.kind == kindSegment && cameraBucket(tx, bucketEpochs, cam).Get(timeKey(e.epoch)) == nil {
			rec.NoEpoch = append(rec.NoEpoch, key)
		}
		rec.Reindexed = append(rec.Reindexed, key)
		return b.Put(timeKey(e.start), e.encode())
	})
}

// entryFromKey parses an object key the store made into its entry (size
// unknown) and camera.
func entryFromKey(key string) (entry, string, error) {
	parts := strings.Split(key, "/")
	var top []byte
	switch {
	case len(parts) == 3 && parts[0] == epochsDir:
		top = bucketEpochs
	case len(parts) == 4 && parts[0] == segmentsDir:
		top = bucketSegments
	default:
		return entry{}, "", fmt.Errorf("%q is no object key of the store", key)
	}
	cam, err := unescapeCamera(parts[1])
	if err != nil {
		return entry{}, "", err
	}
	e, err := entryFromName(parts[len(parts)-1], top)
	if err != nil {
		return entry{}, "", err
	}
	esc, _ := escapeCamera(cam)
	if blobKey(e.rel(esc)) != key {
		return entry{}, "", fmt.Errorf("%q is not where the store puts it", key)
	}
	return e, cam, nil
}

func topOf(e entry) []byte {
	if e.kind == kindEpoch {
		return bucketEpochs
	}
	return bucketSegments
}

// checkBytes checks data read back against its entry.
func checkBytes(name string, data []byte, e entry) error {
	if int64(len(data)) != e.size {
		return fmt.Errorf("%w: %s is %d bytes, the index says %d", ErrCorrupt, path.Base(name), len(data), e.size)
	}
	if sha256Sum(data) != e.sha {
		return fmt.Errorf("%w: %s does not match its sha256", ErrCorrupt, path.Base(name))
	}
	return nil
}

// putBlob uploads data under rel's key.
func (s *Store) putBlob(rel string, data []byte) error {
	ctx, cancel := s.blobCtx()
	defer cancel()
	return s.blobs.Put(ctx, blobKey(rel), data)
}

// readBlob reads e's object and checks it against the index.
func (s *Store) readBlob(rel string, e entry) ([]byte, error) {
	ctx, cancel := s.blobCtx()
	defer cancel()
	key := blobKey(rel)
	data, err := s.blobs.Get(ctx, key, MaxSegmentBytes)
	switch {
	case errors.Is(err, ErrNotFound) && s.deleting(key):
		// Retention or erasure took it after this read's index lookup.
		return nil, fmt.Errorf("%w: %s was just removed (retention or erasure)", ErrNotFound, key)
	case errors.Is(err, ErrNotFound):
		err = fmt.Errorf("%w: %s is indexed but missing from %s", ErrCorrupt, key, s.blobs)
		s.noteMissing([]string{key})
	case err == nil:
		err = checkBytes(key, data, e)
	}
	if errors.Is(err, ErrCorrupt) {
		s.noteCorrupt(err)
		return nil, err
	}
	if err != nil {
		s.noteWrite(err)
		return nil, err
	}
	return data, nil
}

// removeBlobs deletes the objects of es: marks first, so a crash part-way
// is finished by the next recovery rather than leaving indexed objects
// that look lost.
func (s *Store) removeBlobs(esc string, es []entry) ([]entry, error) {
	if len(es) == 0 {
		return nil, nil
	}
	// Not before the index is reconciled: recovery re-indexes objects, and
	// must not meet a deletion half-way.
	if err := s.blobReady(); err != nil {
		s.noteWrite(err)
		return nil, err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range es {
			if err := tx.Bucket(bucketDeleting).Put([]byte(blobKey(e.rel(esc))), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: %w", diskFull(err))
	}
	ctx, cancel := s.blobCtx()
	defer cancel()
	var gone []entry
	for _, e := range es {
		if err := s.blobs.Delete(ctx, blobKey(e.rel(esc))); err != nil {
			s.noteWrite(err)
			return gone, err
		}
		gone = append(gone, e)
		if err := s.at(pointFileRemoved); err != nil {
			return nil, err
		}
	}
	if err := s.at(pointFilesRemoved); err != nil {
		return nil, err
	}
	return gone, nil
}

// deleting reports whether key is being deleted (its mark is set), or
// is already out of the index.
func (s *Store) deleting(key string) bool {
	marked := false
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDeleting); b != nil && b.Get([]byte(key)) != nil {
			marked = true
			return nil
		}
		e, cam, err := entryFromKey(key)
		if err == nil {
			_, ok, _ := lookup(tx, topOf(e), cam, e.start)
			marked = !ok
		}
		return nil
	})
	return marked
}

// unmarkBlobs clears, in the index transaction tx that removes their
// entries, the pending-deletion marks of es.
func (s *Store) unmarkBlobs(tx *bolt.Tx, camera string, es []entry) error {
	if s.blobs == nil {
		return nil
	}
	esc, err := escapeCamera(camera)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := tx.Bucket(bucketDeleting).Delete([]byte(blobKey(e.rel(esc)))); err != nil {
			return err
		}
	}
	return nil
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
