package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
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

// recording runs a store's cameras: one media.Recorder for each camera of
// the store's site that the policy gives a source, restarted when its
// source, its credentials or the custodian keys change, stopped when the
// camera leaves the policy or the store stops being a live member. It also
// applies each camera's retention to what the store holds, and audits it.
type recording struct {
	n     *Node
	st    *store.Store
	cfg   RecordingConfig
	wake  chan struct{} // a nudge: credentials changed
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	recs  map[string]*runningRec // guarded by mu; by camera id
	waitn string                 // guarded by mu: why nothing records, if so
}

// RecordingConfig tunes a store's recording; the zero value is production.
type RecordingConfig struct {
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

type runningRec struct {
	key    string // what it was started with; a change restarts it
	rec    *media.Recorder
	live   *media.Live // its live-view ring; closed when it stops
	cancel context.CancelFunc
	done   chan struct{}
}

// MediaDir is where a store keeps its encrypted recordings.
func MediaDir(dir string) string { return filepath.Join(dir, "media") }

func startRecording(n *Node, cfg RecordingConfig) (*recording, error) {
	st, err := openMedia(n, "recordings", store.Options{MinFree: cfg.MinFree})
	if err != nil {
		return nil, err
	}
	if cfg.RetentionEvery <= 0 {
		cfg.RetentionEvery = time.Minute
	}
	r := &recording{n: n, st: st, cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), recs: map[string]*runningRec{}}
	r.reconcile()
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

// openMedia opens the node's media store (a store's recordings, a
// datacenter's replicas) and audits what it repaired after an unclean stop.
func openMedia(n *Node, what string, opts store.Options) (*store.Store, error) {
	st, err := store.Open(MediaDir(n.cfg.Dir), opts)
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", what, err)
	}
	if rec := st.Recovery(); !rec.Empty() {
		n.logf("node: %s: repaired after an unclean stop: %s", what, rec)
		n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: what + "-repaired", Object: MediaDir(n.cfg.Dir), Decision: audit.Allow, Reason: rec.String()})
	}
	return st, nil
}

func (r *recording) close() {
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

func (r *recording) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recording) loop() {
	defer r.wg.Done()
	followPolicy(r.n, r.stop, r.wake, r.cfg.RetentionEvery, r.retain, r.reconcile)
}

// followPolicy runs retain at once and every retainEvery, and reconcile
// on every policy change, every wake and at least every maxReconcileWait
// (a window may open or close with no command), until stop closes. It is
// the life of a store's recorders and of a datacenter's replicas alike.
func followPolicy(n *Node, stop, wake <-chan struct{}, retainEvery time.Duration, retain, reconcile func()) {
	ret := time.NewTicker(retainEvery)
	defer ret.Stop()
	retain()
	for {
		changed := n.policy.Changed()
		select {
		case <-stop:
			return
		case <-changed:
		case <-wake:
		case <-ret.C:
			retain()
		case <-time.After(maxReconcileWait):
		}
		reconcile()
	}
}

// reconcile makes the running recorders match the policy.
func (r *recording) reconcile() {
	st := r.n.policy.State()
	if r.n.repl != nil {
		r.n.repl.RefuseOutside(st)
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
			r.n.logf("node: camera %s: %v", id, err)
			r.n.auditEvent(audit.Event{Actor: r.n.cfg.Name, Action: "recording-start", Object: id, Decision: audit.Deny, Reason: err.Error()})
		}
	}
}

type wantRec struct {
	key        string
	source     string             // the policy's URL, without credentials
	cred       source.Credentials // from camera-secrets.json
	custodians []keys.Custodian
	signer     *keys.CustodySigner // this store's seal, under its policy name
}

// desired lists the cameras this node should record now, or says why none.
func (r *recording) desired(st *policy.State) (map[string]wantRec, string) {
	self := NameByKey(st, r.n.mesh.PublicKey().String())
	me := st.Nodes[self]
	if me == nil || me.Role != policy.RoleStore || !policy.Member(st, self, time.Now()) {
		return nil, "this node is not a live store in the policy"
	}
	custodians, err := custodiansOf(st)
	if err != nil {
		return nil, err.Error()
	}
	secrets, err := loadCameraSecrets(r.n.cfg.Dir)
	if err != nil {
		return nil, err.Error()
	}
	h := sha256.New()
	for _, c := range custodians {
		fp := c.Fingerprint()
		h.Write(fp[:])
	}
	custodianSum := hex.EncodeToString(h.Sum(nil))
	signer, err := r.n.custody.Named(self)
	if err != nil {
		return nil, err.Error()
	}
	want := map[string]wantRec{}
	for id, cam := range st.Cameras {
		if cam.Site != me.Site || cam.Source == "" {
			continue
		}
		sec := secrets[id]
		sum := sha256.Sum256(fmt.Appendf(nil, "%q %q %q %s", cam.Source, sec.User, sec.Password, custodianSum))
		want[id] = wantRec{key: hex.EncodeToString(sum[:]), source: cam.Source, cred: sec.credentials(), custodians: custodians, signer: signer}
	}
	return want, ""
}

