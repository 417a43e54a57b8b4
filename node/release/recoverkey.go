package release

// The recovery key's holder's side (custos recover-shares, in its own
// process beside the request's node): it checks the release itself and
// answers for each segment the node lists, exactly as a datacenter does
// (recover.go says why this is safe).

import (
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// RecoverShares answers with rk, for request r, for every segment of
// records (RecoverRecords' items), sealed to recipient, the request's
// one-time key. The shares it opens are wiped when it returns.
func RecoverShares(st *policy.State, r *policy.Request, rk *keys.CustodianKey, recipient [32]byte, records [][]byte) ([][]byte, error) {
	out := make([][]byte, len(records))
	shares := map[string]*keys.EpochShare{}
	defer func() {
		for _, s := range shares {
			s.Zero()
		}
	}()
	for i, raw := range records {
		var err error
		if out[i], err = recoverOne(st, r, rk, recipient, raw, shares); err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
	}
	return out, nil
}

// RecoveryTarget checks that request id is releasable now and that rk may
// answer for it, and returns the request and its one-time key. It trusts
// the node only for a clear message: the release is then proven from the
// signed ledger and the approvals' signatures, anchored in the federation
// ID fid that the recovery key's holder knows (policy.VerifyRelease), so a
// compromised node cannot feed the holder a forged policy.
func RecoveryTarget(st *policy.State, fid, id string, rk *keys.CustodianKey, now time.Time) (*policy.Request, [32]byte, error) {
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
// is in r's scope (the custodian's check, datacenter.go). shares caches rk's
// opened share per epoch record.
func recoverOne(st *policy.State, r *policy.Request, rk *keys.CustodianKey, recipient [32]byte, raw []byte, shares map[string]*keys.EpochShare) ([]byte, error) {
	var it recoverItem
	if err := rpc.DecodeStrict(raw, &it); err != nil {
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
