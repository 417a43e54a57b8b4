package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"
)

// DefaultRetention is how long entries are kept when Options.Retention is 0.
const DefaultRetention = 30 * 24 * time.Hour

var (
	// ErrClosed is returned by every method of a closed Journal but Close.
	ErrClosed = errors.New("audit: journal closed")
	// ErrLocked means another Journal (in this process or another) has the
	// directory open.
	ErrLocked = errors.New("audit: journal is open elsewhere")
	// ErrDamaged means the journal's files are not what this package
	// writes; Verify says where and how.
	ErrDamaged = errors.New("audit: journal damaged")
)

// Options configure a Journal. The zero value is ready to use.
type Options struct {
	// Retention is how long Prune keeps entries. 0 means DefaultRetention;
	// negative is an error.
	Retention time.Duration
	// Now is the clock for events appended without a time, and for Prune
	// called with a zero time. Nil means time.Now.
	Now func() time.Time
	// Node is written into events appended without one.
	Node string
}

// Journal is an open audit journal. Its methods are safe for concurrent use.
type Journal struct {
	dir       string // the audit directory
	opts      Options
	lock      *os.File // lockName, held for the Journal's life
	wlock     *os.File // writeLockName, held while changing files (lock.go)
	recovered []string

	mu     sync.Mutex
	f      *os.File // the journal, for appending
	size   int64    // bytes of complete entries in f
	seq    uint64   // the last entry appended (or the checkpoint's)
	hash   Digest
	broken error // after a failed write that could not be undone
	// repair, set with broken, is what the next append retries first to
	// clear it: a full disk is a moment, and a journal that stayed off
	// after it would silently drop every later event.
	repair func() error
	// failure is the last append's error until one succeeds, and since
	// when appends fail: what the node alarms on.
	failure   error
	failSince time.Time
	closed    bool
	// marks index the journal file sparsely, learned by reads; gen counts
	// prunes, each of which rewrites the file and clears marks (see read).
	marks []mark
	gen   uint64
}

// mark is where entry seq starts in the journal file: its byte offset and
// the number of lines before it.
type mark struct {
	seq   uint64
	off   int64
	lines int
}

// markEvery is how many entries apart read marks the file. A datacenter
// asks every few seconds for the entries after its copy's last; without
// marks each ask parsed and hashed 30 days of lines (BenchmarkJournalAfter).
const markEvery = 256

