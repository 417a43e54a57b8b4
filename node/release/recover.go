package release

// The controller's recovery key stands in for a missing datacenter
// (DESIGN §7). `custos recover-shares` runs beside the request's node: it
// asks the node for the segments of the request's scope (RecoverRecords:
// for each, its camera, span, epoch record and PKESK, fetched from the
// stores as an export fetches them), checks each segment's span against the
// request's scope itself, answers for each in its own process exactly as a
// datacenter does (keys.EpochShare.SealPartial: its share times the
// segment's ephemeral key, proved, sealed to the request's one-time key)
// and hands the sealed answers to the node (AddRecoveredShares). The node
// checks that each opens with the request's key, for that request, and is
// the recovery key's, and keeps them in memory beside the key (dropped with
// it); an export checks each answer's proof and still needs one
// datacenter's answer per segment besides. The recovery key itself never
// reaches the node process, no share leaves it, and nothing here reaches a
// disk.
//
// The recovery custodian has no replica of its own: the segments' spans and
// ephemeral keys come through the requesting node. An answer for a segment
// the node misdescribed opens nothing alone — the datacenter answering
// beside it reads the segment from its own replica and checks its span
// itself — which is why the node must never be handed both.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

const (
	// MaxRecoveredShares bounds the answers one request may be handed: a
	// day of 4-second segments of 8 cameras.
	MaxRecoveredShares = 8 * 86400 / 4
	// MaxSealedShare bounds one sealed answer (they are about 400 bytes).
	MaxSealedShare = 4 << 10
)

// recoverItem is one segment of the scope as RecoverRecords hands it to
// the recovery custodian: what it needs to answer for it.
type recoverItem struct {
	Camera string    `json:"camera"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Record []byte    `json:"record"` // the segment's sealed epoch record
	PKESK  []byte    `json:"pkesk"`  // the head of the segment's ciphertext
}

// pkeskHead is how much of a segment's ciphertext carries its PKESK.
const pkeskHead = 111

// RecoverRecords returns the segments of request id's scope, from its
// cameras' stores, each a JSON recoverItem, for the recovery key to answer
// for. Only for a releasable request of this node whose one-time key this
// node holds. It stops when ctx or clients ends.
func (s *Service) RecoverRecords(ctx, clients context.Context, id string) ([][]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(clients, cancel)()
	st, err := s.d.Policy.Sync(ctx)
	if err != nil {
		return nil, err
	}
	r, rk, err := s.exportable(st, id)
	if err != nil {
		return nil, err
	}
	x := &exporter{s: s, st: st, r: r, rk: rk}
	var out [][]byte
	for _, cam := range r.Cameras {
		recs, err := x.fetchEpochs(ctx, cam)
		if err != nil {
			return nil, err
		}
		byStart := map[int64]*keys.SealedEpoch{}
		for _, b := range recs {
			e, err := custody.VerifyEpoch(st, cam, b)
			if err != nil {
				return nil, fmt.Errorf("epoch record from the store: %w", err)
			}
			byStart[e.Record.Start.Unix()] = e
		}
		items, err := x.scopeSegments(ctx, cam, byStart)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

// scopeSegments lists camera's segments in scope as recoverItems.
func (x *exporter) scopeSegments(ctx context.Context, cam string, records map[int64]*keys.SealedEpoch) ([][]byte, error) {
	rd, conn, err := x.scopeCall(ctx, cam, OpSegments)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	var out [][]byte
	for {
		hb, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var h SegmentHeader
		if len(hb) > maxSegmentHeader || rpc.DecodeStrict(hb, &h) != nil {
			return nil, errors.New("store sent a bad segment header")
		}
		ct, err := rd.Next()
		if err != nil {
			return nil, rpc.NoEOF(err)
		}
		if err := checkSegmentSum(h, ct); err != nil {
			return nil, err
		}
		ep := records[h.EpochStart.Unix()]
		if ep == nil {
			continue // its epoch is outside the scope (see exporter.camera)
		}
		g, err := custody.VerifySegment(x.st, cam, ct, ep)
		if err != nil {
			return nil, err
		}
		if len(g.Ciphertext) < pkeskHead {
			return nil, fmt.Errorf("segment %s %s: too short to hold its PKESK", cam, stamp(h.Start))
		}
		b, _ := json.Marshal(recoverItem{Camera: cam, Start: g.Link.Start, End: g.Link.End, Record: ep.Bytes(), PKESK: g.Ciphertext[:pkeskHead]})
		out = append(out, b)
	}
}

// AddRecoveredShares keeps the recovery key's answers sealed to request
// id's one-time key, for its export. Every answer must open with that key,
// for id, and come from the policy's recovery key; otherwise none is kept.
// It returns how many segments they cover.
func (s *Service) AddRecoveredShares(id string, sealed [][]byte) (int, error) {
	n2, err := s.addRecovered(s.d.Policy.State(), id, sealed)
	e := audit.Event{Actor: "recovery", Action: "key-release", Object: id, Decision: audit.Allow,
		Reason: fmt.Sprintf("the recovery key's answers for %d segments sealed to the request's one-time key, handed in locally", n2)}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	s.d.Audit.Event(e)
	return n2, err
}

func (s *Service) addRecovered(st *policy.State, id string, sealed [][]byte) (int, error) {
	if len(sealed) == 0 || len(sealed) > MaxRecoveredShares {
		return 0, fmt.Errorf("send 1 to %d sealed answers", MaxRecoveredShares)
	}
	if st.Recovery == nil {
		return 0, errors.New("the policy names no recovery key")
	}
	rc, err := keys.NewCustodian("recovery", st.Recovery)
	if err != nil {
		return 0, fmt.Errorf("the policy's recovery key: %w", err)
	}
	r, rk, err := s.exportable(st, id)
	if err != nil {
		return 0, err
	}
	bySegment := make(map[string][]byte, len(sealed))
	for i, msg := range sealed {
		if len(msg) > MaxSealedShare {
			return 0, fmt.Errorf("answer %d: %d bytes, more than a sealed answer", i, len(msg))
		}
		c, err := rk.ReleasedContext(msg)
		switch {
		case err != nil:
			return 0, fmt.Errorf("answer %d: %w", i, err)
		case c.RequestID != r.ID:
			return 0, fmt.Errorf("answer %d was released for request %q, not %q", i, c.RequestID, r.ID)
		case c.CustodianFP != rc.Fingerprint():
			return 0, fmt.Errorf("answer %d comes from %s, not from the policy's recovery key", i, c.Custodian)
		}
		bySegment[segmentID(c.Camera, c.SegmentStart)] = msg
	}
	if !s.d.Keys.setRecovered(r.Key, bySegment) {
		return 0, fmt.Errorf("this node no longer holds the release key of request %q", id)
	}
	return len(bySegment), nil
}
