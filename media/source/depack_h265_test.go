package source

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// clip265 is the H.265 clip split into access units and, independently of
// the depacketizer, the frames they must come out as.
func clip265(t testing.TB) (aus [][][]byte, want [][]byte) {
	t.Helper()
	aus = splitAccessUnits265(clip.H265)
	if len(aus) != clip.Frames {
		t.Fatalf("H.265 clip: %d access units, want %d", len(aus), clip.Frames)
	}
	var ps paramSets265
	for i, au := range aus {
		data, key, ok := buildFrame265(au, &ps)
		if !ok || key != (i%clip.GOP == 0) {
			t.Fatalf("H.265 clip frame %d: key %v ok %v, want a keyframe every %d", i, key, ok, clip.GOP)
		}
		want = append(want, data)
	}
	return aus, want
}

// packetize265 packetizes access units with pion's RFC 7798 payloader (an
// implementation that is not ours): VPS, SPS and PPS aggregated, large
// slices fragmented at mtu. Each unit's last packet has the marker bit.
func packetize265(aus [][][]byte, mtu uint16, aggregate bool) [][]*rtp.Packet {
	p := rtp.NewPacketizer(mtu, 96, 0x1234, &codecs.H265Payloader{SkipAggregation: !aggregate}, rtp.NewFixedSequencer(65500), 90000)
	var out [][]*rtp.Packet
	for _, au := range aus {
		out = append(out, p.Packetize(h264.JoinNALs(au...), 3600))
	}
	return out
}

// depack265 runs packets through a fresh H.265 depacketizer, skipping the
// packets drop says, and returns which clip frame each unit emitted is.
func depack265(t *testing.T, d *depacketizer, pkts [][]*rtp.Packet, want [][]byte, drop func(frame, k int) bool) []int {
	t.Helper()
	var got []int
	for i, au := range pkts {
		for k, p := range au {
			if drop != nil && drop(i, k) {
				continue
			}
			for _, u := range d.push(p) {
				if u.codec != h264.CodecH265 {
					t.Fatalf("unit codec %v, want hevc", u.codec)
				}
				checkAU265(t, u)
				// pion marks each unit's last packet, so it ends there.
				if !bytes.Equal(u.data, want[i]) {
					t.Fatalf("unit %d, emitted at frame %d, is not that frame", len(got), i)
				}
				got = append(got, i)
			}
		}
	}
	return got
}

func checkAU265(t testing.TB, au accessUnit) {
	t.Helper()
	nals := h264.SplitNALs(au.data)
	if len(nals) == 0 || len(au.data) > maxAUBytes+1024 {
		t.Fatalf("emitted an empty or oversized unit (%d bytes)", len(au.data))
	}
	if au.key != h265.IsKey(au.data) {
		t.Fatalf("key flag %v disagrees with the data", au.key)
	}
	if au.key && (len(nals) < 4 || h265.Type(nals[0]) != h265.NALVPS || h265.Type(nals[1]) != h265.NALSPS || h265.Type(nals[2]) != h265.NALPPS) {
		t.Fatalf("keyframe does not start with VPS, SPS, PPS")
	}
}

func TestDepacketize265Clip(t *testing.T) {
	aus, want := clip265(t)
	for _, tc := range []struct {
		name      string
		mtu       uint16
		aggregate bool
	}{
		{"aggregated, MTU 1200", 1200, true},
		{"single NAL units, MTU 1200", 1200, false},
		{"aggregated, MTU 300", 300, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := depack265(t, newDepacketizer265(nil, nil, nil), packetize265(aus, tc.mtu, tc.aggregate), want, nil)
			if len(got) != len(aus) {
				t.Fatalf("%d frames out, want %d", len(got), len(aus))
			}
			for i, j := range got {
				if i != j {
					t.Fatalf("unit %d is frame %d", i, j)
				}
			}
		})
	}
}

