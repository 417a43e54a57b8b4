// Package erasure owns carrying out approved erasures on a node's footage
// (a store's recordings, a datacenter's replicas) and the proof of it.
//
// An approved erase request is a tombstone in the policy (policy.Erasures).
// On every policy change, and again every minute until it succeeds, each
// store and datacenter records the tombstone in its media store (after
// which nothing in the range can be stored again: not a late replica, not a
// re-upload from a store restored from an old backup), deletes every
// segment that overlaps the range and every epoch record wholly inside it
// (crypto-shredding: the record holds the key's only shares), audits the
// SHA-256 of each segment it removed, and signs a receipt with its node key
// (keys.ErasureReceipt). Status collects the receipts of every node that
// holds or may hold the footage and checks each against that node's key in
// the policy, so completion is shown by each node's own signature, never
// by the requester's word.
//
// It never imports the node: what it needs comes in Deps.
package erasure

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Policy is the node's replica of the policy.
type Policy interface {
	State() *policy.State
	// Changed is closed at the next change of State.
	Changed() <-chan struct{}
}

// Auditor appends to the node's audit journal.
type Auditor interface{ Event(audit.Event) }

// Custody is the node's key as a signer, named per use.
type Custody interface {
	Named(name string) (*keys.CustodySigner, error)
}

// Deps is what the eraser needs of its node.
type Deps struct {
	Name   string // the actor of its audit events
	Dir    string // the node's data directory; receipts live in Dir/erasures
	Policy Policy
	Audit  Auditor
	Logf   func(string, ...any)
	// Self is this node's name in a policy, found by its key ("" if
	// absent).
	Self    func(*policy.State) string
	Custody Custody
	// Media is the node's media store, nil while none is open.
	Media func() *store.Store
	// Retry is how often a failed erasure is tried again (zero: a minute).
	Retry time.Duration
}

// Eraser carries out a store's or a datacenter's erasures.
type Eraser struct {
	d    Deps
	stop chan struct{}
	wake chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex
	receipts map[string][]byte // signed, by request ID
	done     map[string]bool   // requests this run has erased to the end
	holds    map[string]bool   // the holds active at the last pass (loop only)
}

// hashesPerLine is how many segment hashes one audit line lists: an audit
// field holds 1 KiB.
const hashesPerLine = 12

// Start loads the receipts kept in d.Dir and follows the policy until
// Close.
func Start(d Deps) (*Eraser, error) {
	if d.Retry <= 0 {
		d.Retry = time.Minute
	}
	e := &Eraser{d: d, stop: make(chan struct{}), wake: make(chan struct{}, 1), receipts: map[string][]byte{}, done: map[string]bool{}, holds: map[string]bool{}}
	if err := e.load(); err != nil {
		return nil, err
	}
	e.wg.Add(1)
	go e.loop()
	return e, nil
}

// Close stops the eraser.
func (e *Eraser) Close() {
	e.once.Do(func() { close(e.stop) })
	e.wg.Wait()
}

// Nudge asks for a pass now (the media store has just opened).
func (e *Eraser) Nudge() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Eraser) dir() string { return filepath.Join(e.d.Dir, "erasures") }

func (e *Eraser) load() error {
	ents, err := os.ReadDir(e.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("erasure: %w", err)
	}
	if b, err := os.ReadFile(e.holdsPath()); err == nil {
		var ids []string
		if json.Unmarshal(b, &ids) != nil {
			// Unreadable: every active hold is audited again, which
			// costs a line each and loses nothing.
			e.d.Logf("node: erasure: %s is unreadable; active holds are audited again", e.holdsPath())
		}
		for _, id := range ids {
			e.holds[id] = true
		}
	}
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".receipt")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.dir(), ent.Name()))
		if err != nil {
			return fmt.Errorf("erasure: %w", err)
		}
		e.receipts[id] = b
	}
	return nil
}

func (e *Eraser) loop() {
	defer e.wg.Done()
	t := time.NewTicker(e.d.Retry)
	defer t.Stop()
	for {
		changed := e.d.Policy.Changed()
		e.pass()
		select {
		case <-e.stop:
			return
		case <-changed:
		case <-e.wake:
		case <-t.C:
		}
	}
}

