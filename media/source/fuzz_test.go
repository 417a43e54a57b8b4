package source

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
)

// Fuzz targets for everything that parses camera bytes. Each must never
// panic, allocate past its bounds, or emit an access unit that breaks the
// Frame contract.

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n"))
	f.Add([]byte("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\n\r\nv=0\r\nRTSP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n"))
	f.Add([]byte("GET_PARAMETER rtsp://x/ RTSP/1.0\nCSeq: 9\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for range 100 {
			m, err := readMessage(br)
			if err != nil {
				return
			}
			if len(m.body) > maxBodyLen || len(m.header) > maxHeaders {
				t.Fatalf("message past its bounds: %d body bytes, %d headers", len(m.body), len(m.header))
			}
		}
	})
}

func FuzzReadInterleaved(f *testing.F) {
	f.Add([]byte{'$', 0, 0, 3, 1, 2, 3, '$', 1, 0, 0})
	f.Add([]byte{'$', 0, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for {
			_, p, err := readInterleaved(br, buf)
			if err != nil {
				return
			}
			if len(p) > 0xffff {
				t.Fatalf("frame of %d bytes", len(p))
			}
			buf = p
		}
	})
}

// FuzzDepacketize feeds RTP packets, each prefixed by a 2-byte length.
func FuzzDepacketize(f *testing.F) {
	// Small seeds (the fuzzer crawls on large ones): the clip's SPS and
	// PPS, then the heads of an IDR and a P slice, fragmented at MTU 60.
	aus := splitAccessUnits(clip.H264)
	idr, p1 := lastSlice(aus[0]), lastSlice(aus[1])
	var seed []byte
	p := rtp.NewPacketizer(60, 96, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
	for _, au := range [][][]byte{{aus[0][0], aus[0][1], idr[:150]}, {p1[:100]}, {p1[:30]}} {
		for _, pkt := range p.Packetize(h264.JoinNALs(au...), 3600) {
			b, _ := pkt.Marshal()
			seed = binary.BigEndian.AppendUint16(seed, uint16(len(b)))
			seed = append(seed, b...)
		}
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDepacketizer(nil, nil)
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			if n > len(data) {
				return
			}
			var pkt rtp.Packet
			if pkt.Unmarshal(data[:n]) == nil {
				for _, au := range d.push(&pkt) {
					checkAU(t, au)
				}
			}
			data = data[n:]
		}
	})
}

func checkAU(t *testing.T, au accessUnit) {
	nals := h264.SplitNALs(au.data)
	if len(nals) == 0 || len(au.data) > maxAUBytes+1024 {
		t.Fatalf("emitted an empty or oversized unit (%d bytes)", len(au.data))
	}
	if au.key != h264.IsKey(au.data) {
		t.Fatalf("key flag %v disagrees with the data", au.key)
	}
	if au.key && (len(nals) < 3 || h264.Type(nals[0]) != h264.NALSPS || h264.Type(nals[1]) != h264.NALPPS) {
		t.Fatalf("keyframe starts with NAL types %v", types(nals))
	}
}

func FuzzParseSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHg==,aM48gA==\r\na=control:trackID=1\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := parseSDP(data, "rtsp://cam/s/")
		if err == nil && (tr.control == "" || tr.payloadType > 127) {
			t.Fatalf("accepted track %+v", tr)
		}
	})
}

func FuzzAuthChallenge(f *testing.F) {
	f.Add(`Digest realm="r", nonce="n\"x", qop="auth,auth-int", opaque=o`)
	f.Add(`Basic realm="r"`)
	f.Fuzz(func(t *testing.T, challenge string) {
		a := &auth{user: "u", pass: "p"}
		if a.challenge([]string{challenge}) == nil {
			_ = a.header("DESCRIBE", "rtsp://cam/s")
		}
	})
}