// TestDepacketize265Loss: a lost fragment costs its frame and every frame
// up to the next IRAP, and nothing else.
func TestDepacketize265Loss(t *testing.T) {
	aus, want := clip265(t)
	pkts := packetize265(aus, 300, true)
	if len(pkts[30]) < 3 {
		t.Fatalf("frame 30 is %d packets; want a fragmented one", len(pkts[30]))
	}
	got := depack265(t, newDepacketizer265(nil, nil, nil), pkts, want, func(frame, k int) bool { return frame == 30 && k == 1 })
	var expect []int
	for i := range aus {
		if i < 30 || i >= 50 {
			expect = append(expect, i)
		}
	}
	if !equalInts(got, expect) {
		t.Fatalf("frames out %v\nwant %v", got, expect)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDepacketize265ParamSetsFromSDP: a camera that sends VPS, SPS and PPS
// only in its SDP gets them put before every IRAP; one that sends them
// nowhere gets nothing recorded rather than undecodable frames.
func TestDepacketize265ParamSetsFromSDP(t *testing.T) {
	aus, want := clip265(t)
	var vps, sps, pps []byte
	var bare [][][]byte
	for _, au := range aus {
		var keep [][]byte
		for _, n := range au {
			switch h265.Type(n) {
			case h265.NALVPS:
				vps = n
			case h265.NALSPS:
				sps = n
			case h265.NALPPS:
				pps = n
			default:
				keep = append(keep, n)
			}
		}
		bare = append(bare, keep)
	}
	pkts := packetize265(bare, 1200, true)
	got := depack265(t, newDepacketizer265(vps, sps, pps), pkts, want, nil)
	if len(got) != len(aus) {
		t.Fatalf("with SDP parameter sets: %d frames, want %d", len(got), len(aus))
	}
	d := newDepacketizer265(nil, nil, nil)
	for _, au := range pkts {
		for _, p := range au {
			if u := d.push(p); len(u) > 0 {
				t.Fatalf("without any parameter sets: emitted a unit (key %v)", u[0].key)
			}
		}
	}
}

// TestDepacketize265Hostile: malformed payloads are damage (the unit is
// dropped and the stream waits for an IRAP), never a panic or a
// half-built frame, and a fragment that never ends stays bounded.
func TestDepacketize265Hostile(t *testing.T) {
	aus, _ := clip265(t)
	good := packetize265(aus[:1], 1200, true)[0]
	seq := uint16(100)
	pkt := func(payload []byte, marker bool, ts uint32) *rtp.Packet {
		seq++
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
	}
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"short payload header", []byte{0x02}},
		{"forbidden bit", []byte{0x80 | 1<<1, 1, 0xaa}},
		{"AP size past the end", []byte{48 << 1, 1, 0, 9, 0x40, 1}},
		{"AP size zero", []byte{48 << 1, 1, 0, 0}},
		{"AP holding an FU", []byte{48 << 1, 1, 0, 3, 49 << 1, 1, 0x80}},
		{"FU without data", []byte{49 << 1, 1, 0x80 | 1}},
		{"FU of an FU", []byte{49 << 1, 1, 0x80 | 49, 0xaa}},
		{"FU start and end", []byte{49 << 1, 1, 0xc0 | 1, 0xaa}},
		{"FU middle without start", []byte{49 << 1, 1, 1, 0xaa}},
		{"PACI of a PACI", []byte{50 << 1, 1, 50 << 1, 0, 0xaa}},
		{"PACI extension past the end", []byte{50 << 1, 1, 1<<1 | 1, 0xf0, 0xaa}},
		{"NAL with a start code inside", []byte{1 << 1, 1, 0xaa, 0, 0, 1, 0x42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDepacketizer265(nil, nil, nil)
			ts := uint32(0)
			emit := func(ps ...*rtp.Packet) (n int) {
				for _, p := range ps {
					n += len(d.push(p))
				}
				return n
			}
			var first []*rtp.Packet
			for _, p := range good {
				q := *p
				q.SequenceNumber, q.Timestamp = seq+1, ts
				seq++
				first = append(first, &q)
			}
			if n := emit(first...); n != 1 {
				t.Fatalf("the clean keyframe gave %d units", n)
			}
			// A P frame whose one packet is the malformed payload, then a
			// clean P frame: both must be dropped (waiting for an IRAP).
			ts += 3600
			if n := emit(pkt(tc.payload, true, ts)); n != 0 {
				t.Fatalf("malformed payload emitted %d units", n)
			}
			ts += 3600
			p1 := packetize265(aus[1:2], 1200, true)[0]
			for _, p := range p1 {
				p.SequenceNumber, p.Timestamp = seq+1, ts
				seq++
			}
			if n := emit(p1...); n != 0 {
				t.Fatalf("a P frame after damage emitted %d units; want a wait for the next IRAP", n)
			}
		})
	}

	t.Run("endless FU", func(t *testing.T) {
		d := newDepacketizer265(nil, nil, nil)
		mid := append([]byte{49 << 1, 1, 1}, bytes.Repeat([]byte{0xaa}, 1400)...)
		d.push(pkt([]byte{49 << 1, 1, 0x80 | 1, 0xaa}, false, 7))
		for range maxAUBytes/1400 + 10 {
			d.push(pkt(mid, false, 7))
			if len(d.fu)+d.size > maxAUBytes {
				t.Fatalf("FU reassembly holds %d bytes, past the %d cap", len(d.fu)+d.size, maxAUBytes)
			}
		}
		if d.fu != nil || !d.broken {
			t.Fatalf("an FU past the cap did not break the unit")
		}
	})
}

