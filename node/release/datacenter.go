package release

// Key release (DESIGN §7), the custodian's side. Shares never leave a
// custodian: a datacenter asked by a request's node to open segments checks,
// after a linearizable read of the policy, that the request is releasable
// and that the caller is its node; then, for each segment named, it reads
// the segment from its OWN replica — its span and epoch from its own index,
// its ephemeral key from its own copy of the ciphertext — and refuses the
// whole call if any segment is outside the request's cameras and range
// (RequestCovers on the segment's own span: a segment overlapping the
// range's edge is in scope). For each in-scope segment it answers its share
// of the segment's epoch key times the segment's ephemeral key, with a
// proof, sealed to the request's one-time key (keys.EpochShare.SealPartial).
// The requester never names an epoch or sends a record or ciphertext: what
// a custodian answers for is decided by what it holds.
//
// A segment the datacenter does not hold yet (replication lags) gets the
// one-byte answer notHeld, never an answer computed from bytes the
// requester supplied; the requester asks the next custodian (the other
// datacenter, or the recovery key) for it.
//
// The custodian key is read from its file for the call and wiped when it
// returns; it is never kept in memory between releases.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// ReleaseQuery is the body of the release op: one camera's segments, by
// their start (the store's segment header), in the request's scope.
type ReleaseQuery struct {
	Request  string      `json:"request"`
	Camera   string      `json:"camera"`
	Segments []time.Time `json:"segments"`
}

// releaseBatch is how many segments go in one release call.
const releaseBatch = 32

// notHeld is the answer for a segment this custodian holds no copy of.
var notHeld = []byte{0}

// HandleRelease is the release op: one answer per segment, as one frame
// each, in the query's order; or a refusal of all of them.
func (s *Service) HandleRelease(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q ReleaseQuery
	if err := rpc.DecodeStrict(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {request, camera, segments}: " + err.Error()}
	}
	st, err := s.d.Policy.Sync(ctx)
	if err != nil {
		return &rpc.Error{Code: rpc.Unavailable, Message: err.Error()}
	}
	caller, err := s.d.Peers.Caller(st, peer)
	if err != nil {
		s.d.Audit.Serve(peer.ShortString(), "key-release", q.Request, err, "")
		return err
	}
	sealed, err := s.releasePartials(st, caller, q)
	if err != nil {
		return err
	}
	for _, b := range sealed {
		if err := w.WriteFrame(b); err != nil {
			return err
		}
	}
	return nil
}

// releasePartials is the custodian's decision and work for caller, audited
// either way. Refusals are *rpc.Error with code rpc.Denied.
func (s *Service) releasePartials(st *policy.State, caller string, q ReleaseQuery) ([][]byte, error) {
	sealed, err := s.releaseChecked(st, caller, q)
	detail := ""
	if err == nil {
		held := 0
		for _, b := range sealed {
			if len(b) > 1 {
				held++
			}
		}
		detail = fmt.Sprintf("%s: %d of %d segments answered (sealed to the request's one-time key for node %s), %d not held here",
			q.Camera, held, len(sealed), caller, len(sealed)-held)
	}
	s.d.Audit.Serve(caller, "key-release", q.Request, err, detail)
	return sealed, err
}

func (s *Service) releaseChecked(st *policy.State, caller string, q ReleaseQuery) ([][]byte, error) {
	self := s.d.Peers.Self(st)
	if me := st.Nodes[self]; me == nil || me.Role != policy.RoleDatacenter || me.Custodian == nil {
		return nil, rpc.Deny("this node is not a custodian")
	}
	if err := s.d.Audit.Ready(caller, "key-release", q.Request); err != nil {
		return nil, err
	}
	if len(q.Segments) == 0 || len(q.Segments) > releaseBatch {
		return nil, &rpc.Error{Code: rpc.BadRequest, Message: fmt.Sprintf("send 1 to %d segments per call", releaseBatch)}
	}
	if err := s.fresh(); err != nil {
		return nil, rpc.Deny("%v", err)
	}
	r, err := st.ReleasableRequest(q.Request, s.now())
	if err != nil {
		return nil, rpc.Deny("%v", err)
	}
	if r.Node != caller {
		return nil, rpc.Deny("request %q is released to node %s, not to %s", r.ID, r.Node, caller)
	}
	recipient, err := keys.ParseReleasePublicHex(r.Key)
	if err != nil {
		return nil, fmt.Errorf("request %q: its one-time key: %w", r.ID, err)
	}
	replicas := s.d.Holdings.Replicas()
	if replicas == nil {
		return nil, rpc.Deny("this datacenter keeps no replicas to answer from")
	}
	metas, err := heldSegments(replicas, q)
	if err != nil {
		return nil, err
	}
	// Scope first, for every segment, before any key is touched: on the
	// segment's own span as this node's index has it.
	for i, m := range metas {
		if m != nil && !st.RequestCovers(r, m.Camera, m.Start, m.End) {
			return nil, rpc.Deny("segment %d (%s %s…%s) is outside the scope of request %q; nothing released",
				i, m.Camera, stamp(m.Start), stamp(m.End), r.ID)
		}
	}
	return s.sealPartials(st, replicas, r.ID, recipient, metas)
}

