package replication

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/rpc"
)

// FuzzDecodeReplicationBody: the bodies of the replication ops and the
// headers of a pull's answer decode strictly or not at all, never panic,
// and what decodes encodes back to a body that decodes to the same value.
func FuzzDecodeReplicationBody(f *testing.F) {
	for _, v := range []any{
		replPull{Cameras: map[string]replCursor{"praha-1/entrance": {Segment: time.Unix(1.8e9, 0)}}, AuditSeq: 7, WaitMS: 5000},
		replItem{Kind: "segment", Camera: "praha-1/entrance", Start: time.Unix(1.8e9, 0), SHA256: "00", Size: 9},
		replGet{Camera: "praha-1/entrance", Start: time.Unix(1.8e9, 0), SHA256: "00"},
	} {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte(`{"cameras":{"praha-1/entrance":null}} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodetest.RoundTrip(t, b, &replPull{}, &replPull{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &replItem{}, &replItem{}, rpc.DecodeStrict)
		nodetest.RoundTrip(t, b, &replGet{}, &replGet{}, rpc.DecodeStrict)
	})
}
