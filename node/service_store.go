package node

// The store's side of a release: it serves the epoch
// records and the encrypted segments of an approved request's scope to the
// node that holds the request's one-time key, and nothing else to anyone.
// Every request is checked before a byte of media is touched: the caller is
// the request's node, the request is releasable after a linearizable read
// of the policy, and the camera and range are in its scope (clipped to it).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy/audit"
)

// scopeQuery is the body of the epochs and segments ops.
type scopeQuery struct {
	Request string    `json:"request"`
	Camera  string    `json:"camera"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// segmentHeader precedes each segment's ciphertext frame in a segments
// response.
type segmentHeader struct {
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

func (q scopeQuery) object() string {
	return fmt.Sprintf("%s %s %s…%s", q.Request, q.Camera, stamp(q.From), stamp(q.To))
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func denied(format string, a ...any) error {
	return &rpc.Error{Code: rpc.Denied, Message: fmt.Sprintf(format, a...)}
}

// authorizeScope decides a store query: it returns the range to serve,
// clipped to the request's, or an rpc error that says why not.
func (n *Node) authorizeScope(ctx context.Context, peer keys.NodePublic, body []byte) (q scopeQuery, caller string, err error) {
	if err := strictJSON(body, &q); err != nil {
		return q, peer.ShortString(), &rpc.Error{Code: rpc.BadRequest, Message: "want {request, camera, from, to}: " + err.Error()}
	}
	if n.media() == nil {
		return q, peer.ShortString(), denied("this node is neither a store nor a datacenter and holds no recordings")
	}
	st, err := n.syncPolicy(ctx)
	if err != nil {
		return q, peer.ShortString(), &rpc.Error{Code: rpc.Unavailable, Message: err.Error()}
	}
	caller, err = n.callerName(st, peer)
	if err != nil {
		return q, peer.ShortString(), err
	}
	r, err := st.ReleasableRequest(q.Request, time.Now())
	if err != nil {
		return q, caller, denied("%v", err)
	}
	if r.Node != caller {
		return q, caller, denied("request %q is released to node %s, not to %s", r.ID, r.Node, caller)
	}
	if !st.RequestCovers(r, q.Camera, q.From, q.To) {
		return q, caller, denied("camera %s from %s to %s is outside the scope of request %q", q.Camera, stamp(q.From), stamp(q.To), r.ID)
	}
	q.From, q.To, _ = r.Clip(q.From, q.To)
	return q, caller, nil
}

// media is the store of encrypted recordings this node serves: a store's
// own, or a datacenter's replicas (playback when the store is offline).
func (n *Node) media() *store.Store {
	switch {
	case n.rec != nil:
		return n.rec.Store()
	case n.replicas != nil:
		return n.replicas.st
	}
	return nil
}

// handleEpochs serves the raw epoch records of the scope, one per frame.
func (n *Node) handleEpochs(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	q, caller, err := n.authorizeScope(ctx, peer, body)
	if err != nil {
		n.auditServe(caller, "serve-epochs", q.object(), err, "")
		return err
	}
	metas, err := n.media().Epochs(q.Camera, q.From, q.To)
	if err != nil {
		return fmt.Errorf("listing epoch records: %w", err)
	}
	for _, m := range metas {
		rec, err := n.media().Epoch(q.Camera, m.Start)
		if err != nil {
			return fmt.Errorf("reading epoch record: %w", err)
		}
		if err := w.WriteFrame(rec); err != nil {
			return err
		}
	}
	n.auditServe(caller, "serve-epochs", q.object(), nil, fmt.Sprintf("%d epoch records", len(metas)))
	return nil
}

// handleSegments streams the scope's segments: for each, a header frame
// then the ciphertext frame, by start time. A segment that overlaps the
// scope is served whole (it is one encrypted message); the requester trims.
func (n *Node) handleSegments(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	q, caller, err := n.authorizeScope(ctx, peer, body)
	if err != nil {
		n.auditServe(caller, "serve-segments", q.object(), err, "")
		return err
	}
	if err := n.auditReady(caller, "serve-segments", q.object()); err != nil {
		return err
	}
	metas, err := n.media().Segments(q.Camera, q.From, q.To)
	if err != nil {
		return fmt.Errorf("listing segments: %w", err)
	}
	var sent int64
	for _, m := range metas {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := segmentHeader{Start: m.Start, End: m.End, EpochStart: m.EpochStart, SHA256: hex.EncodeToString(m.SHA256[:])}
		ct, err := n.media().ReadSegment(m)
		if err != nil {
			// One bad copy must not stop an export: say which segment, so
			// the requester reads it from a replica, and raise it here.
			n.noteCorruptSegment(m.Camera, m.Start, err)
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
	n.auditServe(caller, "serve-segments", q.object(), nil, fmt.Sprintf("%d segments, %d bytes of ciphertext", len(metas), sent))
	return nil
}

// strictJSON decodes one JSON value with no unknown fields.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// checkSegmentSum checks ciphertext against the header's SHA-256.
func checkSegmentSum(h segmentHeader, ct []byte) error {
	sum := sha256.Sum256(ct)
	if hex.EncodeToString(sum[:]) != h.SHA256 {
		return fmt.Errorf("segment %s: ciphertext does not match its SHA-256", stamp(h.Start))
	}
	return nil
}

// noteCorruptSegment logs, audits and counts a segment this node holds but
// cannot read intact: footage that is lost here unless a replica has it.
func (n *Node) noteCorruptSegment(camera string, start time.Time, err error) {
	n.corruptSegments.Add(1)
	n.logf("node: ALARM: segment %s %s is corrupt on this node: %v", camera, stamp(start), err)
	n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "corrupt-segment", Object: camera + " " + stamp(start),
		Decision: audit.Deny, Reason: err.Error()})
}
