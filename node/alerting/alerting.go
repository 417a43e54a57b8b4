// Package alerting owns a datacenter's alert runner: it follows every
// store's audit journal the datacenter holds (DIR/replicas/audit/*.jsonl)
// and its own journal, evaluates the policy's alert rules over a sliding
// window of their entries once a minute (policy/alerts), and appends each
// new alert once to its own journal as an "alert" entry, which replication
// and `custos status` then carry. It also reads those entries back: to
// raise nothing twice across restarts, and for status.
package alerting

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/alerts"
	"github.com/custos-cctv/custos/policy/audit"
)

// Action is the audit action of an alert entry.
const Action = "alert"

const (
	// Every is how often the runner evaluates.
	Every = time.Minute
	// MaxEntries bounds the entries held in the window (DESIGN §4
	// invariant 14): past it the oldest go first.
	MaxEntries = 200_000
	// minKeep is the shortest window of entries kept, whatever the rules.
	minKeep = 2 * time.Hour
	// Shown is how long Recent keeps the alerts raised.
	Shown = 24 * time.Hour
	// MaxPerPass bounds the alerts one pass records (DESIGN §4 invariant
	// 14: nothing from the network writes to the journal faster than a
	// bounded rate); the rest wait for the next passes.
	MaxPerPass = 100
	// readBatch is how many of its own entries the runner reads at once.
	readBatch = 4096
)

// Deps is what the runner takes from its node.
type Deps struct {
	Name    string               // the datacenter's name: the actor of its alerts
	Dir     string               // where the stores' journal copies are (DIR/replicas/audit)
	Journal *audit.Journal       // the node's own journal: read, and where alerts go
	Policy  func() *policy.State // the rules and the nodes they name; nil or empty: nothing to do
	Now     func() time.Time     // nil: time.Now
	Logf    func(string, ...any) // nil: silent
	Every   time.Duration        // 0: Every
}

// Runner is a running alert evaluation.
type Runner struct {
	d    Deps
	mu   sync.Mutex // one pass at a time; guards what follows
	offs map[string]int64
	own  uint64 // the last sequence number of the own journal read
	read bool   // the own journal was read once
	ents map[entryID]audit.Entry
	// raised are the alerts recorded (read back from the own journal
	// too), by key.
	raised map[string]alerts.Alert
	bad    map[string]bool // files whose bad lines were logged

	recentMu sync.Mutex
	recent   []Summary // the alert entries of the last Shown, oldest first

	stop chan struct{}
	done chan struct{} // closed when the loop Start started returns; nil without Start
}

type entryID struct {
	node string
	seq  uint64
}

// New makes a runner without starting it (Check runs a pass).
func New(d Deps) *Runner {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logf == nil {
		d.Logf = func(string, ...any) {}
	}
	if d.Every <= 0 {
		d.Every = Every
	}
	return &Runner{d: d, offs: map[string]int64{}, ents: map[entryID]audit.Entry{}, raised: map[string]alerts.Alert{},
		bad: map[string]bool{}, stop: make(chan struct{})}
}

// Start runs a pass at once and then every d.Every until Close.
func Start(d Deps) *Runner {
	r := New(d)
	r.done = make(chan struct{})
	go r.loop()
	return r
}

func (r *Runner) loop() {
	defer close(r.done)
	t := time.NewTicker(r.d.Every)
	defer t.Stop()
	for {
		r.Check()
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// Close stops a started runner and waits for a pass under way.
func (r *Runner) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	if r.done != nil {
		<-r.done
	}
}

// Check reads what the journals gained, evaluates the rules and records
// each new alert; it returns the alerts it recorded. It is the runner's
// pass, and the hook tests call.
func (r *Runner) Check() []alerts.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.d.Policy()
	if st == nil || st.FederationID == "" {
		return nil // no policy yet: no rules, no node names
	}
	now := r.d.Now()
	rules := st.Alerts()
	keep := max(alerts.Horizon(rules), minKeep)
	r.readOwn(now.Add(-keep), now.Add(-Shown))
	r.readReplicas(now.Add(-keep))
	r.trim(now.Add(-keep))
	entries := make([]audit.Entry, 0, len(r.ents))
	for _, e := range r.ents {
		entries = append(entries, e)
	}
	var out []alerts.Alert
	for _, a := range alerts.Evaluate(rules, st, entries, now) {
		if r.wasRaised(a) {
			continue
		}
		if len(out) == MaxPerPass {
			r.d.Logf("alerting: more than %d new alerts in one pass: the rest are recorded in the next passes", MaxPerPass)
			break
		}
		if _, err := r.d.Journal.Append(audit.Event{Time: now, Actor: r.d.Name, Action: Action, Object: a.Object(), Decision: audit.Deny, Reason: a.Detail}); err != nil {
			r.d.Logf("alerting: AUDIT FAILURE: cannot record alert %s: %v", a.Object(), err)
			continue // again at the next pass
		}
		r.raised[a.Key()] = a
		r.d.Logf("alerting: ALERT %s %s: %s", a.Rule, a.Subject, a.Detail)
		out = append(out, a)
	}
	if len(out) > 0 {
		r.readOwn(now.Add(-keep), now.Add(-Shown)) // for Recent: the entries as the journal holds them
	}
	return out
}

func (r *Runner) wasRaised(a alerts.Alert) bool {
	if _, ok := r.raised[a.Key()]; ok {
		return true
	}
	for _, b := range r.raised {
		if b.Overlaps(a) {
			return true
		}
	}
	return false
}