// heldSegments looks up q's segments in this node's own index; nil for
// those it does not hold.
func heldSegments(st Media, q ReleaseQuery) ([]*store.SegmentMeta, error) {
	lo, hi := slices.MinFunc(q.Segments, time.Time.Compare), slices.MaxFunc(q.Segments, time.Time.Compare)
	list, err := st.Segments(q.Camera, lo, hi.Add(time.Nanosecond))
	if err != nil {
		return nil, &rpc.Error{Code: rpc.BadRequest, Message: err.Error()}
	}
	byStart := make(map[int64]*store.SegmentMeta, len(list))
	for i := range list {
		byStart[list[i].Start.UnixNano()] = &list[i]
	}
	out := make([]*store.SegmentMeta, len(q.Segments))
	for i, s := range q.Segments {
		out[i] = byStart[s.UnixNano()]
	}
	return out, nil
}

// sealPartials loads the custodian key and answers each held segment from
// this node's own copy of it and of its epoch record. Both must carry the
// seal of a store of the camera's site (node/custody), checked again
// here although the replica checked them on arrival: a custodian answers
// only for footage a store made, never for a record planted on its disk.
func (s *Service) sealPartials(st *policy.State, media Media, id string, recipient [32]byte, metas []*store.SegmentMeta) ([][]byte, error) {
	ck, err := keys.LoadCustodianKey(s.cfg.CustodianKey)
	if errors.Is(err, os.ErrNotExist) {
		return nil, rpc.Deny("this datacenter holds no custodian key")
	}
	if err != nil {
		return nil, fmt.Errorf("custodian key: %w", err)
	}
	defer ck.Zero()
	shares := map[int64]*keys.EpochShare{}
	epochs := map[int64]*keys.SealedEpoch{}
	defer func() {
		for _, es := range shares {
			es.Zero()
		}
	}()
	out := make([][]byte, len(metas))
	for i, m := range metas {
		if m == nil {
			out[i] = notHeld
			continue
		}
		es := shares[m.EpochStart.Unix()]
		if es == nil {
			raw, err := media.Epoch(m.Camera, m.EpochStart)
			if errors.Is(err, store.ErrNotFound) {
				out[i] = notHeld
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("segment %d: epoch record: %w", i, err)
			}
			ep, err := custody.VerifyEpoch(st, m.Camera, raw)
			if err != nil {
				return nil, rpc.Deny("segment %d: epoch record: %v; nothing released", i, err)
			}
			if es, err = ck.Share(ep.Record); err != nil {
				return nil, fmt.Errorf("segment %d: %w", i, err)
			}
			shares[m.EpochStart.Unix()], epochs[m.EpochStart.Unix()] = es, ep
		}
		sealed, err := media.ReadSegment(*m)
		if errors.Is(err, store.ErrNotFound) {
			out[i] = notHeld // removed by retention since the listing
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		g, err := custody.VerifySegment(st, m.Camera, sealed, epochs[m.EpochStart.Unix()])
		if err == nil && (!g.Link.Start.Equal(m.Start) || !g.Link.End.Equal(m.End)) {
			err = fmt.Errorf("its signed span is %s…%s: %w", stamp(g.Link.Start), stamp(g.Link.End), custody.ErrBroken)
		}
		if err != nil {
			return nil, rpc.Deny("segment %s %s: %v; nothing released", m.Camera, stamp(m.Start), err)
		}
		out[i], err = es.SealPartial(id, keys.SegmentRef{Camera: m.Camera, Start: m.Start, End: m.End}, g.Ciphertext, recipient)
		if err != nil {
			return nil, fmt.Errorf("segment %s %s: %w", m.Camera, stamp(m.Start), err)
		}
	}
	return out, nil
}