// Open opens the audit journal in dir (a node's data directory), creating
// dir/audit/ if needed, and repairs what a crash may have left (package
// doc); Recovered says what it repaired. Only one Journal may have a
// directory open at a time (ErrLocked).
func Open(dir string, opts Options) (*Journal, error) {
	if opts.Retention < 0 {
		return nil, fmt.Errorf("audit: open: negative retention %v", opts.Retention)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	adir := filepath.Join(dir, subdir)
	if err := os.MkdirAll(adir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	lock, wlock, err := lockDir(adir)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", adir, err)
	}
	j := &Journal{dir: adir, opts: opts, lock: lock, wlock: wlock}
	if err := j.start(); err != nil {
		wlock.Close()
		lock.Close()
		return nil, fmt.Errorf("audit: open %s: %w", adir, err)
	}
	return j, nil
}

// start repairs the directory and opens the journal for appending.
func (j *Journal) start() error {
	unlock, err := flock(j.wlock, syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if err := j.recover(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(j.dir, journalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	j.f, j.size = f, fi.Size()
	return nil
}

// recover brings the directory into a state Append can continue from, or
// fails with ErrDamaged (package doc, Crashes).
func (j *Journal) recover() error {
	if err := removeTemps(j.dir); err != nil {
		return err
	}
	s, err := scan(j.dir)
	if err != nil {
		return err
	}
	path := filepath.Join(j.dir, journalName)
	if s.torn > 0 {
		if err := truncateFile(path, s.validEnd); err != nil {
			return err
		}
		j.recovered = append(j.recovered, fmt.Sprintf(
			"dropped an unterminated last line (%d bytes): an append cut off by a crash, never acknowledged", s.torn))
	}
	if s.keepFrom >= 0 {
		if err := rewriteJournal(j.dir, s.keepFrom, s.validEnd); err != nil {
			return err
		}
		j.recovered = append(j.recovered, fmt.Sprintf(
			"finished an interrupted prune: removed the entries up to %d that the checkpoint covers", s.Checkpoint.Seq))
	}
	h, last := s.head, s.last
	switch {
	case !s.headExists && s.Entries == 0 && !s.cpExists: // new, or a crash before the first head
		return j.setHead(position{})
	case h == nil:
		return fmt.Errorf("%w: the head file is missing or damaged, so the journal's end is unknown; run `custos audit verify`", ErrDamaged)
	case last != nil && last.Seq == h.Seq+1 && last.Prev == h.Hash:
		return j.forwardHead(h.Seq, position{last.Seq, last.Hash},
			"a crash (or a full disk) came between writing the entry and updating the head")
	case last != nil && last.Seq > h.Seq && s.headBehind && s.LastSeq == last.Seq && s.LastHash == last.Hash:
		return j.forwardHead(h.Seq, position{last.Seq, last.Hash},
			"a crash (or a full disk) came between writing a batch and updating the head")
	case last != nil && last.Seq > h.Seq:
		return fmt.Errorf("%w: the journal continues to entry %d past its head file (entry %d); run `custos audit verify`",
			ErrDamaged, last.Seq, h.Seq)
	}
	// Chain on from the head even if the journal ends earlier or its last
	// line is damaged: the gap stays visible to Verify.
	j.seq, j.hash = h.Seq, h.Hash
	return nil
}

// forwardHead moves the head file forward from entry from to p, the
// journal's last entry. On a full disk the journal still opens, chained on
// from p, with the head's write as the repair the next append retries first
// (as after an append whose head write failed) and Failure set: a node
// restarted while its disk is full comes up and alarms instead of staying
// down, and the head catches up once there is space.
func (j *Journal) forwardHead(from uint64, p position, why string) error {
	err := j.setHead(p)
	switch {
	case err == nil:
		j.recovered = append(j.recovered, fmt.Sprintf("moved the head file forward from entry %d to %d: %s", from, p.Seq, why))
		return nil
	case !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT):
		return err
	}
	j.seq, j.hash = p.Seq, p.Hash
	j.broken, j.repair = err, func() error { return j.setHead(p) }
	j.failed(fmt.Errorf("audit: open: the head file is at entry %d, the journal at %d, and moving it forward failed: %w", from, p.Seq, err))
	j.recovered = append(j.recovered, fmt.Sprintf(
		"the head file is at entry %d, the journal at %d (%s); no space to move it forward: appends fail until there is", from, p.Seq, why))
	return nil
}

func (j *Journal) setHead(p position) error {
	b, err := encodeRecord(p)
	if err == nil {
		err = writeAtomic(j.dir, headName, b)
	}
	if err != nil {
		return fmt.Errorf("write head: %w", err)
	}
	j.seq, j.hash = p.Seq, p.Hash
	return nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return fsync(f)
}

// Recovered lists what Open repaired after a crash, for the node to log.
func (j *Journal) Recovered() []string { return append([]string(nil), j.recovered...) }

// Append records e and returns it as the journal holds it, after it is on
// disk (journal and head fsynced). An error means it was not recorded, with
// one exception the error says: the entry is in the journal but the head
// could not be updated; the Journal then refuses further appends until it
// is reopened.
func (j *Journal) Append(e Event) (Entry, error) {
	e, err := normalize(e, j.opts.Now, j.opts.Node)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return Entry{}, fmt.Errorf("audit: append: %w", ErrClosed)
	}
	unlock, err := flock(j.wlock, syscall.LOCK_EX)
	if err != nil {
		return Entry{}, j.failed(fmt.Errorf("audit: append: %w", err))
	}
	defer unlock()
	ents, err := j.appendLocked(e)
	if len(ents) == 0 {
		return Entry{}, err
	}
	return ents[0], err
}

// AppendBatch records events in order, like that many Appends, but with one
// write and one round of fsyncs for all of them: what a busy writer uses to
// keep up. On error none of them is recorded, with Append's one exception.
func (j *Journal) AppendBatch(events []Event) ([]Entry, error) {
	norm := make([]Event, len(events))
	for i, e := range events {
		var err error
		if norm[i], err = normalize(e, j.opts.Now, j.opts.Node); err != nil {
			return nil, fmt.Errorf("audit: append: %w", err)
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, fmt.Errorf("audit: append: %w", ErrClosed)
	}
	unlock, err := flock(j.wlock, syscall.LOCK_EX)
	if err != nil {
		return nil, j.failed(fmt.Errorf("audit: append: %w", err))
	}
	defer unlock()
	return j.appendLocked(norm...)
}

// usableLocked retries the repair of an earlier failure; the journal
// accepts appends again once it succeeds. The caller holds write.lock.
func (j *Journal) usableLocked() error {
	if j.broken == nil {
		return nil
	}
	if err := j.repair(); err != nil {
		return fmt.Errorf("journal unusable since an earlier failure (%v), and repairing it failed: %w", j.broken, err)
	}
	j.broken, j.repair = nil, nil
	return nil
}

// failed records err as the journal's current failure and returns it.
func (j *Journal) failed(err error) error {
	if j.failure == nil {
		j.failSince = j.opts.Now()
	}
	j.failure = err
	return err
}

// Failure returns nil while the journal records, or, after an append that
// failed, an error saying why and since when, until an append succeeds
// again. Every event in between was lost, so a node must not grant access
// while it is set: an access that cannot be audited does not happen.
func (j *Journal) Failure() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failure == nil {
		return nil
	}
	return fmt.Errorf("audit journal failing since %s: %w", j.failSince.UTC().Format(time.RFC3339), j.failure)
}

func (j *Journal) appendLocked(events ...Event) ([]Entry, error) {
	ents, err := j.writeLocked(events)
	if err != nil {
		return ents, j.failed(err)
	}
	j.failure = nil
	return ents, nil
}

func (j *Journal) writeLocked(events []Event) ([]Entry, error) {
	if err := j.usableLocked(); err != nil {
		return nil, fmt.Errorf("audit: append: %w", err)
	}
	ents := make([]Entry, 0, len(events))
	var lines []byte
	seq, prev := j.seq, j.hash
	for _, e := range events {
		ent := Entry{Seq: seq + 1, Prev: prev, Event: e}
		ent.Hash = ent.sum()
		line, err := encodeLine(ent)
		if err != nil {
			return nil, fmt.Errorf("audit: append: %w", err)
		}
		lines = append(lines, line...)
		ents = append(ents, ent)
		seq, prev = ent.Seq, ent.Hash
	}
	if len(ents) == 0 {
		return nil, nil
	}
	_, err := j.f.Write(lines)
	if err == nil {
		err = fsync(j.f)
	}
	if err != nil {
		// Undo a partial write so no line ever follows half a line.
		if rerr := j.undoLocked(); rerr != nil {
			j.broken, j.repair = rerr, j.undoLocked
		}
		return nil, fmt.Errorf("audit: append: %w", err)
	}
	j.size += int64(len(lines))
	if err := j.setHead(position{seq, prev}); err != nil {
		// The entries are in the journal; the head catches up before the
		// next append (or at Open), once the disk takes it.
		head := position{seq, prev}
		j.seq, j.hash = seq, prev
		j.broken, j.repair = err, func() error { return j.setHead(head) }
		return ents, fmt.Errorf("audit: append: entry %d is in the journal but the head is not: %w", seq, err)
	}
	return ents, nil
}

// undoLocked cuts the journal back to its complete entries.
func (j *Journal) undoLocked() error {
	if err := j.f.Truncate(j.size); err != nil {
		return err
	}
	return fsync(j.f)
}

// Head returns the last entry's sequence number and hash (the checkpoint's
// after a prune that removed everything; 0 and zero for an empty journal):
// what a replica records to detect a rewritten chain later.
func (j *Journal) Head() (seq uint64, hash Digest) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq, j.hash
}

// Since returns the entries whose time is at or after t, in journal order.
func (j *Journal) Since(t time.Time) ([]Entry, error) {
	return j.read("since", 0, 0, func(e *Entry) bool { return !e.Time.Before(t) })
}

// After returns the entries with a sequence number above seq, in order, at
// most limit of them (0: all): what a replica that has seq asks for. It
// reads from the nearest mark before seq+1, so its cost follows what it
// returns, not the journal's length; lines before that mark are not checked
// (Verify checks them all).
func (j *Journal) After(seq uint64, limit int) ([]Entry, error) {
	return j.read("after", seq+1, limit, func(e *Entry) bool { return e.Seq > seq })
}

// read returns the entries keep selects, at most limit (0: all), reading
// from the last mark at or before entry near (0: from the first line). It reads without blocking
// appends: the file is opened under the lock, and only the bytes it held
// then are read (a prune replaces the file, so the descriptor keeps the old
// one, and the marks it learns are kept only if no prune came meanwhile).
func (j *Journal) read(op string, near uint64, limit int, keep func(*Entry) bool) ([]Entry, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil, fmt.Errorf("audit: %s: %w", op, ErrClosed)
	}
	f, err := mustOpenJournal(j.dir)
	size, gen, from := j.size, j.gen, j.markAtOrBefore(near)
	j.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", op, err)
	}
	defer f.Close()
	if _, err := f.Seek(from.off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("audit: %s: %w", op, err)
	}
	var out []Entry
	var learned []mark
	var bad error
	start := from.off
	_, _, err = eachLine(f, size-from.off, func(num int, end int64, line []byte, err error) bool {
		num += from.lines
		lineStart := start
		start = from.off + end
		var e Entry
		if err == nil {
			e, err = parseLine(line)
		}
		if err == nil && e.sum() != e.Hash {
			err = errors.New("contents do not match its hash")
		}
		if err != nil {
			bad = fmt.Errorf("audit: %s: line %d: %v: %w; run `custos audit verify`", op, num, err, ErrDamaged)
			return false
		}
		if e.Seq%markEvery == 0 {
			learned = append(learned, mark{seq: e.Seq, off: lineStart, lines: num - 1})
		}
		if keep(&e) {
			out = append(out, e)
		}
		return limit == 0 || len(out) < limit
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %s: %w", op, err)
	}
	j.mu.Lock()
	if j.gen == gen {
		j.addMarks(learned)
	}
	j.mu.Unlock()
	return out, nil
}