// pass carries out every erasure of the policy this run has not finished.
// The first pass after a start runs them all again: footage restored from
// a backup made before an erasure is erased again, and the tombstones
// restored with it.
func (e *Eraser) pass() {
	st := e.d.Policy.State()
	s := e.d.Media()
	if st == nil || s == nil {
		return
	}
	self := e.d.Self(st)
	me := st.Nodes[self]
	if me == nil || (me.Role != policy.RoleStore && me.Role != policy.RoleDatacenter) {
		return
	}
	e.noteHolds(st)
	for _, r := range st.Erasures() {
		e.mu.Lock()
		finished := e.done[r.ID]
		e.mu.Unlock()
		if finished {
			continue
		}
		e.erase(st, s, self, me, r)
	}
}

// noteHolds audits the holds that began or ended since the last pass:
// retention keeps their footage from the first and lets it go after the
// second, with nobody signing anything at the end.
func (e *Eraser) noteHolds(st *policy.State) {
	now := time.Now()
	active := map[string]bool{}
	for _, h := range st.ActiveHolds(now) {
		active[h.ID] = true
		if !e.holds[h.ID] {
			e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "hold", Object: h.ID, Decision: audit.Allow,
				Reason: fmt.Sprintf("keeps %s in [%s, %s) past retention until %s: %s", strings.Join(h.Cameras, ","), stamp(h.From), stamp(h.To), stamp(h.Until), h.Purpose)})
		}
	}
	for id := range e.holds {
		if !active[id] {
			e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "hold-ended", Object: id, Decision: audit.Allow,
				Reason: "retention applies to its footage again"})
		}
	}
	if !maps.Equal(active, e.holds) {
		// Kept across restarts, so a restart audits only what changed
		// while the node was down.
		b, _ := json.Marshal(slices.Sorted(maps.Keys(active)))
		if err := os.MkdirAll(e.dir(), 0o700); err == nil {
			err = writeSync(e.holdsPath()+".tmp", b)
			if err == nil {
				err = os.Rename(e.holdsPath()+".tmp", e.holdsPath())
			}
			if err != nil {
				e.d.Logf("node: erasure: keep the active holds: %v", err)
			}
		}
	}
	e.holds = active
}

// holdsPath keeps the IDs of the holds active at the last pass.
func (e *Eraser) holdsPath() string { return filepath.Join(e.dir(), "holds.json") }

// erase carries out erasure r on s and keeps (and audits) its receipt.
func (e *Eraser) erase(st *policy.State, s *store.Store, self string, me *policy.Node, r *policy.Request) {
	now := time.Now()
	rec := keys.ErasureReceipt{Federation: st.FederationID, Request: r.ID, Node: self, State: keys.ErasureDone, Time: now.UTC()}
	removed := 0
	var errs []string
	cams := slices.Clone(r.Cameras)
	slices.Sort(cams)
	for _, cam := range cams {
		// A store holds its own site's cameras only; a datacenter any.
		if me.Role == policy.RoleStore && !strings.HasPrefix(cam, me.Site+"/") {
			continue
		}
		ec := keys.ErasedCamera{Camera: cam, From: r.From.UTC(), To: r.To.UTC()}
		if err := s.AddTombstone(cam, r.From, r.To); err != nil {
			errs = append(errs, err.Error())
			rec.Cameras = append(rec.Cameras, ec)
			continue
		}
		held := func(m store.SegmentMeta) bool {
			_, ok := st.HoldOn(m.Camera, m.Start, m.End, now)
			return ok
		}
		er, err := s.DeleteRange(cam, r.From, r.To, held)
		if err != nil {
			errs = append(errs, err.Error())
		}
		sums := make([][32]byte, len(er.Segments))
		for i, m := range er.Segments {
			sums[i] = m.SHA256
			ec.Bytes += m.Size
		}
		ec.Segments, ec.Epochs, ec.Held, ec.Digest = len(er.Segments), len(er.Epochs), len(er.Held), keys.SegmentsDigest(sums)
		removed += ec.Segments + ec.Epochs
		rec.Cameras = append(rec.Cameras, ec)
		e.auditCamera(r.ID, ec, er)
	}
	if len(errs) > 0 {
		rec.State, rec.Error = keys.ErasureFailed, strings.Join(errs, "; ")
	}

	e.mu.Lock()
	old := e.receipts[r.ID]
	e.mu.Unlock()
	if rec.State == keys.ErasureDone && removed == 0 && old != nil {
		// A repeated pass that found nothing left keeps the receipt of
		// the pass that did the work.
		if prev, err := e.openOwn(st, self, old); err == nil && prev.State == keys.ErasureDone {
			e.finish(r.ID)
			return
		}
	}
	if err := e.keep(self, &rec); err != nil {
		e.d.Logf("node: erasure %s: receipt: %v", r.ID, err)
		return
	}
	if rec.State == keys.ErasureDone {
		e.finish(r.ID)
		e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "erasure-done", Object: r.ID, Decision: audit.Allow,
			Reason: receiptSummary(&rec)})
		e.d.Logf("node: erasure %s done: %s", r.ID, receiptSummary(&rec))
		return
	}
	e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "erasure-failed", Object: r.ID, Decision: audit.Deny, Reason: rec.Error})
	e.d.Logf("node: erasure %s failed (retrying every %v): %s", r.ID, e.d.Retry, rec.Error)
}

