package replication

// The store's ops: a datacenter's pull (replicate) and its fetch of one
// segment (replicate-get).

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// HandleReplicate serves a datacenter's pull (op replicate); on a node
// that is not a store (r nil) it refuses. It reads the local policy, not
// a linearizable one: a store cut off from consensus must keep replicating
// to the datacenters it can reach (invariant 10), and who may hold replicas
// changes rarely and only by commands every replica applies.
func (r *Source) HandleReplicate(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q replPull
	if err := rpc.DecodeStrict(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {cameras, audit_seq, wait_ms}: " + err.Error()}
	}
	caller, site, err := r.caller(peer)
	if err != nil {
		return err
	}
	r.ack(caller, site, q.Cameras)
	wait := min(time.Duration(q.WaitMS)*time.Millisecond, replMaxWait)
	if q.WaitMS == 0 {
		wait = 0
	}
	deadline := time.Now().Add(wait)
	for {
		sent, err := r.serve(ctx, site, q, w)
		if err != nil || sent > 0 || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(replPollEvery):
		}
	}
}

// caller authorizes a replication request: this node is a store and
// the caller may hold replicas (policy.Authorize, ActReplicate); a refusal
// is audited. It returns the caller and this store's site.
func (r *Source) caller(peer keys.NodePublic) (caller, site string, err error) {
	if r == nil || r.d.Media() == nil {
		return "", "", rpc.Deny("this node is not a store and has nothing to replicate")
	}
	st := r.d.Policy.State()
	if caller, err = r.d.Caller(st, peer); err != nil {
		return "", "", err
	}
	if d := policy.Authorize(st, policy.Subject{Kind: "node", Name: caller}, policy.ActReplicate, "", r.d.now()); !d.Allow {
		r.refuse(caller, errors.New(d.Reason))
		return "", "", rpc.Deny("%s", d.Reason)
	}
	return caller, r.selfSite(st), nil
}

// selfSite is this node's site in st.
func (r *Source) selfSite(st *policy.State) string {
	if me := st.Nodes[r.d.Self(st)]; me != nil {
		return me.Site
	}
	return ""
}

// serve writes one batch of what q lacks: epoch records, then audit
// entries, then segments by start time. It returns how many items it sent.
func (r *Source) serve(ctx context.Context, site string, q replPull, w frameWriter) (int, error) {
	s := r.d.Media()
	cams, err := s.Cameras()
	if err != nil {
		return 0, fmt.Errorf("listing cameras: %w", err)
	}
	sent := 0
	var segs []store.SegmentMeta
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue // only the store's own site's footage leaves it
		}
		held := q.Cameras[cam]
		// Segments are listed before epoch records: a record is durable
		// before any segment encrypted to it, so every segment listed
		// has its record in the list that follows.
		ss, err := s.Segments(cam, after(held.Segment), farFuture)
		if err != nil {
			return sent, err
		}
		eps, err := s.Epochs(cam, after(held.Epoch), farFuture)
		if err != nil {
			return sent, err
		}
		for _, m := range eps {
			if !m.Start.After(held.Epoch) && !held.Epoch.IsZero() {
				continue
			}
			rec, err := s.Epoch(cam, m.Start)
			if err != nil {
				return sent, fmt.Errorf("reading epoch record: %w", err)
			}
			if err := writeItem(w, replItem{Kind: "epoch", Camera: cam, Start: m.Start, End: m.End, SHA256: hex.EncodeToString(m.SHA256[:])}, rec); err != nil {
				return sent, err
			}
			sent++
		}
		for _, m := range ss {
			if held.Segment.IsZero() || m.Start.After(held.Segment) {
				segs = append(segs, m)
			}
		}
	}
	n, err := r.serveAudit(q.AuditSeq, w)
	sent += n
	if err != nil {
		return sent, err
	}
	slices.SortStableFunc(segs, func(a, b store.SegmentMeta) int { return a.Start.Compare(b.Start) })
	var bytes int64
	for i, m := range segs {
		if i == replBatchSegments || bytes >= replBatchBytes {
			break
		}
		h := replItem{Kind: "segment", Camera: m.Camera, Start: m.Start, End: m.End, EpochStart: m.EpochStart,
			SHA256: hex.EncodeToString(m.SHA256[:]), Size: m.Size}
		b, err := json.Marshal(h)
		if err != nil {
			return sent, err
		}
		if err := w.WriteFrame(b); err != nil {
			return sent, err
		}
		bytes += m.Size
		sent++
	}
	return sent, nil
}

// serveAudit writes the journal's entries after seq, as one item (or
// none); it returns how many items it sent.
func (r *Source) serveAudit(seq uint64, w frameWriter) (int, error) {
	// The journal is read from a mark near the datacenter's cursor, and
	// not at all when it holds the head (the usual pull).
	var entries []audit.Entry
	var err error
	if head, _ := r.d.Journal.Head(); head > seq {
		if entries, err = r.d.Journal.After(seq, replBatchAudit); err != nil {
			return 0, fmt.Errorf("reading the audit journal: %w", err)
		}
	}
	if len(entries) == 0 {
		return 0, nil
	}
	var lines []byte
	for _, e := range entries {
		l, err := e.Line()
		if err != nil {
			return 0, err
		}
		lines = append(lines, l...)
	}
	if err := writeItem(w, replItem{Kind: "audit", Count: len(entries)}, lines); err != nil {
		return 0, err
	}
	return 1, nil
}

// HandleReplicateGet serves one segment a datacenter's pull named (op
// replicate-get), paced by the uplink budget. The same rules as the pull:
// a datacenter the policy lets hold replicas, and only this store's own
// site's footage.
func (r *Source) HandleReplicateGet(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q replGet
	if err := rpc.DecodeStrict(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {camera, start, sha256}: " + err.Error()}
	}
	sum, err := hex.DecodeString(q.SHA256)
	if err != nil || len(sum) != 32 {
		return &rpc.Error{Code: rpc.BadRequest, Message: "sha256: want 64 hex digits"}
	}
	caller, site, err := r.caller(peer)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(q.Camera, site+"/") {
		return rpc.Deny("camera %q is not of this store's site %s", q.Camera, site)
	}
	ct, err := r.d.Media().ReadSegment(store.SegmentMeta{Camera: q.Camera, Start: q.Start, SHA256: [32]byte(sum)})
	if err != nil {
		// Gone to retention, or never here: the datacenter's next pull
		// names what there is.
		return fmt.Errorf("segment %s %s: %w", q.Camera, stamp(q.Start), err)
	}
	r.contact(caller)
	if err := r.pace(ctx, len(ct)); err != nil {
		return err
	}
	return w.WriteFrame(ct)
}
