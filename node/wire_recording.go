package node

// The glue between the node and node/recording: the recorder's Deps made of
// the node, and the node's own names for what the room now owns, which the
// API and the datacenter's replicas still call.

import (
	"errors"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// recordingAudit is the node's journal as recording.Auditor.
type recordingAudit struct{ n *Node }

func (a recordingAudit) Event(e audit.Event) { a.n.auditEvent(e) }

// recordingDeps is what the room needs of n.
func (n *Node) recordingDeps() recording.Deps {
	return recording.Deps{
		Name:     n.cfg.Name,
		Dir:      n.cfg.Dir,
		Policy:   n.policy,
		Audit:    recordingAudit{n},
		Logf:     n.logf,
		Now:      n.now,
		SelfName: n.selfName,
		Custody:  n.custody,
		// n.repl is set before the recorders start (node.go) and never
		// after; read at each reconcile as before.
		RefuseOutside: func(st *policy.State) {
			if n.repl != nil {
				n.repl.RefuseOutside(st)
			}
		},
		ReconcileWait: maxReconcileWait,
		Halted: func() string {
			if err := n.notServing(nil, n.now()); err != nil {
				return err.Error()
			}
			return ""
		},
	}
}

// MediaDir is where a store keeps its encrypted recordings.
func MediaDir(dir string) string { return recording.MediaDir(dir) }

// openMedia opens the node's media store (a store's recordings, a
// datacenter's replicas) and audits what it repaired after an unclean stop.
func openMedia(n *Node, what string, opts store.Options) (*store.Store, error) {
	return recording.OpenMedia(n.recordingDeps(), what, opts)
}

// followPolicy is recording.FollowPolicy on n's policy.
func followPolicy(n *Node, stop, wake <-chan struct{}, retainEvery time.Duration, retain, reconcile func()) {
	recording.FollowPolicy(n.policy, n.now, maxReconcileWait, stop, wake, retainEvery, retain, reconcile)
}

// retainStore applies retention to a store's recordings or a datacenter's
// replicas alike.
func retainStore(n *Node, s *store.Store) { recording.RetainStore(n.recordingDeps(), s) }

// SetCameraSecret keeps a camera's credentials on this node, which must be
// the store of the camera's site: nowhere else records it, so nowhere else
// may hold them. An empty user removes them.
func (n *Node) SetCameraSecret(camera string, s recording.CameraSecret) error {
	if err := recording.SetCameraSecret(n.recordingDeps(), n.Policy(), camera, s); err != nil {
		return err
	}
	n.cameraSecretsChanged()
	return nil
}

// cameraSecretsChanged restarts recorders whose credentials changed.
func (n *Node) cameraSecretsChanged() {
	if n.rec != nil {
		n.rec.Nudge()
	}
}

// HeldSegments lists the segments of camera this store holds that overlap
// from…to: the index only (times, sizes, hashes), never a key or a byte of
// media. A node that records nothing holds none.
func (n *Node) HeldSegments(camera string, from, to time.Time) ([]store.SegmentMeta, error) {
	if n.rec == nil {
		return nil, errors.New("node: this node records no cameras")
	}
	return n.rec.Store().Segments(camera, from, to)
}
