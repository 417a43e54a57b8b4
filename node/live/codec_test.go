package live

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// TestCodecCrossesTheWire: an H.265 frame stays H.265 from the store to
// the viewer's muxer, on the stream and as datagrams, and an H.264 one
// stays H.264 (a viewer that lost the codec would mux H.265 as 0x1b).
func TestCodecCrossesTheWire(t *testing.T) {
	for _, codec := range []h264.Codec{h264.CodecH264, h264.CodecH265} {
		// The stream: the store's header byte as live.go writes it.
		b := make([]byte, liveHeader, liveHeader+4)
		b[8] = liveKey
		if codec == h264.CodecH265 {
			b[8] |= liveH265
		}
		m, err := parseLiveFrame(append(b, 0, 0, 1, 0x26))
		if err != nil || m.Frame.Codec != codec || !m.Frame.Key {
			t.Errorf("stream frame of %v read back as %v (key %v), %v", codec, m.Frame.Codec, m.Frame.Key, err)
		}

		// Datagrams: a frame of three fragments.
		pc := &capturePC{}
		var tok token
		s := newSender(pc, netip.MustParseAddrPort("[fd00::2]:4000"), tok)
		data := bytes.Repeat([]byte{7}, 3*dgPayload-5)
		at := time.Now()
		if err := s.send(at, true, false, data, codec); err != nil {
			t.Fatal(err)
		}
		asm := newAssembler()
		for _, d := range pc.take() {
			dg, err := parseDatagram(d)
			if err != nil {
				t.Fatal(err)
			}
			asm.add(dg, at)
		}
		out := asm.pop(at)
		if len(out) != 1 {
			t.Fatalf("datagrams of a %v frame gave %d frames", codec, len(out))
		}
		if out[0].codec != codec || !bytes.Equal(out[0].data, data) {
			t.Fatalf("datagrams of a %v frame gave a %v frame", codec, out[0].codec)
		}
	}
	// The H.265 flag on an end or a port is no frame: refused.
	for _, flags := range []byte{liveEnd | liveH265, liveUDP | liveH265} {
		b := make([]byte, liveHeader, liveHeader+2)
		b[8] = flags
		if _, err := parseLiveFrame(append(b, 0x10, 0x00)); err == nil {
			t.Errorf("flags %#x accepted", flags)
		}
	}
}
