// Package recording owns a store's recording: one media.Recorder for each
// camera of the store's site that the policy gives a source, the media store
// they write to, each camera's retention, and the camera credentials the
// store alone keeps (camsecrets.go). Other parts of the node read the store
// (Recorder.Store) and the live-view rings (Recorder.LiveHub) through its
// methods, never its fields.
//
// It decides nothing about access: who may watch or fetch footage is decided
// by those who serve it. It never imports the node: what it needs of it (the
// policy, the audit journal, the custody signer, replication's refusal of
// what left the policy) comes in Deps, behind interfaces declared here.
package recording

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Config tunes a store's recording; the zero value is production.
type Config struct {
	// Segment cuts segments (zero: about 4 s).
	Segment ts.Config
	// EpochLength of epoch keys (zero: 15 min).
	EpochLength time.Duration
	// RetentionEvery is how often retention runs (zero: a minute).
	RetentionEvery time.Duration
	// MinFree is the space writes leave on the disk (zero: the store's
	// default of 64 MiB).
	MinFree int64
}

// Policy is the node's replica of the policy.
type Policy interface {
	State() *policy.State
	// Changed is closed at the next change of State.
	Changed() <-chan struct{}
}

// Auditor appends to the node's audit journal.
type Auditor interface{ Event(audit.Event) }

// Custody is the node's key as a custody signer, named per use.
type Custody interface {
	Named(name string) (*keys.CustodySigner, error)
}

// Deps is what recording needs of its node.
type Deps struct {
	Name   string // the node's name: the actor of its own audit events
	Dir    string // the node's data directory
	Policy Policy
	Audit  Auditor
	// Now, if set, is the node's decision clock (nil: time.Now).
	Now  func() time.Time
	Logf func(string, ...any)
	// SelfName is this node's name in a policy, found by its key ("" if
	// absent).
	SelfName func(*policy.State) string
	// Custody seals what the store records, under its policy name.
	Custody Custody
	// RefuseOutside, if set, runs first on every reconcile with the policy
	// it reconciles to (replication's store side).
	RefuseOutside func(*policy.State)
	// ReconcileWait bounds the time between reconciliations when nothing
	// signals one.
	ReconcileWait time.Duration
	// Halted, if set, says why the node must record nothing although its
	// policy names it a live store ("" if it may): it learned of its
	// revocation otherwise than through its replica. Nudge after a change.
	Halted func() string
}

// Recorder runs a store's cameras: one media.Recorder for each camera of
// the store's site that the policy gives a source, restarted when its
// source, its credentials or the custodian keys change, stopped when the
// camera leaves the policy or the store stops being a live member. It also
// applies each camera's retention to what the store holds, and audits it.
type Recorder struct {
	d     Deps
	st    *store.Store
	cfg   Config
	wake  chan struct{} // a nudge: credentials changed
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	recs  map[string]*runningRec // guarded by mu; by camera id
	waitn string                 // guarded by mu: why nothing records, if so
}

type runningRec struct {
	key    string // what it was started with; a change restarts it
	rec    *media.Recorder
	live   *media.Live // its live-view ring; closed when it stops
	cancel context.CancelFunc
	done   chan struct{}
}

// Start opens the store's media and starts recording what the policy gives
// it now; Close stops it.
func Start(cfg Config, d Deps) (*Recorder, error) {
	st, err := OpenMedia(d, "recordings", store.Options{MinFree: cfg.MinFree})
	if err != nil {
		return nil, err
	}
	if cfg.RetentionEvery <= 0 {
		cfg.RetentionEvery = time.Minute
	}
	r := &Recorder{d: d, st: st, cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), recs: map[string]*runningRec{}}
	r.reconcile()
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

// Store is the media store the cameras record to.
func (r *Recorder) Store() *store.Store { return r.st }

// Close stops every recorder, then closes the store.
func (r *Recorder) Close() {
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	for id, rr := range r.recs {
		rr.cancel()
		<-rr.done
		delete(r.recs, id)
	}
	r.mu.Unlock()
	r.st.Close()
}

