package node

// The controller's recovery key stands in for a missing datacenter
// (DESIGN §7, issue 5 item 2). `custos recover-shares` runs beside the
// request's node: it asks the node for the epoch records of the request's
// scope (RecoverRecords, fetched from the stores as an export fetches
// them), opens the recovery key's share of each in its own process, seals
// it to the request's one-time key (keys.CustodianKey.ReleaseShare) and
// hands the sealed shares to the node (AddRecoveredShares). The node checks
// that each opens with the request's key, for that request, and is the
// recovery key's, and keeps them in memory beside the key (dropped with it);
// an export then needs one datacenter custodian besides them. The recovery
// key itself never reaches the node process, and nothing here reaches a
// disk.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

const (
	// maxRecoveredShares bounds the shares one request may be handed: a
	// day of 15-minute epochs for 64 cameras.
	maxRecoveredShares = 96 * 64
	// maxSealedShare bounds one sealed share (they are about 300 bytes).
	maxSealedShare = 4 << 10
)

// RecoverRecords returns the epoch records of request id's scope, from its
// cameras' stores, for the recovery key to release its shares of. Only for
// a releasable request of this node whose one-time key this node holds.
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
		out = append(out, recs...)
	}
	return out, nil
}

// AddRecoveredShares keeps the recovery key's shares sealed to request
// id's one-time key, for its export. Every share must open with that key,
// for id, and come from the policy's recovery key; otherwise none is kept.
// It returns how many epochs they cover.
func (n *Node) AddRecoveredShares(id string, sealed [][]byte) (int, error) {
	if n.policy == nil {
		return 0, errNoPolicy
	}
	n2, err := n.addRecovered(n.policy.State(), id, sealed)
	e := audit.Event{Actor: "recovery", Action: "key-release", Object: id, Decision: audit.Allow,
		Reason: fmt.Sprintf("%d shares of the recovery key sealed to the request's one-time key, handed in locally", n2)}
	if err != nil {
		e.Decision, e.Reason = audit.Deny, err.Error()
	}
	n.auditEvent(e)
	return n2, err
}

func (n *Node) addRecovered(st *policy.State, id string, sealed [][]byte) (int, error) {
	if len(sealed) == 0 || len(sealed) > maxRecoveredShares {
		return 0, fmt.Errorf("send 1 to %d sealed shares", maxRecoveredShares)
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
	byEpoch := make(map[string][]byte, len(sealed))
	for i, msg := range sealed {
		if len(msg) > maxSealedShare {
			return 0, fmt.Errorf("share %d: %d bytes, more than a sealed share", i, len(msg))
		}
		c, s, err := rk.OpenShare(msg)
		s.Zero()
		switch {
		case err != nil:
			return 0, fmt.Errorf("share %d: %w", i, err)
		case c.RequestID != r.ID:
			return 0, fmt.Errorf("share %d was released for request %q, not %q", i, c.RequestID, r.ID)
		case c.CustodianFP != rc.Fingerprint():
			return 0, fmt.Errorf("share %d comes from %s, not from the policy's recovery key", i, c.Custodian)
		}
		byEpoch[epochID(c.Camera, c.EpochStart)] = msg
	}
	if !n.relKeys.setRecovered(r.Key, byEpoch) {
		return 0, fmt.Errorf("this node no longer holds the release key of request %q", id)
	}
	return len(byEpoch), nil
}

// useRecovered adds the recovery key's shares of recs (custos
// recover-shares) to shares if the node was handed one for every record:
// together they stand in for one custodian. On any failure none is kept.
func (x *exporter) useRecovered(recs []*keys.EpochRecord, shares [][]keys.Share) bool {
	sealed := make([][]byte, len(recs))
	for i, rec := range recs {
		if sealed[i] = x.n.relKeys.recoveredShare(x.r.Key, epochID(rec.Camera, rec.Start)); sealed[i] == nil {
			return false
		}
	}
	if err := x.openInto(sealed, recs, shares); err != nil {
		x.n.logf("node: export %s: the recovery key's shares: %v", x.r.ID, err)
		return false
	}
	return true
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
// dir, it releases the recovery key's share of every epoch in request id's
// scope to the request's one-time key, in this process, and hands the
// sealed shares to the node. The caller loads and wipes rk. It returns how
// many epochs the shares cover.
func RecoverSharesVia(ctx context.Context, dir, id string, rk *keys.CustodianKey) (int, error) {
	st, err := FetchPolicy(ctx, dir)
	if err != nil {
		return 0, err
	}
	r, recipient, err := recoveryTarget(st, id, rk)
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(recoverBody{Request: id})
	var a recoverAnswer
	if err := apiDo(ctx, dir, "POST", "/v1/recover-records", b, &a); err != nil {
		return 0, err
	}
	if len(a.Records) == 0 {
		return 0, fmt.Errorf("the stores hold no epoch records in the scope of request %q", id)
	}
	body := recoveredBody{Request: id, Shares: make([][]byte, len(a.Records))}
	for i, raw := range a.Records {
		if body.Shares[i], err = recoverOne(st, r, rk, recipient, raw); err != nil {
			return 0, fmt.Errorf("epoch record %d: %w", i, err)
		}
	}
	b, _ = json.Marshal(body)
	var got struct {
		Epochs int `json:"epochs"`
	}
	return got.Epochs, apiDo(ctx, dir, "POST", "/v1/recovered-shares", b, &got)
}

// recoveryTarget checks, on the local replica, that rk is the policy's
// recovery key and request id is releasable now; it returns the request and
// its one-time key.
func recoveryTarget(st *policy.State, id string, rk *keys.CustodianKey) (*policy.Request, [32]byte, error) {
	rc, err := keys.NewCustodian("recovery", st.Recovery)
	if err != nil || rc.Fingerprint() != rk.Fingerprint() {
		return nil, [32]byte{}, fmt.Errorf("the key given (%s) is not this federation's recovery key", rk.Fingerprint())
	}
	r, err := st.ReleasableRequest(id, time.Now())
	if err != nil {
		return nil, [32]byte{}, err
	}
	recipient, err := keys.ParseReleasePublicHex(r.Key)
	return r, recipient, err
}

// recoverOne releases rk's share of one record, after checking the record
// is in r's scope (the custodian's check, release.go).
func recoverOne(st *policy.State, r *policy.Request, rk *keys.CustodianKey, recipient [32]byte, raw []byte) ([]byte, error) {
	rec, err := keys.UnmarshalEpochRecord(raw)
	if err != nil {
		return nil, err
	}
	if !st.RequestCovers(r, rec.Camera, rec.Start, rec.End) {
		return nil, fmt.Errorf("%s from %s is outside the scope of request %q; nothing released", rec.Camera, stamp(rec.Start), r.ID)
	}
	return rk.ReleaseShare(rec, r.ID, recipient)
}
