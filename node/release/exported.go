package release

// What this node exported. A request's one-time key serves one export and
// is wiped after it, so a second export of the same request cannot run:
// the node remembers each export it made (request, when, where, by whom, to
// which file) in a small file of its data directory, refuses the second
// one with a sentence naming the first, and lists them for custos requests.
//
// It is a fact of this node alone, as the key was: the policy does not
// record exports (only admins sign commands), and other nodes still show
// the request as approved. The export itself is in this node's audit
// journal.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Exported is one export this node made.
type Exported struct {
	Request  string    `json:"request"`
	At       time.Time `json:"at"`
	Node     string    `json:"node"`
	Exporter string    `json:"exporter"`
	File     string    `json:"file"`
}

// Sentence says what happened to the request, for a refused second export.
func (e Exported) Sentence() string {
	return fmt.Sprintf("request %q was already exported at %s on node %s by %s, to %s; its one-time key was used then and wiped, so it cannot be exported again (file a new request for another export)",
		e.Request, e.At.UTC().Format(time.RFC3339), e.Node, e.Exporter, e.File)
}

// exportedKeep is how long a record is kept: past it, the request has left
// every replica (it expired at most MaxRequestLife after it was made, and
// is kept a replay window more).
const exportedKeep = policy.MaxRequestLife + policy.ReplayWindow

// exportedLog holds the records, in memory and in path ("" : memory only).
type exportedLog struct {
	path string
	mu   sync.Mutex
	m    map[string]Exported // guarded by mu; by request ID
}

// openExported reads the records at path; a missing file is none. A
// damaged file is reported and replaced by the next record: losing the
// records only costs a clearer refusal.
func openExported(path string) (*exportedLog, error) {
	l := &exportedLog{path: path, m: map[string]Exported{}}
	if path == "" {
		return l, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("release: exports made here: %w", err)
	}
	var list []Exported
	if err := json.Unmarshal(b, &list); err != nil {
		return l, fmt.Errorf("release: %s is damaged (%v); exports made before are no longer known here", path, err)
	}
	for _, e := range list {
		l.m[e.Request] = e
	}
	return l, nil
}

// get returns the record of request id, if this node exported it.
func (l *exportedLog) get(id string) (Exported, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[id]
	return e, ok
}

// add records e, drops records past exportedKeep, and writes the file
// (temp, fsync, rename); the record stays in memory if that fails.
func (l *exportedLog) add(e Exported) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[e.Request] = e
	for id, o := range l.m {
		if e.At.Sub(o.At) > exportedKeep {
			delete(l.m, id)
		}
	}
	if l.path == "" {
		return nil
	}
	b, err := json.Marshal(l.listLocked())
	if err != nil {
		return err
	}
	return writeFileAtomic(l.path, b)
}

// list returns the records, oldest first.
func (l *exportedLog) list() []Exported {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listLocked()
}

func (l *exportedLog) listLocked() []Exported {
	out := make([]Exported, 0, len(l.m))
	for _, e := range l.m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Exported) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Request, b.Request)
	})
	return out
}

// writeFileAtomic writes b to path (0600) through a synced temp file.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Exported lists the exports this node made, oldest first.
func (s *Service) Exported() []Exported { return s.exported.list() }