func (e *Eraser) finish(id string) {
	e.mu.Lock()
	e.done[id] = true
	e.mu.Unlock()
}

// auditCamera writes what was removed of one camera: a line with the
// counts and the digest, and the hashes of the segments removed.
func (e *Eraser) auditCamera(id string, ec keys.ErasedCamera, er store.Erased) {
	if ec.Segments == 0 && ec.Epochs == 0 && ec.Held == 0 {
		return
	}
	obj := id + " " + ec.Camera
	e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "erase", Object: obj, Decision: audit.Allow,
		Reason: fmt.Sprintf("erasure of [%s, %s): %d segments (%d bytes), %d epoch keys destroyed, %d held; sha256 of the segments' hashes %s",
			stamp(ec.From), stamp(ec.To), ec.Segments, ec.Bytes, ec.Epochs, ec.Held, ec.Digest)})
	for i := 0; i < len(er.Segments); i += hashesPerLine {
		part := er.Segments[i:min(i+hashesPerLine, len(er.Segments))]
		hs := make([]string, len(part))
		for j, m := range part {
			hs[j] = fmt.Sprintf("%x", m.SHA256)
		}
		e.d.Audit.Event(audit.Event{Actor: e.d.Name, Action: "erase-segments", Object: obj, Decision: audit.Allow,
			Reason: fmt.Sprintf("%d-%d of %d: %s", i+1, i+len(part), len(er.Segments), strings.Join(hs, " "))})
	}
}

// keep signs rec and writes it to Dir/erasures/ID.receipt.
func (e *Eraser) keep(self string, rec *keys.ErasureReceipt) error {
	signer, err := e.d.Custody.Named(self)
	if err != nil {
		return err
	}
	b, err := keys.SealErasureReceipt(signer, rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(e.dir(), 0o700); err != nil {
		return err
	}
	path := filepath.Join(e.dir(), rec.Request+".receipt")
	tmp := path + ".tmp"
	if err := writeSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	e.mu.Lock()
	e.receipts[rec.Request] = b
	e.mu.Unlock()
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// openOwn checks a receipt this node kept against its own key in st.
func (e *Eraser) openOwn(st *policy.State, self string, b []byte) (*keys.ErasureReceipt, error) {
	return Open(st, self, "", b)
}

// Receipt is this node's signed receipt of erasure id, if it has one.
func (e *Eraser) Receipt(id string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.receipts[id]
	return b, ok
}

// Open checks b as node's receipt in st's federation, of request id when
// id is not empty, signed with node's key in st.
func Open(st *policy.State, node, id string, b []byte) (*keys.ErasureReceipt, error) {
	nd := st.Nodes[node]
	if nd == nil {
		return nil, fmt.Errorf("node %q is not in the policy", node)
	}
	pub, err := keys.ParseNodePublic(nd.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	r, err := keys.OpenErasureReceipt(b, pub)
	if err != nil {
		return nil, fmt.Errorf("%s's receipt: %w", node, err)
	}
	switch {
	case r.Node != node:
		return nil, fmt.Errorf("%s's receipt names node %q", node, r.Node)
	case r.Federation != st.FederationID:
		return nil, fmt.Errorf("%s's receipt is of federation %q, not %q", node, r.Federation, st.FederationID)
	case id != "" && r.Request != id:
		return nil, fmt.Errorf("%s's receipt is of request %q, not %q", node, r.Request, id)
	}
	return r, nil
}

func receiptSummary(r *keys.ErasureReceipt) string {
	var segs, eps, held int
	var bytes int64
	for _, c := range r.Cameras {
		segs, eps, held, bytes = segs+c.Segments, eps+c.Epochs, held+c.Held, bytes+c.Bytes
	}
	s := fmt.Sprintf("%d segments (%d bytes) and %d epoch keys of %d cameras deleted", segs, bytes, eps, len(r.Cameras))
	if held > 0 {
		s += fmt.Sprintf("; %d segments kept under an evidence hold", held)
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
