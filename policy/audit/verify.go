package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Fault is the kind of damage Verify found.
type Fault string

const (
	FaultMalformed  Fault = "malformed"  // a line that is not a well-formed entry
	FaultEdited     Fault = "edited"     // an entry whose contents no longer match its hash, or that was rewritten with a new hash
	FaultDeleted    Fault = "deleted"    // entries missing at the start or in the middle
	FaultReordered  Fault = "reordered"  // entries out of order or duplicated
	FaultTruncated  Fault = "truncated"  // entries missing at the end: the head file records more
	FaultCheckpoint Fault = "checkpoint" // the checkpoint is unreadable, edited, or does not fit the journal
	FaultHead       Fault = "head"       // the head file is missing, unreadable, or does not fit the journal
)

// Report is what Verify found. Only the first fault is reported: after it,
// nothing in the chain can be trusted.
type Report struct {
	OK      bool `json:"ok"`      // no fault; Notes may still say what a crash left behind
	Entries int  `json:"entries"` // complete lines in the journal, well-formed or not

	// LastSeq and LastHash end the verified chain (the head when OK): what
	// a replica or an earlier reader compares with what it recorded.
	LastSeq    uint64      `json:"last_seq"`
	LastHash   Digest      `json:"last_hash"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"` // the last prune, nil if none (or unreadable)

	FirstBad uint64   `json:"first_bad,omitempty"` // sequence number of the first entry found missing, changed or out of place; 0 when OK
	Line     int      `json:"line,omitempty"`      // 1-based journal line where it was found; 0 if not about a line
	Fault    Fault    `json:"fault,omitempty"`     // the kind of damage; "" when OK
	Problem  string   `json:"problem,omitempty"`   // what is wrong, for people
	Notes    []string `json:"notes,omitempty"`     // benign findings: what a crash left, which Open repairs
}

func (r Report) String() string {
	if r.OK {
		return fmt.Sprintf("audit journal OK: %d entries, last %d (%s)", r.Entries, r.LastSeq, r.LastHash)
	}
	return fmt.Sprintf("audit journal damaged at entry %d (%s): %s", r.FirstBad, r.Fault, r.Problem)
}

// Verify checks the audit journal in dir (the node's data directory, as
// given to Open) without changing anything. It works on a closed journal
// and beside a running one: it holds write.lock shared while it reads, so
// appends wait for it. An error means the files could not be read; damage
// is reported in the Report.
func Verify(dir string) (Report, error) {
	adir := filepath.Join(dir, subdir)
	if _, err := os.Stat(adir); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	unlock, err := readLock(adir)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify %s: %w", adir, err)
	}
	defer unlock()
	s, err := scan(adir)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify %s: %w", adir, err)
	}
	return s.Report, nil
}

// scanned is one read of an audit directory: the Report and what Open and
// Prune need to repair or continue it.
type scanned struct {
	Report
	head       *position // nil if missing or unreadable
	headExists bool
	cpExists   bool
	last       *Entry // the last complete line if it decodes with a matching hash
	validEnd   int64  // offset just past the last complete line
	torn       int64  // bytes of an unterminated last line
	keepFrom   int64  // interrupted prune: offset of the first entry after the checkpoint; -1 if none
	headBehind bool   // the head is an entry of the verified chain before its end (a crash before the head update)
}

// scan reads head, checkpoint and journal, in that order, and checks them.
// The caller keeps writers out (the Journal's mutex or writeLockName).
func scan(adir string) (*scanned, error) {
	s := &scanned{keepFrom: -1}
	w := &walker{s: s, expect: 1}
	if err := w.readRecords(adir); err != nil {
		return nil, err
	}
	f, err := openJournal(adir)
	if err != nil {
		return nil, err
	}
	if f != nil {
		defer f.Close()
		s.validEnd, s.torn, err = eachLine(f, 1<<62, func(num int, end int64, line []byte, err error) bool {
			w.line(num, end, line, err)
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	w.finish()
	return s, nil
}

// readRecords reads the head and checkpoint files. Damage is recorded for
// the walker; only an I/O error is returned.
func (w *walker) readRecords(adir string) error {
	s := w.s
	raw, rerr := readSmall(filepath.Join(adir, headName))
	exists, err := present(rerr)
	if err != nil {
		return err
	}
	if s.headExists = exists; exists {
		p, err := decodeHead(raw)
		if rerr != nil {
			err = rerr
		}
		if err != nil {
			w.headErr = err
		} else {
			s.head = &p
		}
	}
	raw, rerr = readSmall(filepath.Join(adir, checkpointName))
	if exists, err = present(rerr); err != nil {
		return err
	}
	if s.cpExists = exists; exists {
		c, err := decodeCheckpoint(raw)
		if rerr != nil {
			err = rerr
		}
		if err != nil {
			w.fail(FaultCheckpoint, 0, 0, "the checkpoint file is damaged: %v", err)
		} else {
			w.cp, s.Checkpoint, w.expect = &c, &c, c.Seq+1
		}
	}
	return nil
}

// present sorts readSmall's error: the file exists (a contentError still
// counts: it exists but is garbage, and its nil contents will not decode),
// is missing, or could not be read (returned).
func present(err error) (bool, error) {
	var ce *contentError
	switch {
	case err == nil, errors.As(err, &ce):
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}
