package rtc

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
)

// TestRecordedH265NotPlayable: what Custos itself writes for an H.265
// camera (the live view's and a recording's MPEG-TS) is refused with the
// sentence the console shows, before any connection.
func TestRecordedH265NotPlayable(t *testing.T) {
	var mux ts.Muxer
	mux.SetCodec(h264.CodecH265)
	b := mux.AppendTables(nil)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b, err := mux.AppendFrame(b, h264.Frame{Time: at, Key: true, Codec: h264.CodecH265,
		Data: []byte{0, 0, 0, 1, 0x40, 1, 0x0c, 0, 0, 0, 1, 0x28, 1, 0xaf}})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, Config{})
	err = p.Feed(context.Background(), bytes.NewReader(b))
	if !errors.Is(err, ErrNotPlayable) || err.Error() != "H.265 is not playable in the browser; watch it with custos live" {
		t.Fatalf("Feed of Custos's H.265: %v", err)
	}
}
