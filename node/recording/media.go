package recording

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// What a store's recorders and a datacenter's replicas share: where the
// media lives, how it is opened, how retention erases it, and the loop that
// follows the policy.

// MediaDir is where a store keeps its encrypted recordings.
func MediaDir(dir string) string { return filepath.Join(dir, "media") }

// OpenMedia opens the node's media store (a store's recordings, a
// datacenter's replicas) and audits what it repaired after an unclean stop.
func OpenMedia(d Deps, what string, opts store.Options) (*store.Store, error) {
	st, err := store.Open(MediaDir(d.Dir), opts)
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", what, err)
	}
	if rec := st.Recovery(); !rec.Empty() {
		d.Logf("node: %s: repaired after an unclean stop: %s", what, rec)
		d.Audit.Event(audit.Event{Actor: d.Name, Action: what + "-repaired", Object: MediaDir(d.Dir), Decision: audit.Allow, Reason: rec.String()})
	}
	return st, nil
}

// FollowPolicy runs retain at once and every retainEvery, and reconcile
// on every policy change, every wake and at least every maxWait (a window
// may open or close with no command), until stop closes. It is the life of
// a store's recorders and of a datacenter's replicas alike. now is the
// node's decision clock: the next window boundary is found by it.
func FollowPolicy(p Policy, now func() time.Time, maxWait time.Duration, stop, wake <-chan struct{}, retainEvery time.Duration, retain, reconcile func()) {
	ret := time.NewTicker(retainEvery)
	defer ret.Stop()
	retain()
	for {
		changed := p.Changed()
		wait := maxWait
		// A window's end (this store's own, or an installer's) is a
		// change no command signals: look again just past it.
		if st, t := p.State(), now(); st != nil {
			if next := policy.NextChange(st, t); !next.IsZero() {
				wait = min(wait, next.Sub(t)+5*time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-changed:
		case <-wake:
		case <-ret.C:
			retain()
		case <-t.C:
		}
		t.Stop()
		reconcile()
	}
}

// RetainStore applies retention to a store's recordings or a datacenter's
// replicas alike.
func RetainStore(d Deps, s *store.Store) {
	st := d.Policy.State()
	cams, err := s.Cameras()
	if err != nil {
		d.Logf("node: retention: %v", err)
		return
	}
	now := time.Now()
	for _, id := range cams {
		keep := policy.DefaultRetention
		if c := st.Cameras[id]; c != nil && c.Retention > 0 {
			keep = c.Retention
		}
		// An evidence hold keeps its footage past retention.
		held := func(m store.SegmentMeta) bool {
			_, ok := st.HoldOn(m.Camera, m.Start, m.End, now)
			return ok
		}
		r, err := media.RetainExcept(s, id, keep, now, held)
		if err != nil {
			d.Logf("node: retention: %v", err)
			d.Audit.Event(audit.Event{Actor: d.Name, Action: "erase", Object: id, Decision: audit.Deny, Reason: err.Error()})
			continue
		}
		if r.Segments > 0 || r.Epochs > 0 || r.Damaged > 0 {
			d.Audit.Event(audit.Event{Actor: d.Name, Action: "erase", Object: id, Decision: audit.Allow,
				Reason: fmt.Sprintf("retention %v: %d segments (%d bytes, %s to %s) and %d epoch keys deleted",
					keep, r.Segments, r.Bytes, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Epochs)})
		}
	}
}

// logfWriter adapts a Logf to slog's text handler.
type logfWriter func(string, ...any)

func (l logfWriter) Write(p []byte) (int, error) {
	l("%s", string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}
