package release

// The store's side of a release: it serves the epoch
// records and the encrypted segments of an approved request's scope to the
// node that holds the request's one-time key, and nothing else to anyone.
// Every request is checked before a byte of media is touched: the caller is
// the request's node, the request is releasable after a linearizable read
// of the policy, and the camera and range are in its scope (clipped to it).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy/audit"
)

// ScopeQuery is the body of the epochs and segments ops.
type ScopeQuery struct {
	Request string    `json:"request"`
	Camera  string    `json:"camera"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// SegmentHeader precedes each segment's ciphertext frame in a segments
// response.
type SegmentHeader struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	EpochStart time.Time `json:"epoch_start"`
	SHA256     string    `json:"sha256"` // of the ciphertext, lower-case hex
	// Corrupt says why this node cannot serve the segment it holds (its
	// copy fails its SHA-256, say); no ciphertext frame follows, and the
	// requester reads the segment from another copy.
	Corrupt string `json:"corrupt,omitempty"`
}

// maxSegmentHeader bounds a segment header frame.
const maxSegmentHeader = 1 << 10

func (q ScopeQuery) object() string {
	return fmt.Sprintf("%s %s %s…%s", q.Request, q.Camera, stamp(q.From), stamp(q.To))
}

// frameWriter is what a handler writes its answer to (*rpc.Writer).
type frameWriter interface{ WriteFrame(p []byte) error }

// authorizeScope decides a store query: it returns the range to serve,
// clipped to the request's, or an rpc error that says why not.
func (s *Service) authorizeScope(ctx context.Context, peer keys.NodePublic, body []byte) (q ScopeQuery, caller string, err error) {
	if err := rpc.DecodeStrict(body, &q); err != nil {
		return q, peer.ShortString(), &rpc.Error{Code: rpc.BadRequest, Message: "want {request, camera, from, to}: " + err.Error()}
	}
	if s.d.Holdings.Served() == nil {
		return q, peer.ShortString(), rpc.Deny("this node is neither a store nor a datacenter and holds no recordings")
	}
	st, err := s.d.Policy.Sync(ctx)
	if err != nil {
		return q, peer.ShortString(), &rpc.Error{Code: rpc.Unavailable, Message: err.Error()}
	}
	caller, err = s.d.Peers.Caller(st, peer)
	if err != nil {
		return q, peer.ShortString(), err
	}
	r, err := st.ReleasableRequest(q.Request, s.now())
	if err != nil {
		return q, caller, rpc.Deny("%v", err)
	}
	if r.Node != caller {
		return q, caller, rpc.Deny("request %q is released to node %s, not to %s", r.ID, r.Node, caller)
	}
	if !st.RequestCovers(r, q.Camera, q.From, q.To) {
		return q, caller, rpc.Deny("camera %s from %s to %s is outside the scope of request %q", q.Camera, stamp(q.From), stamp(q.To), r.ID)
	}
	q.From, q.To, _ = r.Clip(q.From, q.To)
	return q, caller, nil
}

// HandleEpochs is the epochs op: it serves the raw epoch records of the
// scope, one per frame.
func (s *Service) HandleEpochs(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	return s.serveEpochs(ctx, peer, body, w)
}

func (s *Service) serveEpochs(ctx context.Context, peer keys.NodePublic, body []byte, w frameWriter) error {
	q, caller, err := s.authorizeScope(ctx, peer, body)
	if err != nil {
		s.d.Audit.Serve(caller, "serve-epochs", q.object(), err, "")
		return err
	}
	media := s.d.Holdings.Served()
	metas, err := media.Epochs(q.Camera, q.From, q.To)
	if err != nil {
		return fmt.Errorf("listing epoch records: %w", err)
	}
	for _, m := range metas {
		rec, err := media.Epoch(q.Camera, m.Start)
		if err != nil {
			return fmt.Errorf("reading epoch record: %w", err)
		}
		if err := w.WriteFrame(rec); err != nil {
			return err
		}
	}
	s.d.Audit.Serve(caller, "serve-epochs", q.object(), nil, fmt.Sprintf("%d epoch records", len(metas)))
	return nil
}

// HandleSegments is the segments op: it streams the scope's segments, for
// each a header frame then the ciphertext frame, by start time. A segment
// that overlaps the scope is served whole (it is one encrypted message);
// the requester trims.
func (s *Service) HandleSegments(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	return s.serveSegments(ctx, peer, body, w)
}

func (s *Service) serveSegments(ctx context.Context, peer keys.NodePublic, body []byte, w frameWriter) error {
	q, caller, err := s.authorizeScope(ctx, peer, body)
	if err != nil {
		s.d.Audit.Serve(caller, "serve-segments", q.object(), err, "")
		return err
	}
	if err := s.d.Audit.Ready(caller, "serve-segments", q.object()); err != nil {
		return err
	}
	media := s.d.Holdings.Served()
	metas, err := media.Segments(q.Camera, q.From, q.To)
	if err != nil {
		return fmt.Errorf("listing segments: %w", err)
	}
	var sent int64
	for _, m := range metas {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := SegmentHeader{Start: m.Start, End: m.End, EpochStart: m.EpochStart, SHA256: hex.EncodeToString(m.SHA256[:])}
		ct, err := media.ReadSegment(m)
		if err != nil {
			// One bad copy must not stop an export: say which segment, so
			// the requester reads it from a replica, and raise it here.
			s.noteCorruptSegment(m.Camera, m.Start, err)
			hdr.Corrupt = "this node's copy cannot be read intact"
			h, _ := json.Marshal(hdr)
			if err := w.WriteFrame(h); err != nil {
				return err
			}
			continue
		}
		h, _ := json.Marshal(hdr)
		if err := w.WriteFrame(h); err != nil {
			return err
		}
		if err := w.WriteFrame(ct); err != nil {
			return err
		}
		sent += int64(len(ct))
	}
	s.d.Audit.Serve(caller, "serve-segments", q.object(), nil, fmt.Sprintf("%d segments, %d bytes of ciphertext", len(metas), sent))
	return nil
}

// checkSegmentSum checks ciphertext against the header's SHA-256.
func checkSegmentSum(h SegmentHeader, ct []byte) error {
	sum := sha256.Sum256(ct)
	if hex.EncodeToString(sum[:]) != h.SHA256 {
		return fmt.Errorf("segment %s: ciphertext does not match its SHA-256", stamp(h.Start))
	}
	return nil
}

// noteCorruptSegment logs, audits and counts a segment this node holds but
// cannot read intact: footage that is lost here unless a replica has it.
func (s *Service) noteCorruptSegment(camera string, start time.Time, err error) {
	s.cfg.Corrupt.Add(1)
	s.cfg.Logf("node: ALARM: segment %s %s is corrupt on this node: %v", camera, stamp(start), err)
	s.d.Audit.Event(audit.Event{Actor: s.cfg.Name, Action: "corrupt-segment", Object: camera + " " + stamp(start),
		Decision: audit.Deny, Reason: err.Error()})
}
