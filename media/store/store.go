package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Limits on what the store accepts.
const (
	// MaxSegmentDuration bounds a segment (DESIGN §8: about 4 s), so that
	// a range query knows how far before its start to look.
	MaxSegmentDuration = time.Hour
	// MaxEpochDuration bounds an epoch (DESIGN §7: 15 minutes by default).
	MaxEpochDuration = 24 * time.Hour
	// MaxSegmentBytes bounds a segment or epoch record file: reads hold one
	// in memory.
	MaxSegmentBytes = 256 << 20
	// DefaultMinFree is Options.MinFree's default.
	DefaultMinFree = 64 << 20
)

// Errors callers branch on with errors.Is.
var (
	// ErrDiskFull: the file system is full, or would have less than
	// Options.MinFree left. Nothing stored was harmed; free space (or let
	// retention run) and write again.
	ErrDiskFull = errors.New("disk full")
	// ErrNotFound: no such segment, epoch record or camera.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: a stored file's bytes no longer match the SHA-256 taken
	// when it was stored.
	ErrCorrupt = errors.New("stored file is corrupt")
	// ErrNoEpoch: Put was handed a segment whose epoch record is not
	// stored, or does not cover the segment's start.
	ErrNoEpoch = errors.New("epoch record missing")
	// ErrConflict: something different is already stored under the same
	// camera and start.
	ErrConflict = errors.New("conflicting entry")
	// ErrInvalid: a camera id, time range, size or hash the store refuses.
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store is closed")
)

// Options configure Open. The zero value is the production default.
type Options struct {
	// MinFree is the space, in bytes, that writes leave free on the file
	// system: a write that would leave less is refused with ErrDiskFull
	// before it starts. 0 means DefaultMinFree; negative turns the check
	// off (the file system's own ENOSPC is still handled).
	MinFree int64
	// Now is the clock for Health's timestamps; nil means time.Now.
	Now func() time.Time
	// Blobs, if set, keeps the segments' and epoch records' bytes instead
	// of files under the directory, which then holds only the index
	// (blobs.go). nil: files, as always.
	Blobs Blobs
	// BlobTimeout bounds one operation on Blobs; 0 means 2 minutes.
	BlobTimeout time.Duration
}

// Store is the segment and epoch store of one directory. Its methods are
// safe for concurrent use (package doc, Concurrency).
type Store struct {
	dir     string
	db      *bolt.DB
	minFree int64
	now     func() time.Time

	recMu    sync.Mutex
	recovery Recovery // guarded by recMu

	blobs         Blobs
	blobTimeout   time.Duration
	blobRecMu     sync.Mutex
	blobRecovered bool // guarded by blobRecMu: the blob store's recovery has run

	// hook, set only by tests, is called at each crashPoint; a non-nil
	// error stops the operation there as a crash would: no cleanup.
	hook func(point string) error

	closeMu sync.RWMutex // shared by every operation, exclusive in Close
	closed  bool         // guarded by closeMu

	camMu sync.Mutex
	cams  map[string]*sync.Mutex // guarded by camMu; one writer per camera

	healthMu sync.Mutex
	alarm    Health // guarded by healthMu: DiskFull, Since, Reason and the blob store's alarms
}

// Bucket names in the index.
var (
	bucketSegments = []byte("segments") // camera → start → entry
	bucketEpochs   = []byte("epochs")   // camera → start → entry
)

// Open opens (creating if needed) the store in dir, repairs what a crash
// left there (see Recovery) and returns it ready to write. It fails if
// another process has the store open.
func Open(dir string, opts Options) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, segmentsDir), filepath.Join(dir, epochsDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("store: open %s: %w", dir, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	// The index's file lock also makes this process the directory's only
	// writer, which is what lets recovery delete temporary files.
	db, err := bolt.Open(filepath.Join(dir, indexName), 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: another process has it open", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open index %s: %w", filepath.Join(dir, indexName), err)
	}
	// Batched index commits (see store) wait this long for company: short,
	// since a lone writer pays it on every segment.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		_, err1 := tx.CreateBucketIfNotExists(bucketSegments)
		_, err2 := tx.CreateBucketIfNotExists(bucketEpochs)
		_, err3 := tx.CreateBucketIfNotExists(bucketTombstones)
		var err4 error
		if opts.Blobs != nil {
			_, err4 = tx.CreateBucketIfNotExists(bucketDeleting)
		}
		return errors.Join(err1, err2, err3, err4)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open index %s: %w", filepath.Join(dir, indexName), diskFull(err))
	}
	s := &Store{dir: dir, db: db, minFree: opts.MinFree, now: opts.Now, cams: make(map[string]*sync.Mutex),
		blobs: opts.Blobs, blobTimeout: opts.BlobTimeout}
	if s.minFree == 0 {
		s.minFree = DefaultMinFree
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.blobTimeout <= 0 {
		s.blobTimeout = blobTimeout
	}
	if err := s.checkStorage(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if s.blobs != nil {
		// A blob store that does not answer now is reconciled before the
		// first write instead (blobReady): a datacenter starts, and its
		// replication waits for the bucket, with the alarm raised.
		if err := s.blobReady(); err != nil {
			s.noteWrite(err)
		}
		return s, nil
	}
	rec, err := s.recover()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: recovery: %w", dir, err)
	}
	s.recovery = rec
	return s, nil
}

// Recovery reports what Open repaired. With Options.Blobs it is what the
// blob store's recovery repaired, once it has run (see Ready).
func (s *Store) Recovery() Recovery {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return s.recovery
}

// Ready reports whether the store can write: always for files; with
// Options.Blobs once the index has been reconciled with the blob store,
// which it tries now if it has not yet.
func (s *Store) Ready() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	err := s.blobReady()
	if err != nil {
		s.noteWrite(err)
	}
	return err
}

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

// Close closes the index. Operations after Close return ErrClosed; Close
// waits for those in progress.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.dir, err)
	}
	return nil
}

// enter starts an operation; the caller must call s.closeMu.RUnlock.
func (s *Store) enter() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

// lockCamera serializes the writers of one camera and returns the unlock.
func (s *Store) lockCamera(camera string) func() {
	s.camMu.Lock()
	m := s.cams[camera]
	if m == nil {
		m = new(sync.Mutex)
		s.cams[camera] = m
	}
	s.camMu.Unlock()
	m.Lock()
	return m.Unlock
}

// Crash points, for the tests' hook.
const (
	pointTempWritten  = "temp-written"  // temp file written and fsynced
	pointRenamed      = "renamed"       // renamed to its final name, dir not yet synced
	pointBeforeIndex  = "before-index"  // dir synced, index not yet written
	pointFileRemoved  = "file-removed"  // retention: one file removed
	pointFilesRemoved = "files-removed" // retention: all files of a kind removed, index not yet
)

func (s *Store) at(point string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(point)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
