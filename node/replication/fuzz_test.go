package replication

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
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
		roundTrip(t, b, &replPull{}, &replPull{})
		roundTrip(t, b, &replItem{}, &replItem{})
		roundTrip(t, b, &replGet{}, &replGet{})
	})
}

func roundTrip(t *testing.T, b []byte, v, again any) {
	if strictJSON(b, v) != nil {
		return
	}
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%T decoded but does not encode: %v", v, err)
	}
	if err := strictJSON(enc, again); err != nil {
		t.Fatalf("%T: its encoding %s does not decode: %v", v, enc, err)
	}
	if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
		t.Fatalf("%T: %s became %s", v, enc, enc2)
	}
}
