package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Names inside the audit directory (package doc).
const (
	subdir         = "audit"
	journalName    = "journal.jsonl"
	headName       = "head.json"
	checkpointName = "checkpoint.json"
	lockName       = "lock"
	writeLockName  = "write.lock"
	tmpSuffix      = ".tmp"
	maxSmallFile   = 4 << 10
	checkpointDom  = "custos/audit/checkpoint/v1"
)

// position names an entry of the chain: the head file's record.
type position struct {
	Seq  uint64 `json:"seq"`
	Hash Digest `json:"hash"`
}

// Checkpoint records the last entry that Prune removed, so that the chain
// can be checked across the gap.
type Checkpoint struct {
	Seq    uint64    `json:"seq"`    // the last entry pruned
	Hash   Digest    `json:"hash"`   // its hash: the Prev of the next entry
	Time   time.Time `json:"time"`   // its time
	Pruned time.Time `json:"pruned"` // when the prune ran
}

type wireCheckpoint struct {
	Seq    uint64 `json:"seq"`
	Hash   Digest `json:"hash"`
	Time   string `json:"time"`
	Pruned string `json:"pruned"`
	Sum    Digest `json:"sum"`
}

func (c Checkpoint) sum() Digest {
	b := appendField(nil, checkpointDom)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = append(b, c.Hash[:]...)
	b = appendField(b, formatTime(c.Time))
	b = appendField(b, formatTime(c.Pruned))
	return sha256.Sum256(b)
}

func (c Checkpoint) encode() ([]byte, error) {
	return encodeRecord(wireCheckpoint{c.Seq, c.Hash, formatTime(c.Time), formatTime(c.Pruned), c.sum()})
}

func decodeCheckpoint(b []byte) (Checkpoint, error) {
	var w wireCheckpoint
	if err := decodeRecord(b, &w); err != nil {
		return Checkpoint{}, err
	}
	t, err1 := time.Parse(time.RFC3339Nano, w.Time)
	p, err2 := time.Parse(time.RFC3339Nano, w.Pruned)
	if err := errors.Join(err1, err2); err != nil {
		return Checkpoint{}, fmt.Errorf("bad time: %v", err)
	}
	c := Checkpoint{Seq: w.Seq, Hash: w.Hash, Time: t.UTC(), Pruned: p.UTC()}
	again, err := encodeRecord(wireCheckpoint{c.Seq, c.Hash, formatTime(c.Time), formatTime(c.Pruned), w.Sum})
	if err != nil || !bytes.Equal(again, b) {
		return Checkpoint{}, errNotCanonical
	}
	if c.sum() != w.Sum {
		return Checkpoint{}, errors.New("its sum does not match its contents (edited)")
	}
	if c.Seq == 0 || c.Seq > maxSeq {
		return Checkpoint{}, fmt.Errorf("seq %d: a checkpoint names an entry, numbered from 1 to %d", c.Seq, uint64(maxSeq))
	}
	return c, nil
}

func decodeHead(b []byte) (position, error) {
	var p position
	if err := decodeRecord(b, &p); err != nil {
		return position{}, err
	}
	if again, err := encodeRecord(p); err != nil || !bytes.Equal(again, b) {
		return position{}, errNotCanonical
	}
	if p.Seq > maxSeq {
		return position{}, fmt.Errorf("seq %d is over %d", p.Seq, uint64(maxSeq))
	}
	return p, nil
}

// encodeRecord writes a small file's record: one JSON object and "\n".
func encodeRecord(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func decodeRecord(b []byte, v any) error {
	return decodeStrict(bytes.TrimSuffix(b, []byte("\n")), v)
}

// contentError is a small file that exists but cannot be what it claims to
// be (too big, not a regular file): damage, not an I/O failure.
type contentError struct{ msg string }

func (e *contentError) Error() string { return e.msg }

// readSmall reads a head or checkpoint file, refusing symlinks and anything
// but a regular file of at most maxSmallFile bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &contentError{filepath.Base(path) + " is a symlink"}
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &contentError{filepath.Base(path) + " is not a regular file"}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSmallFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmallFile {
		return nil, &contentError{fmt.Sprintf("%s is over %d bytes", filepath.Base(path), maxSmallFile)}
	}
	return b, nil
}

// openJournal opens the journal for reading; a missing journal reads as
// empty (nil file, nil error).
func openJournal(adir string) (*os.File, error) {
	f, err := mustOpenJournal(adir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// mustOpenJournal opens the journal of an open Journal for reading, where
// it must exist.
func mustOpenJournal(adir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(adir, journalName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// writeAtomic replaces adir/name with data: temporary file, fsync, rename,
// fsync of the directory.
func writeAtomic(adir, name string, data []byte) error {
	return replaceFile(adir, name, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// replaceFile is writeAtomic with the contents written by fill.
func replaceFile(adir, name string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(adir, "."+name+"-*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := fsync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(adir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(adir)
}

// fsync makes f durable. Only the Verify fuzz test replaces it, to run
// faster on a disk it throws away anyway.
var fsync = (*os.File).Sync

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d)
}

// removeTemps deletes temporary files a crash left behind.
func removeTemps(adir string) error {
	ents, err := os.ReadDir(adir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, tmpSuffix) {
			if err := os.Remove(filepath.Join(adir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// errLineTooLong is passed to eachLine's callback for a line over
// MaxLineBytes; the line itself is skipped.
var errLineTooLong = fmt.Errorf("line is over the %d-byte limit", MaxLineBytes)

// eachLine calls fn for every complete line among the first limit bytes of
// r, with its 1-based number, the offset just past its newline, and the line
// without newline (valid only during the call; nil with errLineTooLong for
// an oversize one). fn returns false to stop. eachLine returns the offset
// just past the last complete line it read and the length of an
// unterminated tail after it.
func eachLine(r io.Reader, limit int64, fn func(num int, end int64, line []byte, err error) bool) (end, torn int64, err error) {
	br := bufio.NewReaderSize(io.LimitReader(r, limit), MaxLineBytes+1)
	for num := 1; ; num++ {
		b, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			end += int64(len(b))
			if !fn(num, end, b[:len(b)-1], nil) {
				return end, 0, nil
			}
		case errors.Is(err, bufio.ErrBufferFull):
			n := int64(len(b))
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				n += int64(len(b))
			}
			if err == io.EOF {
				return end, n, nil
			}
			if err != nil {
				return end, 0, err
			}
			end += n
			if !fn(num, end, nil, errLineTooLong) {
				return end, 0, nil
			}
		case err == io.EOF:
			return end, int64(len(b)), nil
		default:
			return end, 0, err
		}
	}
}