func TestParseSDP265(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nt=0 0\r\n"
	aus, _ := clip265(t)
	b64 := func(n []byte) string { return base64.StdEncoding.EncodeToString(n) }
	vps, sps, pps := aus[0][0], aus[0][1], aus[0][2]
	fmtp := "a=fmtp:96 sprop-vps=" + b64(vps) + "; sprop-sps=" + b64(sps) + ";sprop-pps=" + b64(pps) + ";sprop-max-don-diff=0\r\n"

	tr, err := parseSDP([]byte(head+"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n"+fmtp+"a=control:t1\r\n"), "rtsp://cam/s/")
	if err != nil {
		t.Fatal(err)
	}
	if tr.codec != h264.CodecH265 || !bytes.Equal(tr.vps, vps) || !bytes.Equal(tr.sps, sps) || !bytes.Equal(tr.pps, pps) || tr.control != "rtsp://cam/s/t1" {
		t.Fatalf("track = %+v", tr)
	}
	if d := tr.depacketizer(); !d.h265 || !bytes.Equal(d.ps265.sps, sps) {
		t.Fatalf("the track's depacketizer is not an H.265 one with its SPS")
	}

	tr, err = parseSDP([]byte(head+"m=video 0 RTP/AVP 96 97\r\na=rtpmap:96 H265/90000\r\na=rtpmap:97 H264/90000\r\n"), "rtsp://cam/s/")
	if err != nil || tr.codec != h264.CodecH264 || tr.payloadType != 97 {
		t.Fatalf("H.265 and H.264 offered: track %+v, %v; want H.264 (payload 97)", tr, err)
	}

	for _, tc := range []struct{ fmtp, want string }{
		{"sprop-max-don-diff=2", "sprop-max-don-diff=2"},
		{"sprop-depack-buf-nalus=1", "sprop-depack-buf-nalus=1"},
		{"sprop-max-don-diff=x", "sprop-max-don-diff=x"},
		{"tx-mode=MST", "tx-mode=MST"},
	} {
		_, err := parseSDP([]byte(head+"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 "+tc.fmtp+"\r\n"), "rtsp://cam/s/")
		if !errors.Is(err, ErrUnsupportedCodec) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "H.265") {
			t.Errorf("fmtp %q: %v; want ErrUnsupportedCodec naming %q", tc.fmtp, err, tc.want)
		}
	}
	// Parameter sets of the wrong type or not base64 are skipped, not trusted.
	tr, err = parseSDP([]byte(head+"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-sps="+b64(pps)+",%%%;sprop-vps="+b64(vps)+"\r\n"), "rtsp://cam/s/")
	if err != nil || tr.sps != nil || !bytes.Equal(tr.vps, vps) {
		t.Fatalf("bad sprop-sps: track %+v, %v", tr, err)
	}
}

