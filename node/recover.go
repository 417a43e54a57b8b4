package node

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
	// maxRecoveredShares bounds the answers one request may be handed: a
	// day of 4-second segments of 8 cameras.
	maxRecoveredShares = 8 * 86400 / 4
	// maxSealedShare bounds one sealed answer (they are about 400 bytes).
	maxSealedShare = 4 << 10
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
// node holds.
func (n *Node) RecoverRecords(ctx context.Context, id string) ([][]byte, error) {
	if n.svc == nil {
		return nil, errNoPolicy
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.svc.ctx, cancel)()
	st, err := n.syncPolicy(ctx)
	if err != nil {
		return nil, err
	}
	r, rk, err := n.exportable(st, id)
	if err != nil {
		return nil, err
	}
	x := &exporter{n: n, st: st, r: r, rk: rk}
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
	rd, conn, err := x.scopeCall(ctx, cam, opSegments)
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
		var h segmentHeader
		if len(hb) > maxSegmentHeader || strictJSON(hb, &h) != nil {
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
func (n *Node) AddRecoveredShares(id string, sealed [][]byte) (int, error) {
	if n.policy == nil {
		return 0, errNoPolicy
	}
	n2, err := n.addRecovered(n.policy.State(), id, sealed)
	e := audit.Event{Actor: "recovery", Action: "key-release", Object: id, Decision: audit.Allow,
		Reason: fmt.Sprintf("the recovery key's answers for %d segments sealed to the request's one-time key, handed in locally", n2)}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	n.auditEvent(e)
	return n2, err
}

func (n *Node) addRecovered(st *policy.State, id string, sealed [][]byte) (int, error) {
	if len(sealed) == 0 || len(sealed) > maxRecoveredShares {
		return 0, fmt.Errorf("send 1 to %d sealed answers", maxRecoveredShares)
	}
	if st.Recovery == nil {
		return 0, errors.New("the policy names no recovery key")
	}
	rc, err := keys.NewCustodian("recovery", st.Recovery)
	if err != nil {
		return 0, fmt.Errorf("the policy's recovery key: %w", err)
	}
	r, rk, err := n.exportable(st, id)
	if err != nil {
		return 0, err
	}
	bySegment := make(map[string][]byte, len(sealed))
	for i, msg := range sealed {
		if len(msg) > maxSealedShare {
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
	if !n.relKeys.setRecovered(r.Key, bySegment) {
		return 0, fmt.Errorf("this node no longer holds the release key of request %q", id)
	}
	return len(bySegment), nil
}

// recoverBody and recoverAnswer are POST /v1/recover-records's;
// recoveredBody is POST /v1/recovered-shares's.
type recoverBody struct {
	Request string `json:"request"`
}

type recoverAnswer struct {
	Records [][]byte `json:"records"`
}

type recoveredBody struct {
	Request string   `json:"request"`
	Shares  [][]byte `json:"shares"`
}

// RecoverSharesVia is custos recover-shares: through the node running in
// dir, it answers with the recovery key for every segment in request id's
// scope, sealed to the request's one-time key, in this process, and hands
// the sealed answers to the node. The caller loads and wipes rk. It returns
// how many segments the answers cover.
func RecoverSharesVia(ctx context.Context, dir, fid, id string, rk *keys.CustodianKey) (int, error) {
	st, err := FetchPolicy(ctx, dir)
	if err != nil {
		return 0, err
	}
	r, recipient, err := recoveryTarget(st, fid, id, rk, time.Now())
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(recoverBody{Request: id})
	var a recoverAnswer
	if err := apiDo(ctx, dir, "POST", "/v1/recover-records", b, &a); err != nil {
		return 0, err
	}
	if len(a.Records) == 0 {
		return 0, fmt.Errorf("the stores hold no segments in the scope of request %q", id)
	}
	body := recoveredBody{Request: id, Shares: make([][]byte, len(a.Records))}
	shares := map[string]*keys.EpochShare{}
	defer func() {
		for _, s := range shares {
			s.Zero()
		}
	}()
	for i, raw := range a.Records {
		if body.Shares[i], err = recoverOne(st, r, rk, recipient, raw, shares); err != nil {
			return 0, fmt.Errorf("segment %d: %w", i, err)
		}
	}
	b, _ = json.Marshal(body)
	var got struct {
		Epochs int `json:"epochs"`
	}
	return got.Epochs, apiDo(ctx, dir, "POST", "/v1/recovered-shares", b, &got)
}

// recoveryTarget checks that request id is releasable now and that rk may
// answer for it, and returns the request and its one-time key. It trusts
// the node only for a clear message: the release is then proven from the
// signed ledger and the approvals' signatures, anchored in the federation
// ID fid that the recovery key's holder knows (policy.VerifyRelease), so a
// compromised node cannot feed the holder a forged policy.
func recoveryTarget(st *policy.State, fid, id string, rk *keys.CustodianKey, now time.Time) (*policy.Request, [32]byte, error) {
	if r := st.Requests[id]; r != nil { // the node's word, for an early, clear refusal
		if err := recoveryMayAnswer(st, r, rk); err != nil {
			return nil, [32]byte{}, err
		}
	}
	r, err := st.ReleasableRequest(id, now)
	if err != nil {
		return nil, [32]byte{}, err
	}
	v, err := policy.VerifyRelease(fid, st.Ledger, st.Requests[id], now)
	if err != nil {
		return nil, [32]byte{}, err
	}
	if err := recoveryMayAnswer(v, r, rk); err != nil {
		return nil, [32]byte{}, err
	}
	recipient, err := keys.ParseReleasePublicHex(r.Key)
	return r, recipient, err
}

// recoveryMayAnswer: rk is the recovery key of the verified state v, and
// r's node is no custodian. The recovery key answers for segments as the
// requesting node names them (it holds no replica to check them against);
// a custodian as that node would hold its own share beside those answers
// and could name any segment.
func recoveryMayAnswer(v *policy.State, r *policy.Request, rk *keys.CustodianKey) error {
	rc, err := keys.NewCustodian("recovery", v.Recovery)
	if err != nil || rc.Fingerprint() != rk.Fingerprint() {
		return fmt.Errorf("the key given (%s) is not this federation's recovery key", rk.Fingerprint())
	}
	if n := v.Nodes[r.Node]; n != nil && (n.Custodian != nil || n.Role == policy.RoleDatacenter) {
		return fmt.Errorf("request %q is delivered to %s, a custodian; the recovery key answers only to a node that holds no share (file the request from an admin node)", r.ID, r.Node)
	}
	return nil
}

// recoverOne answers with rk for one segment, after checking the segment
// is in r's scope (the custodian's check, release.go). shares caches rk's
// opened share per epoch record.
func recoverOne(st *policy.State, r *policy.Request, rk *keys.CustodianKey, recipient [32]byte, raw []byte, shares map[string]*keys.EpochShare) ([]byte, error) {
	var it recoverItem
	if err := strictJSON(raw, &it); err != nil {
		return nil, err
	}
	// The seal is checked against the node's policy: the recovery key's
	// holder has no replica of its own, so this catches a record the
	// serving store or datacenter made up, not a node that lies about the
	// stores' keys; the datacenter custodian whose answer is the second
	// one needed checks its own copy against its own policy.
	ep, err := custody.VerifyEpoch(st, it.Camera, it.Record)
	if err != nil {
		return nil, err
	}
	rec := ep.Record
	if rec.Camera != it.Camera || !st.RequestCovers(r, it.Camera, it.Start, it.End) {
		return nil, fmt.Errorf("%s %s…%s is outside the scope of request %q; nothing released", it.Camera, stamp(it.Start), stamp(it.End), r.ID)
	}
	id := epochID(rec.Camera, rec.Start)
	es := shares[id]
	if es == nil {
		if es, err = rk.Share(rec); err != nil {
			return nil, err
		}
		shares[id] = es
	}
	return es.SealPartial(r.ID, keys.SegmentRef{Camera: it.Camera, Start: it.Start, End: it.End}, it.PKESK, recipient)
}
