package audit

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// Two flock(2) locks guard an audit directory. lockName is held exclusively
// by the one Journal that has the directory open, for as long as it is open.
// writeLockName is held exclusively by that Journal only while it changes
// files (an append, a prune, Open's repairs), and shared by Verify while it
// reads, so Verify sees a consistent directory even beside a running node.

// lockDir takes the directory for a Journal: ErrLocked if another has it.
func lockDir(adir string) (owner, write *os.File, err error) {
	owner, err = openLockFile(adir, lockName)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(owner.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, ErrLocked
		}
		return nil, nil, err
	}
	write, err = openLockFile(adir, writeLockName)
	if err != nil {
		owner.Close()
		return nil, nil, err
	}
	return owner, write, nil
}

func openLockFile(adir, name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(adir, name), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
}

// flock waits for a lock on f (LOCK_EX or LOCK_SH) and returns its release.
func flock(f *os.File, how int) (unlock func(), err error) {
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
}

// readLock takes writeLockName shared, if the directory has one (a journal
// that was never opened by this package has no writer to wait for).
func readLock(adir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(adir, writeLockName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	release, err := flock(f, syscall.LOCK_SH)
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { release(); f.Close() }, nil
}