func FuzzDepacketize265(f *testing.F) {
	// Small seeds: the clip's parameter sets and the heads of an IDR and
	// a P slice, aggregated and fragmented at MTU 60.
	aus := splitAccessUnits265(clip.H265)
	idr, p1 := aus[0][len(aus[0])-1], aus[1][len(aus[1])-1]
	var seed []byte
	p := rtp.NewPacketizer(60, 96, 1, &codecs.H265Payloader{}, rtp.NewFixedSequencer(1), 90000)
	for _, au := range [][][]byte{{aus[0][0], aus[0][1], aus[0][2], idr[:150]}, {p1[:100]}, {p1[:30]}} {
		for _, pkt := range p.Packetize(h264.JoinNALs(au...), 3600) {
			b, _ := pkt.Marshal()
			seed = binary.BigEndian.AppendUint16(seed, uint16(len(b)))
			seed = append(seed, b...)
		}
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDepacketizer265(nil, nil, nil)
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			if n > len(data) {
				return
			}
			var pkt rtp.Packet
			if pkt.Unmarshal(data[:n]) == nil {
				for _, au := range d.push(&pkt) {
					checkAU265(t, au)
				}
			}
			if len(d.fu)+d.size > maxAUBytes {
				t.Fatalf("holding %d bytes", len(d.fu)+d.size)
			}
			data = data[n:]
		}
	})
}

// TestDepacketize265TrailingZeros: zero bytes after a unit (as GStreamer
// sends them when its input came through ffmpeg's Matroska muxer) are
// dropped, not taken for damage, and the frames come out as the clip's.
func TestDepacketize265TrailingZeros(t *testing.T) {
	aus, want := clip265(t)
	pkts := packetize265(aus[:2*clip.GOP], 1200, false)
	padded := 0
	for _, au := range pkts {
		for _, p := range au {
			t := h265.Type(p.Payload)
			if t < h265.NALAP || t == h265.NALFU && p.Payload[2]&0x40 != 0 {
				p.Payload = append(p.Payload, 0, 0)
				padded++
			}
		}
	}
	got := depack265(t, newDepacketizer265(nil, nil, nil), pkts, want, nil)
	if padded < 2*clip.GOP || len(got) != 2*clip.GOP {
		t.Fatalf("%d frames from %d padded units, want %d", len(got), padded, 2*clip.GOP)
	}
}

// TestDepacketize265RASL: RASL pictures after the CRA a stream starts at
// are dropped (they reference pictures it never had); after a CRA in an
// unbroken stream they are kept.
func TestDepacketize265RASL(t *testing.T) {
	vps, sps, pps := []byte{h265.NALVPS << 1, 1, 0xa1}, []byte{h265.NALSPS << 1, 1, 0xa2}, []byte{h265.NALPPS << 1, 1, 0xa3}
	slice := func(typ byte, n byte) []byte { return []byte{typ << 1, 1, 0x80 | n} }
	aus := [][][]byte{
		{vps, sps, pps, slice(h265.NALCRA, 0)}, // 0: the start
		{slice(8, 1)},                          // 1: RASL_N of the CRA started at: dropped
		{slice(1, 2)},                          // 2: TRAIL_R
		{slice(h265.NALCRA, 3)},                // 3: a CRA mid-stream
		{slice(9, 4)},                          // 4: its RASL_R decodes: kept
		{slice(1, 5)},
	}
	d := newDepacketizer265(nil, nil, nil)
	var got []byte
	seq := uint16(0)
	for i, au := range aus {
		for k, nal := range au {
			seq++
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq,
				Timestamp: uint32(3600 * i), Marker: k == len(au)-1}, Payload: nal}
			for _, u := range d.push(p) {
				nals := h264.SplitNALs(u.data)
				got = append(got, nals[len(nals)-1][2]&0x7f)
			}
		}
	}
	if string(got) != string([]byte{0, 2, 3, 4, 5}) {
		t.Fatalf("frames out %v, want [0 2 3 4 5]", got)
	}
}
