package replication

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

// auditReplica is a datacenter's copy of one store's audit journal: the
// store's lines, byte for byte, appended only when each entry's hash checks
// and it chains onto the last one held. A store whose journal was rewritten
// cannot make the replica follow: the break is refused, alarmed and
// audited (flagAudit), and the store's footage is still replicated.
type auditReplica struct {
	path string
	mu   sync.Mutex
	last uint64
	hash audit.Digest
}

// errAuditChain is a store's journal that does not continue the copy held.
var errAuditChain = errors.New("audit chain broken")

func openAuditReplica(dir, storeName string) (*auditReplica, error) {
	a := &auditReplica{path: filepath.Join(dir, storeName+".jsonl")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, err
	}
	f, err := os.Open(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	defer f.Close()
	// The last complete line names where the chain continues.
	fi, err := f.Stat()
	if err != nil {
		return a, err
	}
	off := max(fi.Size()-2*audit.MaxLineBytes, 0)
	tail := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(tail, off); err != nil {
		return a, err
	}
	if i := bytes.LastIndexByte(tail, '\n'); i >= 0 && i != len(tail)-1 {
		// An unterminated last line: a crash mid-append; it is cut off.
		if err := os.Truncate(a.path, off+int64(i)+1); err != nil {
			return a, err
		}
		tail = tail[:i+1]
	}
	lines := bytes.Split(bytes.TrimSuffix(tail, []byte("\n")), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) > 0 {
		e, err := audit.DecodeEntry(last)
		if err != nil {
			return a, fmt.Errorf("%s: last line: %w", a.path, err)
		}
		a.last, a.hash = e.Seq, e.Hash
	}
	return a, nil
}

func (a *auditReplica) seq() uint64 {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// append verifies and appends count lines, with one fsync.
func (a *auditReplica) append(lines []byte, count int) error {
	if a == nil {
		return errors.New("no audit replica")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	parts := bytes.SplitAfter(lines, []byte("\n"))
	if len(parts) > 0 && len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) != count {
		return fmt.Errorf("audit: %d lines, header says %d", len(parts), count)
	}
	last, hash := a.last, a.hash
	for _, l := range parts {
		e, err := audit.DecodeEntry(l)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		// The first entry ever held may start anywhere (the store may
		// have pruned); after that each must chain on.
		if last != 0 && (e.Seq != last+1 || e.Prev != hash) {
			return fmt.Errorf("audit: entry %d does not chain onto entry %d held (the store's journal was rewritten?): %w", e.Seq, last, errAuditChain)
		}
		last, hash = e.Seq, e.Hash
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		if _, err = f.Write(lines); err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Undo a partial write so the file ends where the chain does.
			f.Truncate(fi.Size())
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit replica: %w", err)
	}
	a.last, a.hash = last, hash
	return nil
}

// prune drops the longest run of entries at the start of the copy whose
// time is before cutoff, as the store's own journal prunes (an entry
// older than a newer one before it waits for it). The kept lines are
// written to a new file, synced and renamed over the copy, so a crash
// leaves the old copy or the new one, never a mix. It returns how many
// entries went and the time of the last one.
func (a *auditReplica) prune(cutoff time.Time) (int, time.Time, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, audit.MaxLineBytes+1)
	var off int64
	var n int
	var last time.Time
	for {
		line, err := r.ReadSlice('\n')
		if err == io.EOF {
			break // an unterminated tail stays (openAuditReplica cuts it)
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("%s: %w", a.path, err)
		}
		e, err := audit.DecodeEntry(line)
		if err != nil {
			// Damage is evidence: nothing at or after it is pruned.
			break
		}
		if !e.Time.Before(cutoff) {
			break
		}
		off += int64(len(line))
		n++
		last = e.Time
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, time.Time{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(a.path), ".prune-*")
	if err != nil {
		return 0, time.Time{}, err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, f)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), a.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(a.path))
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("audit replica %s: prune: %w", a.path, err)
	}
	return n, last, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// pruneAudit prunes every copy of a store's journal held, the copies of
// stores no longer pulled from (revoked) too, by the retention the policy
// sets, and records what it dropped in this node's journal. It reports
// false, having done nothing, while this node holds no policy: a node
// catching up must not prune by a default the federation has raised.
func (r *Replicas) pruneAudit(now time.Time) bool {
	st := r.d.Policy.State()
	if st == nil || st.FederationID == "" || r.d.AuditKeep == nil {
		return false
	}
	cutoff := now.Add(-r.d.AuditKeep(st))
	des, err := os.ReadDir(r.d.AuditDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.d.Logf("node: AUDIT replica prune: %v", err)
		}
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".jsonl")
		if !ok || !de.Type().IsRegular() {
			continue
		}
		a := &auditReplica{path: filepath.Join(r.d.AuditDir, de.Name())}
		if p := r.pullers[name]; p != nil && p.audit != nil {
			a = p.audit // its lock orders the prune with the puller's appends
		}
		n, last, err := a.prune(cutoff)
		if err != nil {
			r.d.Logf("node: AUDIT replica prune: %v", err)
			continue
		}
		if n > 0 {
			r.d.Audit(audit.Event{Actor: r.d.Name, Action: "audit-prune", Object: "replica " + name, Decision: audit.Allow,
				Reason: fmt.Sprintf("%d entries up to %s, past the retention of %v", n, last.UTC().Format(time.RFC3339), r.d.AuditKeep(st))})
		}
	}
	return true
}
