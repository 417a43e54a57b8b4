package audit

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ActionPrune is the action of the event Prune appends after removing
// entries.
const ActionPrune = "audit-prune"

// Prune removes the entries at the start of the journal whose time is
// before now minus the retention, and returns how many it removed (package
// doc, Pruning). A zero now means Options.Now(). After removing any, it
// appends an ActionPrune event. Entries that are due but lie at or after
// damage that Verify reports are kept, and the error (wrapping ErrDamaged)
// says so; removed still counts what went.
func (j *Journal) Prune(now time.Time) (removed int, err error) {
	if now.IsZero() {
		now = j.opts.Now()
	}
	actor := j.opts.Node
	if actor == "" {
		actor = "audit"
	}
	record, err := normalize(Event{Time: now, Actor: actor, Action: ActionPrune}, j.opts.Now, j.opts.Node)
	if err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0, fmt.Errorf("audit: prune: %w", ErrClosed)
	}
	retention := j.opts.Retention // SetRetention changes it under j.mu
	cutoff := now.Add(-retention)
	unlock, err := flock(j.wlock, syscall.LOCK_EX)
	if err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	defer unlock()
	if err := j.usableLocked(); err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	s, err := scan(j.dir)
	if err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	limit := uint64(math.MaxUint64)
	if !s.OK {
		limit = 0
		if s.FirstBad > 2 {
			limit = s.FirstBad - 2 // keep the entry before the damage: it anchors the damaged one
		}
	}
	r, err := j.dueLocked(cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	var damaged error
	if r.heldSeq != 0 {
		damaged = fmt.Errorf("audit: prune: kept entries from %d on although they are older than the retention, because the journal is damaged at entry %d (%s: %s): %w",
			r.heldSeq, s.FirstBad, s.Fault, s.Problem, ErrDamaged)
	}
	if r.n == 0 {
		return 0, damaged
	}
	cp := Checkpoint{Seq: r.last.Seq, Hash: r.last.Hash, Time: r.last.Time, Pruned: record.Time}
	b, err := cp.encode()
	if err == nil {
		err = writeAtomic(j.dir, checkpointName, b)
	}
	if err != nil {
		return 0, fmt.Errorf("audit: prune: write checkpoint: %w", err)
	}
	// From here a failure leaves an interrupted prune, which Open completes.
	err = testHookAfterCheckpoint()
	if err == nil {
		err = j.replaceLocked(r.keepFrom)
	}
	if err != nil {
		// Finished like Open would, before the next append.
		j.broken, j.repair = err, j.reopenLocked
		return 0, fmt.Errorf("audit: prune: the checkpoint is written but the journal not shortened (retried before the next append): %w", err)
	}
	record.Object = fmt.Sprintf("audit entries %d-%d", r.first, r.last.Seq)
	record.Reason = fmt.Sprintf("older than %s (retention %v)", formatTime(cutoff), retention)
	if _, err := j.appendLocked(record); err != nil {
		return r.n, fmt.Errorf("audit: prune: removed %d entries but could not record it: %w", r.n, err)
	}
	return r.n, damaged
}

// testHookAfterCheckpoint lets a test fail a prune between its two steps.
var testHookAfterCheckpoint = func() error { return nil }

// due is the run of entries a prune removes.
type due struct {
	n        int
	first    uint64
	last     Entry
	keepFrom int64  // offset of the first entry kept
	heldSeq  uint64 // an entry older than the cutoff that was kept because of damage; 0 if none
}

// dueLocked finds the entries at the start that are older than cutoff and
// numbered at most limit.
func (j *Journal) dueLocked(cutoff time.Time, limit uint64) (due, error) {
	f, err := mustOpenJournal(j.dir)
	if err != nil {
		return due{}, err
	}
	defer f.Close()
	var r due
	_, _, err = eachLine(f, j.size, func(_ int, end int64, line []byte, err error) bool {
		if err != nil {
			return false
		}
		e, err := parseLine(line)
		if err != nil || !e.Time.Before(cutoff) {
			return false
		}
		if e.Seq > limit {
			r.heldSeq = e.Seq
			return false
		}
		if r.n == 0 {
			r.first = e.Seq
		}
		r.n++
		r.last, r.keepFrom = e, end
		return true
	})
	return r, err
}

// replaceLocked shortens the journal to the entries from offset from on and
// continues appending to the new file.
func (j *Journal) replaceLocked(from int64) error {
	// The offsets move as soon as the new file is renamed into place,
	// even if a later step fails.
	j.marks, j.gen = nil, j.gen+1
	if err := rewriteJournal(j.dir, from, j.size); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(j.dir, journalName), os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	j.f.Close()
	j.f, j.size = f, j.size-from
	return nil
}

// reopenLocked repairs the directory as Open does and reopens the journal
// for appending. The caller holds write.lock.
func (j *Journal) reopenLocked() error {
	j.marks, j.gen = nil, j.gen+1
	if err := j.recover(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(j.dir, journalName), os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	j.f.Close()
	j.f, j.size = f, fi.Size()
	return nil
}

// rewriteJournal atomically replaces the journal with its bytes [from, to).
func rewriteJournal(adir string, from, to int64) error {
	src, err := mustOpenJournal(adir)
	if err != nil {
		return fmt.Errorf("rewrite journal: %w", err)
	}
	defer src.Close()
	err = replaceFile(adir, journalName, func(w io.Writer) error {
		n, err := io.Copy(w, io.NewSectionReader(src, from, to-from))
		if err == nil && n != to-from {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("rewrite journal: %w", err)
	}
	return nil
}