// Nudge makes the recorders follow changed credentials: those whose
// credentials changed restart.
func (r *Recorder) Nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Recorder) loop() {
	defer r.wg.Done()
	FollowPolicy(r.d.Policy, r.now, r.d.ReconcileWait, r.stop, r.wake, r.cfg.RetentionEvery, r.retain, r.reconcile)
}

// reconcile makes the running recorders match the policy.
func (r *Recorder) reconcile() {
	st := r.d.Policy.State()
	if r.d.RefuseOutside != nil {
		r.d.RefuseOutside(st)
	}
	want, why := r.desired(st)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waitn = why
	for id, rr := range r.recs {
		if w, ok := want[id]; !ok || w.key != rr.key {
			rr.cancel()
			<-rr.done
			delete(r.recs, id)
		}
	}
	for id, w := range want {
		if r.recs[id] != nil {
			continue
		}
		if err := r.startLocked(id, w); err != nil {
			r.d.Logf("node: camera %s: %v", id, err)
			r.d.Audit.Event(audit.Event{Actor: r.d.Name, Action: "recording-start", Object: id, Decision: audit.Deny, Reason: err.Error()})
		}
	}
}

func (r *Recorder) startLocked(id string, w wantRec) error {
	opt, err := w.sec.options(func(fp string) error {
		err := learnCameraPin(r.d.Dir, id, w.sec.SetAt, fp)
		if err == nil {
			r.d.Audit.Event(audit.Event{Actor: r.d.Name, Action: "camera-certificate-pinned", Object: id, Decision: audit.Allow, Reason: "trust on first use: " + fp})
		}
		return err
	})
	if err != nil {
		return err
	}
	opt.Logger = r.logger()
	src, err := source.Open(w.source, opt)
	if err != nil {
		return err
	}
	live := media.NewLive(id, media.LiveConfig{})
	rec, err := media.NewRecorder(media.RecorderConfig{
		Camera: id, Source: src, Store: r.st, Custodians: w.custodians, Signer: w.signer, Live: live,
		EpochLength: r.cfg.EpochLength, Segment: r.cfg.Segment, Logger: r.logger(),
		OnEvent: func(e media.Event) {
			d := audit.Allow
			if e.Kind == media.EventSegmentLost || e.Kind == media.EventDiskFull {
				d = audit.Deny
			}
			r.d.Audit.Event(audit.Event{Actor: r.d.Name, Action: string(e.Kind), Object: e.Camera, Decision: d, Reason: e.Detail})
		},
	})
	if err != nil {
		live.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningRec{key: w.key, rec: rec, live: live, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		defer live.Close()
		if err := rec.Run(ctx); err != nil && ctx.Err() == nil {
			r.d.Logf("node: camera %s stopped: %v", id, err)
			if errors.Is(err, source.ErrCertChanged) {
				// An alarm: someone may be in the middle. Recording stays
				// stopped until an operator re-pins (camera add).
				r.d.Audit.Event(audit.Event{Actor: r.d.Name, Action: "camera-certificate-changed", Object: id, Decision: audit.Deny, Reason: err.Error()})
			}
		}
	}()
	r.recs[id] = rr
	return nil
}

func (r *Recorder) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(logfWriter(r.d.Logf), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// retain deletes what is past each camera's retention, and audits it. A
// camera gone from the policy keeps the default retention: its footage is
// erased on schedule, never kept forever and never dropped at once.
func (r *Recorder) retain() { RetainStore(r.d, r.st) }

// CameraStatus is one camera on a store, for status and `custos cameras`.
type CameraStatus = media.RecorderStats

// Status is a store's recording state.
type Status struct {
	Waiting string         `json:"waiting,omitempty"` // why nothing records, if so
	Disk    store.Health   `json:"disk"`
	Cameras []CameraStatus `json:"cameras"`
}

// Status reports the store's disk and every running camera, by id.
func (r *Recorder) Status() *Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &Status{Waiting: r.waitn, Disk: r.st.Health()}
	ids := make([]string, 0, len(r.recs))
	for id := range r.recs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s.Cameras = append(s.Cameras, r.recs[id].rec.Stats())
	}
	return s
}

// LiveHub is camera's live-view ring, if it records here now.
func (r *Recorder) LiveHub(camera string) *media.Live {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rr := r.recs[camera]; rr != nil {
		return rr.live
	}
	return nil
}
