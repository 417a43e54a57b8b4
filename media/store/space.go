package store

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Health is the store's space alarm.
type Health struct {
	DiskFull bool      // a write was refused for lack of space, and none has succeeded since
	Since    time.Time // when DiskFull was raised
	Reason   string    // the refusal, as an operator should read it
	Free     int64     // bytes available to the store now; -1 if unknown
	MinFree  int64     // the threshold in force; 0 if the check is off
}

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
	return h
}

// noteWrite records the outcome of a write for Health: a disk-full
// refusal raises the alarm, a success clears it.
func (s *Store) noteWrite(err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	switch {
	case err == nil:
		s.alarm = Health{}
	case errors.Is(err, ErrDiskFull):
		if !s.alarm.DiskFull {
			s.alarm.Since = s.now()
		}
		s.alarm.DiskFull = true
		s.alarm.Reason = err.Error()
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