// add keeps e if it is recent enough; an alert of this node's own is
// remembered as raised, and for Recent.
func (r *Runner) add(e audit.Entry, from time.Time) {
	if e.Action == Action && e.Actor == r.d.Name {
		if a, ok := alerts.ParseRaised(e.Object, e.Reason); ok {
			r.raised[a.Key()] = a
		}
		r.recentMu.Lock()
		r.recent = append(r.recent, summaryOf(e))
		r.recentMu.Unlock()
	}
	if e.Time.Before(from) {
		return
	}
	r.ents[entryID{e.Node, e.Seq}] = e
}

// readOwn reads the own journal: at the first pass the window (and the
// alerts since shown), then what follows the last entry read.
func (r *Runner) readOwn(from, shown time.Time) {
	if !r.read {
		head, _ := r.d.Journal.Head()
		since := from
		if shown.Before(since) {
			since = shown
		}
		es, err := r.d.Journal.Since(since)
		if err != nil {
			r.d.Logf("alerting: reading the audit journal: %v", err)
			return
		}
		r.own = head
		for _, e := range es {
			r.add(e, from)
			r.own = max(r.own, e.Seq)
		}
		r.read = true
	}
	for {
		es, err := r.d.Journal.After(r.own, readBatch)
		if err != nil {
			r.d.Logf("alerting: reading the audit journal: %v", err)
			return
		}
		for _, e := range es {
			r.add(e, from)
			r.own = e.Seq
		}
		if len(es) < readBatch {
			return
		}
	}
}

// readReplicas reads what each store's journal copy gained since the last
// pass. A copy that shrank was pruned: it is read again from its start
// (entries already held are the same entries).
func (r *Runner) readReplicas(from time.Time) {
	files, err := filepath.Glob(filepath.Join(r.d.Dir, "*.jsonl"))
	if err != nil {
		r.d.Logf("alerting: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, path := range files {
		seen[path] = true
		if err := r.readFile(path, from); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.d.Logf("alerting: %s: %v", path, err)
		}
	}
	for path := range r.offs {
		if !seen[path] {
			delete(r.offs, path)
		}
	}
}

func (r *Runner) readFile(path string, from time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	off := r.offs[path]
	if fi.Size() < off {
		off = 0 // pruned (rewritten shorter): read it again
	}
	if fi.Size() == off {
		return nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	// A buffer one line can fill: a longer line is read through, skipped.
	br := bufio.NewReaderSize(io.LimitReader(f, fi.Size()-off), audit.MaxLineBytes+2)
	long := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			off += int64(len(line))
			long = true
			continue
		}
		if err != nil { // io.EOF: an unterminated last line waits for its end
			break
		}
		off += int64(len(line))
		if !long && before(line, from) {
			continue // out of the window: no need to check its hash
		}
		e, derr := audit.DecodeEntry(line)
		if long {
			long, derr = false, errors.New("line too long")
		}
		if derr == nil {
			r.add(e, from)
		} else if !r.bad[path] {
			r.bad[path] = true
			r.d.Logf("alerting: %s: skipping a line: %v", path, derr)
		}
	}
	r.offs[path] = off
	return nil
}

// before reports whether the journal line's time, read without decoding
// it, is before t; a line it cannot read is not.
func before(line []byte, t time.Time) bool {
	const key = `,"time":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 || i > 40 {
		return false
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return err == nil && at.Before(t)
}

// trim drops entries older than from and, past MaxEntries, the oldest;
// and forgets alerts raised before the window.
func (r *Runner) trim(from time.Time) {
	for id, e := range r.ents {
		if e.Time.Before(from) {
			delete(r.ents, id)
		}
	}
	if over := len(r.ents) - MaxEntries; over > 0 {
		ids := make([]entryID, 0, len(r.ents))
		for id := range r.ents {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b entryID) int { return r.ents[a].Time.Compare(r.ents[b].Time) })
		for _, id := range ids[:over] {
			delete(r.ents, id)
		}
		r.d.Logf("alerting: more than %d entries within the window: the %d oldest are not evaluated", MaxEntries, over)
	}
	for k, a := range r.raised {
		if a.End.Before(from) {
			delete(r.raised, k)
		}
	}
	r.recentMu.Lock()
	shown := r.d.Now().Add(-Shown)
	r.recent = slices.DeleteFunc(r.recent, func(s Summary) bool { return s.Time.Before(shown) })
	r.recentMu.Unlock()
}

// Recent are the alerts this datacenter recorded since t (at most Shown
// back), oldest first, as its journal holds them; empty until the first
// pass read the journal.
func (r *Runner) Recent(t time.Time) []Summary {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	var out []Summary
	for _, s := range r.recent {
		if !s.Time.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

func summaryOf(e audit.Entry) Summary {
	rule, subject, _ := strings.Cut(e.Object, " ")
	return Summary{Node: e.Node, Time: e.Time, Rule: rule, Subject: subject, Detail: e.Reason}
}

// Summary is one alert a datacenter raised, as status shows it.
type Summary struct {
	Node    string    `json:"node"` // the datacenter that raised it
	Time    time.Time `json:"time"` // when
	Rule    string    `json:"rule"`
	Subject string    `json:"subject"`
	Detail  string    `json:"detail"`
}

// Raised are the alerts the datacenter name recorded in j since t, oldest
// first.
func Raised(j *audit.Journal, name string, since time.Time) ([]Summary, error) {
	es, err := j.Since(since)
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, e := range es {
		if e.Action == Action && e.Actor == name {
			out = append(out, summaryOf(e))
		}
	}
	return out, nil
}
