package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Health is the store's space alarm, and its blob store's (Options.Blobs).
type Health struct {
	DiskFull bool      // a write was refused for lack of space (or a full or over-quota blob store), and none has succeeded since
	Since    time.Time // when DiskFull was raised
	Reason   string    // the refusal, as an operator should read it
	Free     int64     // bytes available to the store now; -1 if unknown
	MinFree  int64     // the threshold in force; 0 if the check is off

	// Storage names the blob store ("s3://bucket/prefix"); "" for files.
	Storage string `json:",omitempty"`
	// Unavailable: the blob store could not be reached, refused the
	// credentials or lacks its bucket, and no write has succeeded since.
	Unavailable       bool      `json:",omitempty"`
	UnavailableSince  time.Time `json:",omitzero"`
	UnavailableReason string    `json:",omitempty"`
	// Corrupt counts reads refused since Open because the bytes did not
	// match the index (a changed or missing object); CorruptLast is the
	// last refusal.
	Corrupt     uint64 `json:",omitempty"`
	CorruptLast string `json:",omitempty"`
	// Missing lists (the first 20 of) the indexed objects the blob store
	// lacks, found at recovery or on a read: footage lost from the bucket.
	Missing []string `json:",omitempty"`
}

// Alarm says what is wrong, or "" when nothing is.
func (h Health) Alarm() string {
	var out []string
	if h.DiskFull {
		out = append(out, "storage full: "+h.Reason)
	}
	if h.Unavailable {
		out = append(out, "storage unavailable: "+h.UnavailableReason)
	}
	if h.Corrupt > 0 {
		out = append(out, fmt.Sprintf("%d reads refused for integrity: %s", h.Corrupt, h.CorruptLast))
	}
	if len(h.Missing) > 0 {
		out = append(out, fmt.Sprintf("indexed objects missing from %s: %s", h.Storage, strings.Join(h.Missing, "; ")))
	}
	return strings.Join(out, "; ")
}

const maxMissing = 20

// Health reports the alarm state and the free space now.
func (s *Store) Health() Health {
	s.healthMu.Lock()
	h := s.alarm
	s.healthMu.Unlock()
	h.Free = -1
	if f, err := freeBytes(s.dir); err == nil {
		h.Free = f
	}
	h.MinFree = max(s.minFree, 0)
	if s.blobs != nil {
		h.Storage = s.blobs.String()
	}
	h.Missing = slices.Clone(h.Missing)
	return h
}

// noteWrite records the outcome of a write for Health: a disk-full
// refusal raises the alarm, a success clears it.
func (s *Store) noteWrite(err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	switch {
	case err == nil:
		s.alarm.DiskFull, s.alarm.Since, s.alarm.Reason = false, time.Time{}, ""
		s.alarm.Unavailable, s.alarm.UnavailableSince, s.alarm.UnavailableReason = false, time.Time{}, ""
	case errors.Is(err, ErrUnavailable):
		if !s.alarm.Unavailable {
			s.alarm.UnavailableSince = s.now()
		}
		s.alarm.Unavailable = true
		s.alarm.UnavailableReason = err.Error()
	case errors.Is(err, ErrDiskFull):
		if !s.alarm.DiskFull {
			s.alarm.Since = s.now()
		}
		s.alarm.DiskFull = true
		s.alarm.Reason = err.Error()
	}
}

// noteCorrupt counts a read refused for integrity.
func (s *Store) noteCorrupt(err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.alarm.Corrupt++
	s.alarm.CorruptLast = err.Error()
}

// noteMissing records indexed objects the blob store lacks.
func (s *Store) noteMissing(keys []string) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	for _, k := range keys {
		if len(s.alarm.Missing) < maxMissing && !slices.Contains(s.alarm.Missing, k) {
			s.alarm.Missing = append(s.alarm.Missing, k)
		}
	}
}

// checkSpace refuses a write of need bytes that would leave less than
// MinFree, so that the file system fills up (if at all) in our file
// writes, which clean up, rather than inside a bbolt commit.
func (s *Store) checkSpace(need int64) error {
	if s.minFree <= 0 {
		return nil
	}
	free, err := freeBytes(s.dir)
	if err != nil {
		return fmt.Errorf("statfs %s: %w", s.dir, err)
	}
	if free-need < s.minFree {
		return fmt.Errorf("%w: %d bytes free on %s, writing %d would leave less than the %d kept free; free space or shorten retention",
			ErrDiskFull, free, s.dir, need, s.minFree)
	}
	return nil
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// diskFull wraps ENOSPC and EDQUOT in ErrDiskFull and returns other errors
// as they are.
func diskFull(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (%w); free space or shorten retention", ErrDiskFull, err)
	}
	return err
}
