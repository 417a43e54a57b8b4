package node

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/live"
)

// FuzzDemuxTS: the export's demuxer reads decrypted segments, which a
// compromised store could shape at will (under a key it was sent for):
// whatever the bytes, it returns frames inside them or an error, and never
// panics. It is one pass over the packets, so it cannot loop.
func FuzzDemuxTS(f *testing.F) {
	ref := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mux ts.Muxer
	b := mux.AppendTables(nil)
	for i := range 3 {
		b, _ = mux.AppendFrame(b, h264.Frame{Time: ref.Add(time.Duration(i) * 40 * time.Millisecond), Key: i == 0,
			Data: append([]byte{0, 0, 0, 1, 0x65}, bytes.Repeat([]byte{byte(i)}, 300)...)})
	}
	f.Add(b)
	f.Add(b[:ts.PacketSize])
	f.Add(make([]byte, ts.PacketSize))
	// A bounded PES whose length ends inside its own header (this once
	// sliced backwards and panicked).
	short := make([]byte, ts.PacketSize)
	copy(short, []byte{0x47, 0x40 | ts.PIDVideo>>8, ts.PIDVideo & 0xff, 0x10, 0, 0, 1, 0xe0, 0, 1, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1})
	f.Add(short)
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := demuxTS(b, ref)
		if err != nil && len(frames) != 0 {
			t.Fatalf("frames with an error: %v", err)
		}
		for _, fr := range frames {
			if len(fr.Data) > len(b) {
				t.Fatalf("a frame of %d bytes from %d", len(fr.Data), len(b))
			}
		}
		clearFrames(frames)
	})
}

// FuzzDecodeOpBody: the bodies of the service's ops (and of the local
// recovery API) decode strictly or not at all, never panic, and what
// decodes encodes back to a body that decodes to the same value.
func FuzzDecodeOpBody(f *testing.F) {
	for _, v := range []any{
		scopeQuery{Request: "r1", Camera: "praha-1/entrance", From: time.Unix(1.8e9, 0), To: time.Unix(1.8e9+2, 0)},
		releaseQuery{Request: "r1", Camera: "praha-1/entrance", Segments: []time.Time{time.Unix(1.8e9, 5)}},
		segmentHeader{Start: time.Unix(1.8e9, 0), SHA256: "00"},
		recoverBody{Request: "r1"},
		recoveredBody{Request: "r1", Shares: [][]byte{{1, 2}}},
		replPull{Cameras: map[string]replCursor{"praha-1/entrance": {Segment: time.Unix(1.8e9, 0)}}, AuditSeq: 7, WaitMS: 5000},
		replItem{Kind: "segment", Camera: "praha-1/entrance", Start: time.Unix(1.8e9, 0), SHA256: "00", Size: 9},
		replGet{Camera: "praha-1/entrance", Start: time.Unix(1.8e9, 0), SHA256: "00"},
		live.Query{Camera: "praha-1/entrance"},
	} {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte(`{"request":"r1","records":[null]}`))
	f.Add([]byte(`{"request":"r1"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, b, &scopeQuery{}, &scopeQuery{})
		roundTrip(t, b, &releaseQuery{}, &releaseQuery{})
		roundTrip(t, b, &segmentHeader{}, &segmentHeader{})
		roundTrip(t, b, &recoverBody{}, &recoverBody{})
		roundTrip(t, b, &recoveredBody{}, &recoveredBody{})
		roundTrip(t, b, &replPull{}, &replPull{})
		roundTrip(t, b, &replItem{}, &replItem{})
		roundTrip(t, b, &replGet{}, &replGet{})
		roundTrip(t, b, &live.Query{}, &live.Query{})
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