// markAtOrBefore returns the last mark of an entry at or before seq, or
// the file's start.
func (j *Journal) markAtOrBefore(seq uint64) mark {
	i := sort.Search(len(j.marks), func(i int) bool { return j.marks[i].seq > seq })
	if i == 0 {
		return mark{}
	}
	return j.marks[i-1]
}

// addMarks merges ms, in order, into the marks.
func (j *Journal) addMarks(ms []mark) {
	for _, m := range ms {
		i := sort.Search(len(j.marks), func(i int) bool { return j.marks[i].seq >= m.seq })
		if i < len(j.marks) && j.marks[i].seq == m.seq {
			continue
		}
		j.marks = slices.Insert(j.marks, i, m)
	}
}

// Verify checks the journal like the package's Verify, consistently with
// concurrent appends and prunes (it holds the lock while reading).
func (j *Journal) Verify() (Report, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return Report{}, fmt.Errorf("audit: verify: %w", ErrClosed)
	}
	s, err := scan(j.dir)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify %s: %w", j.dir, err)
	}
	return s.Report, nil
}

// Close closes the journal and releases the directory. Calling it again
// does nothing.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	err := j.f.Close()
	j.mu.Unlock()
	for _, c := range []*os.File{j.wlock, j.lock} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

// Retention is how long Prune keeps entries: what a reader of the journal
// needs to tell "never journaled" from "journaled and pruned".
func (j *Journal) Retention() time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.opts.Retention
}

// SetRetention changes how long Prune keeps entries, from the next Prune
// on: the federation's policy sets it, and may change it while the node
// runs.
func (j *Journal) SetRetention(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("audit: retention %v: want a positive duration", d)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.opts.Retention = d
	return nil
}
