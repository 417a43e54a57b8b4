package node

// Key release (DESIGN §7, issue 5 item 2), the custodian's side: a
// datacenter asked by a request's node for its shares of the epoch keys in
// the request's scope checks, after a linearizable read of the policy, that
// the request is releasable and that the caller is its node, then opens its
// share of each epoch record (each must be in scope: RequestCovers on the
// record's own camera and span, which the share is bound to) and seals it to
// the request's one-time key. The custodian key is read from its file for
// the call and wiped when it returns; it is never kept in memory between
// releases.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// releaseQuery is the body of the release op.
type releaseQuery struct {
	Request string   `json:"request"`
	Records [][]byte `json:"records"` // epoch records, as the store keeps them
}

// releaseBatch is how many records go in one release call (the rpc body
// is at most 64 KiB; a record's base64 is about 1 KiB).
const releaseBatch = 32

// handleRelease is the release op: one sealed share per record, as one
// frame each, in the records' order; or a refusal of all of them.
func (n *Node) handleRelease(ctx context.Context, peer keys.NodePublic, body []byte, w *rpcWriter) error {
	var q releaseQuery
	if err := strictJSON(body, &q); err != nil {
		return &rpcError{Code: rpcBadRequest, Message: "want {request, records}: " + err.Error()}
	}
	st, err := n.syncPolicy(ctx)
	if err != nil {
		return &rpcError{Code: rpcUnavailable, Message: err.Error()}
	}
	caller, err := n.callerName(st, peer)
	if err != nil {
		n.auditServe(peer.ShortString(), "key-release", q.Request, err, "")
		return err
	}
	sealed, err := n.releaseShares(st, caller, q)
	if err != nil {
		return err
	}
	for _, s := range sealed {
		if err := w.WriteFrame(s); err != nil {
			return err
		}
	}
	return nil
}

// releaseShares is the custodian's decision and work for caller, audited
// either way. Refusals are *rpcError with code rpcDenied.
func (n *Node) releaseShares(st *policy.State, caller string, q releaseQuery) ([][]byte, error) {
	sealed, err := n.releaseChecked(st, caller, q)
	detail := ""
	if err == nil {
		detail = fmt.Sprintf("%d shares sealed to the request's one-time key for node %s", len(sealed), caller)
	}
	n.auditServe(caller, "key-release", q.Request, err, detail)
	return sealed, err
}

func (n *Node) releaseChecked(st *policy.State, caller string, q releaseQuery) ([][]byte, error) {
	self := n.selfName(st)
	if me := st.Nodes[self]; me == nil || me.Role != policy.RoleDatacenter || me.Custodian == nil {
		return nil, denied("this node is not a custodian")
	}
	if len(q.Records) == 0 || len(q.Records) > releaseBatch {
		return nil, &rpcError{Code: rpcBadRequest, Message: fmt.Sprintf("send 1 to %d epoch records per call", releaseBatch)}
	}
	r, err := st.ReleasableRequest(q.Request, time.Now())
	if err != nil {
		return nil, denied("%v", err)
	}
	if r.Node != caller {
		return nil, denied("request %q is released to node %s, not to %s", r.ID, r.Node, caller)
	}
	recipient, err := keys.ParseReleasePublicHex(r.Key)
	if err != nil {
		return nil, fmt.Errorf("request %q: its one-time key: %w", r.ID, err)
	}
	recs := make([]*keys.EpochRecord, len(q.Records))
	for i, b := range q.Records {
		rec, err := keys.UnmarshalEpochRecord(b)
		if err != nil {
			return nil, &rpcError{Code: rpcBadRequest, Message: fmt.Sprintf("record %d: %v", i, err)}
		}
		if !st.RequestCovers(r, rec.Camera, rec.Start, rec.End) {
			return nil, denied("record %d (%s from %s) is outside the scope of request %q; nothing released", i, rec.Camera, stamp(rec.Start), r.ID)
		}
		recs[i] = rec
	}
	return n.sealShares(r.ID, recipient, recs)
}

// sealShares loads the custodian key, releases a share of each record and
// wipes the key.
func (n *Node) sealShares(id string, recipient [32]byte, recs []*keys.EpochRecord) ([][]byte, error) {
	ck, err := keys.LoadCustodianKey(CustodianKeyPath(n.cfg.Dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, denied("this datacenter holds no custodian key")
	}
	if err != nil {
		return nil, fmt.Errorf("custodian key: %w", err)
	}
	defer ck.Zero()
	out := make([][]byte, len(recs))
	for i, rec := range recs {
		if out[i], err = ck.ReleaseShare(rec, id, recipient); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return out, nil
}
