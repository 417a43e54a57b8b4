package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
)

// FuzzDecodeOpBody: the bodies of the service's ops (and of the local
// recovery API) decode strictly or not at all, never panic, and what
// decodes encodes back to a body that decodes to the same value.
func FuzzDecodeOpBody(f *testing.F) {
	for _, v := range []any{
		release.ScopeQuery{Request: "r1", Camera: "praha-1/entrance", From: time.Unix(1.8e9, 0), To: time.Unix(1.8e9+2, 0)},
		release.ReleaseQuery{Request: "r1", Camera: "praha-1/entrance", Segments: []time.Time{time.Unix(1.8e9, 5)}},
		release.SegmentHeader{Start: time.Unix(1.8e9, 0), SHA256: "00"},
		recoverBody{Request: "r1"},
		recoveredBody{Request: "r1", Shares: [][]byte{{1, 2}}},
		live.Query{Camera: "praha-1/entrance"},
	} {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte(`{"request":"r1","records":[null]}`))
	f.Add([]byte(`{"request":"r1"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodetest.RoundTrip(t, b, &release.ScopeQuery{}, &release.ScopeQuery{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &release.ReleaseQuery{}, &release.ReleaseQuery{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &release.SegmentHeader{}, &release.SegmentHeader{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &recoverBody{}, &recoverBody{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &recoveredBody{}, &recoveredBody{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &live.Query{}, &live.Query{}, rpc.DecodeStrict)
	})
}