// custodiansOf returns whom epoch keys are split to: every live datacenter
// with a custodian key in a jurisdiction the policy keeps data in (a share
// is data: DESIGN §4 invariant 9), and the controller's recovery key.
func custodiansOf(st *policy.State) ([]keys.Custodian, error) {
	var out []keys.Custodian
	names := make([]string, 0, len(st.Nodes))
	for name := range st.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		nd := st.Nodes[name]
		if nd.Role != policy.RoleDatacenter || nd.Revoked || nd.Custodian == nil || !st.DataJurisdictionAllowed(nd.Jurisdiction) {
			continue
		}
		c, err := keys.NewCustodian(name, nd.Custodian)
		if err != nil {
			return nil, fmt.Errorf("custodian key of %s: %w", name, err)
		}
		out = append(out, c)
	}
	if st.Recovery != nil {
		c, err := keys.NewCustodian("recovery", st.Recovery)
		if err != nil {
			return nil, fmt.Errorf("recovery key: %w", err)
		}
		out = append(out, c)
	}
	if len(out) < keys.EpochThreshold {
		return nil, fmt.Errorf("waiting for custodian keys: %d known, recording needs %d (the datacenters' and the recovery key)", len(out), keys.EpochThreshold)
	}
	return out, nil
}

func (r *recording) startLocked(id string, w wantRec) error {
	src, err := source.Open(w.source, source.Options{Logger: r.logger(), Credentials: w.cred})
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
			r.n.auditEvent(audit.Event{Actor: r.n.cfg.Name, Action: string(e.Kind), Object: e.Camera, Decision: d, Reason: e.Detail})
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
			r.n.logf("node: camera %s stopped: %v", id, err)
		}
	}()
	r.recs[id] = rr
	return nil
}

func (r *recording) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(logfWriter(r.n.logf), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// retain deletes what is past each camera's retention, and audits it. A
// camera gone from the policy keeps the default retention: its footage is
// erased on schedule, never kept forever and never dropped at once.
func (r *recording) retain() { retainStore(r.n, r.st) }

// retainStore applies retention to a store's recordings or a datacenter's
// replicas alike.
func retainStore(n *Node, s *store.Store) {
	st := n.policy.State()
	cams, err := s.Cameras()
	if err != nil {
		n.logf("node: retention: %v", err)
		return
	}
	now := time.Now()
	for _, id := range cams {
		keep := policy.DefaultRetention
		if c := st.Cameras[id]; c != nil && c.Retention > 0 {
			keep = c.Retention
		}
		d, err := media.Retain(s, id, keep, now)
		if err != nil {
			n.logf("node: retention: %v", err)
			n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "erase", Object: id, Decision: audit.Deny, Reason: err.Error()})
			continue
		}
		if d.Segments > 0 || d.Epochs > 0 || d.Damaged > 0 {
			n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "erase", Object: id, Decision: audit.Allow,
				Reason: fmt.Sprintf("retention %v: %d segments (%d bytes, %s to %s) and %d epoch keys deleted",
					keep, d.Segments, d.Bytes, d.From.UTC().Format(time.RFC3339), d.To.UTC().Format(time.RFC3339), d.Epochs)})
		}
	}
}

// CameraStatus is one camera on a store, for status and `custos cameras`.
type CameraStatus = media.RecorderStats

// RecordingStatus is a store's recording state.
type RecordingStatus struct {
	Waiting string         `json:"waiting,omitempty"` // why nothing records, if so
	Disk    store.Health   `json:"disk"`
	Cameras []CameraStatus `json:"cameras"`
}

func (r *recording) status() *RecordingStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &RecordingStatus{Waiting: r.waitn, Disk: r.st.Health()}
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

// liveHub is camera's live-view ring, if it records here now.
func (r *recording) liveHub(camera string) *media.Live {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rr := r.recs[camera]; rr != nil {
		return rr.live
	}
	return nil
}

// cameraSecretsChanged restarts recorders whose credentials changed.
func (n *Node) cameraSecretsChanged() {
	if n.rec != nil {
		n.rec.nudge()
	}
}

// logfWriter adapts a Logf to slog's text handler.
type logfWriter func(string, ...any)

func (l logfWriter) Write(p []byte) (int, error) {
	l("%s", string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}
