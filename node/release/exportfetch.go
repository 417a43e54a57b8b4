package release

// Fetching an export's footage: the scope's epoch records and segments
// from each camera's store, or from the datacenters' replicas when the
// store is unreachable or its copy is corrupt.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// loadEpochs fetches and checks the epoch records of every camera in scope.
func (x *exporter) loadEpochs(ctx context.Context) error {
	for _, cam := range x.r.Cameras {
		recs, err := x.fetchEpochs(ctx, cam)
		if err != nil {
			return err
		}
		for _, b := range recs {
			// Only a record a store of the camera's site sealed is
			// used, whoever served it (node/custody).
			e, err := custody.VerifyEpoch(x.st, cam, b)
			if err != nil {
				return fmt.Errorf("epoch record of %s as served: %w", cam, err)
			}
			o, err := keys.NewEpochOpener(e.Record)
			if err != nil {
				return err
			}
			x.openers[epochID(cam, e.Record.Start)] = o
			x.epochs[epochID(cam, e.Record.Start)] = e
		}
	}
	return nil
}

// scopeCall runs a store op for camera over the request's range: on the
// camera's store while it is a live member and answers, else on a
// datacenter's replica. A store that answers, even with a refusal, is
// final; a revoked, gone or unreachable store is not the end of its
// footage, which the datacenters hold as the store sealed it.
func (x *exporter) scopeCall(ctx context.Context, camera, op string) (*rpc.Reader, *mesh.QUICConn, error) {
	q := ScopeQuery{Request: x.r.ID, Camera: camera, From: x.r.From, To: x.r.To}
	storeName, err := x.st.StoreOf(camera, time.Now())
	if err == nil {
		rd, conn, serr := x.storeCall(ctx, storeName, op, q)
		if serr == nil {
			return rd, conn, nil
		}
		var re *rpc.Error
		if errors.As(serr, &re) || ctx.Err() != nil {
			return nil, nil, serr // the store answered: its answer stands
		}
		err = serr
	}
	for _, dc := range replicaHolders(x.st) {
		rd, conn, derr := x.s.d.Peers.Call(ctx, x.st, dc, op, q)
		if derr == nil {
			x.s.cfg.Logf("node: export %s: %v; reading %s's replica of %s", x.r.ID, err, dc, camera)
			return rd, conn, nil
		}
		err = fmt.Errorf("%w; datacenter %s: %w", err, dc, derr)
	}
	return nil, nil, err
}

// storeCall runs op on the camera's store, waiting for it once per export:
// a store found unreachable is not waited for again.
func (x *exporter) storeCall(ctx context.Context, storeName, op string, q ScopeQuery) (*rpc.Reader, *mesh.QUICConn, error) {
	if why := x.unreachable[storeName]; why != nil {
		return nil, nil, why
	}
	// A live store answers within a WireGuard handshake and its retry;
	// waiting longer for the dial only delays the replicas.
	dctx, cancel := context.WithTimeout(ctx, storeDialTimeout)
	conn, err := x.s.d.Peers.Dial(dctx, x.st, storeName)
	cancel()
	if err == nil {
		rd, cerr := rpc.CallJSON(ctx, conn, op, q)
		if cerr == nil {
			return rd, conn, nil
		}
		err = cerr
	}
	err = fmt.Errorf("store %s: %w", storeName, err)
	var re *rpc.Error
	if !errors.As(err, &re) && ctx.Err() == nil {
		if x.unreachable == nil {
			x.unreachable = map[string]error{}
		}
		x.unreachable[storeName] = err
	}
	return nil, nil, err
}

// replicaSegment reads the segment bad names from a datacenter's replica,
// for a store that holds it but cannot read it intact. The copy must have
// the SHA-256 the store's index gave.
func (x *exporter) replicaSegment(ctx context.Context, cam string, bad SegmentHeader) ([]byte, error) {
	from, to, ok := x.r.Clip(bad.Start, bad.End)
	if !ok {
		return nil, fmt.Errorf("segment %s %s is outside the request", cam, stamp(bad.Start))
	}
	q := ScopeQuery{Request: x.r.ID, Camera: cam, From: from, To: to}
	var errs []string
	for _, dc := range replicaHolders(x.st) {
		ct, err := x.segmentFrom(ctx, dc, q, bad)
		if err == nil {
			x.s.cfg.Logf("node: export %s: segment %s %s is corrupt on its store; read %s's replica", x.r.ID, cam, stamp(bad.Start), dc)
			return ct, nil
		}
		errs = append(errs, dc+": "+err.Error())
	}
	return nil, fmt.Errorf("segment %s %s is corrupt on its store (%s) and no replica holds an intact copy (%s)",
		cam, stamp(bad.Start), bad.Corrupt, strings.Join(errs, "; "))
}

// segmentFrom reads from node the segment of q that bad names.
func (x *exporter) segmentFrom(ctx context.Context, node string, q ScopeQuery, bad SegmentHeader) ([]byte, error) {
	rd, conn, err := x.s.d.Peers.Call(ctx, x.st, node, OpSegments, q)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	for {
		hb, err := rd.Next()
		if err == io.EOF {
			return nil, errors.New("it does not hold the segment")
		}
		if err != nil {
			return nil, err
		}
		var h SegmentHeader
		if len(hb) > maxSegmentHeader || rpc.DecodeStrict(hb, &h) != nil {
			return nil, errors.New("a bad segment header")
		}
		if h.Corrupt != "" {
			if h.Start.Equal(bad.Start) {
				return nil, errors.New("its copy is corrupt too")
			}
			continue
		}
		ct, err := rd.Next()
		if err != nil {
			return nil, err
		}
		if !h.Start.Equal(bad.Start) {
			continue
		}
		if h.SHA256 != bad.SHA256 {
			return nil, errors.New("its copy has another SHA-256 than the store's index")
		}
		return ct, checkSegmentSum(h, ct)
	}
}

// replicaHolders are the datacenters that may hold replicas, by name.
func replicaHolders(st *policy.State) []string {
	var out []string
	for name := range st.Nodes {
		if policy.ReplicaTarget(st, name, time.Now()) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// fetchEpochs gets camera's epoch records in scope from its store.
func (x *exporter) fetchEpochs(ctx context.Context, camera string) ([][]byte, error) {
	rd, conn, err := x.scopeCall(ctx, camera, OpEpochs)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	return rpc.ReadFrames(rd, 0)
}

// storeDialTimeout bounds the wait for a camera's store before an export
// turns to the datacenters' replicas.
const storeDialTimeout = 8 * time.Second
