package source

// H.265 per RFC 7798: the depacketizer of depack.go (sequence tracking,
// loss handling, bounds) with H.265 payload structures, and the H.265
// versions of the access-unit helpers in annexb.go.

import (
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// newDepacketizer265 rebuilds H.265 access units from RTP packets: single
// NAL unit packets, aggregation packets (AP), fragmentation units (FU) and
// PACI, all without DONL (parseFmtpH265 refuses streams that carry it).
// Parameter sets from the SDP may be nil; in-band ones replace them.
func newDepacketizer265(vps, sps, pps []byte) *depacketizer {
	return &depacketizer{h265: true, waitKey: true, ps265: paramSets265{vps: vps, sps: sps, pps: pps}}
}

// payload265 unpacks one RTP payload into the current unit.
func (d *depacketizer) payload265(b []byte) {
	if len(b) < h265.HeaderLen || b[0]&0x80 != 0 {
		d.loss() // no room for the payload header, or forbidden_zero_bit set
		return
	}
	switch t := h265.Type(b); {
	case t < h265.NALAP:
		if d.fu != nil {
			d.loss() // a fragment's end never came
			return
		}
		d.addNAL265(b)
	case t == h265.NALAP:
		d.aggregate265(b[h265.HeaderLen:])
	case t == h265.NALFU:
		d.fragment265(b)
	case t == h265.NALPACI:
		d.paci(b)
	default:
		// 51..63 are unspecified: RFC 7798 leaves them to other uses, so
		// they are ignored like RFC 6184's reserved types.
	}
}

// aggregate265 adds the NAL units of an AP: without DONL, each is a
// 16-bit size and the unit.
func (d *depacketizer) aggregate265(b []byte) {
	if d.fu != nil || len(b) == 0 {
		d.loss()
		return
	}
	for len(b) > 0 {
		if len(b) < 2 {
			d.loss()
			return
		}
		n := int(b[0])<<8 | int(b[1])
		if n < h265.HeaderLen || n > len(b)-2 {
			d.loss()
			return
		}
		nal := b[2 : 2+n]
		if nal[0]&0x80 != 0 || h265.Type(nal) >= h265.NALAP {
			d.loss() // an AP holds only NAL units, never payload structures
			return
		}
		d.addNAL265(nal)
		b = b[2+n:]
	}
}

// fragment265 adds one FU: payload header, FU header (S, E, FuType), data.
// The NAL unit's header is the payload header with FuType as its type.
func (d *depacketizer) fragment265(b []byte) {
	if len(b) < 4 {
		d.loss() // every fragment carries at least one byte
		return
	}
	start, end, ft := b[2]&0x80 != 0, b[2]&0x40 != 0, int(b[2]&0x3f)
	if ft >= h265.NALAP || (start && end) {
		d.loss() // RFC 7798 4.4.3: not a fragmentable type, or S and E both set
		return
	}
	switch {
	case start && d.fu != nil:
		d.loss() // the previous fragment's end never came
		return
	case start:
		d.fu = append(make([]byte, 0, 2*len(b)), b[0]&0x81|byte(ft)<<1, b[1])
	case d.fu == nil:
		d.loss() // its start was lost
		return
	case h265.Type(d.fu) != ft:
		d.loss() // fragments of two different units
		return
	}
	if d.size+len(d.fu)+len(b)-3 > maxAUBytes {
		d.loss()
		return
	}
	d.fu = append(d.fu, b[3:]...)
	if end {
		nal := d.fu
		d.fu = nil
		d.addNAL265(nal)
	}
}

// addNAL265 is addNAL after dropping zero bytes at the unit's end. Those
// are trailing_zero_8bits an Annex-B stream may carry between units, and
// servers that cut units from one (GStreamer after ffmpeg's Matroska
// muxer, for one) leave them on: harmless, unlike a zero inside.
func (d *depacketizer) addNAL265(nal []byte) {
	for len(nal) > 0 && nal[len(nal)-1] == 0 {
		nal = nal[:len(nal)-1]
	}
	if len(nal) < h265.HeaderLen {
		d.loss()
		return
	}
	d.addNAL(nal)
}

// paci unwraps a PACI (RFC 7798 4.4.4): its extension (PHES) carries
// nothing Custos needs, and what follows is a payload whose header is the
// PACI's own with cType as its type.
func (d *depacketizer) paci(b []byte) {
	if len(b) < 4 {
		d.loss()
		return
	}
	ct := int(b[2]>>1) & 0x3f
	phs := int(b[2]&1)<<4 | int(b[3]>>4)
	if ct == h265.NALPACI || len(b) < 4+phs+1 {
		d.loss()
		return
	}
	inner := append([]byte{b[0]&0x81 | byte(ct)<<1, b[1]}, b[4+phs:]...)
	d.payload265(inner)
}

// flush265 is appendFlush's end for a whole H.265 unit.
func (d *depacketizer) flush265(out []accessUnit, nals [][]byte) []accessUnit {
	vcl := -1 // type of the first slice
	for _, n := range nals {
		if t := h265.Type(n); h265.IsVCL(t) {
			vcl = t
			break
		}
	}
	if vcl < 0 {
		d.ps265.learn(nals) // parameter sets sent on their own
		return out
	}
	data, key, ok := buildFrame265(nals, &d.ps265)
	switch {
	case !ok:
		d.waitKey = true // an IRAP without parameter sets: what follows needs it
		return out
	case d.waitKey && !key:
		return out
	case key:
		// After starting (or resuming after loss) at a CRA, its RASL
		// pictures reference pictures before it that this stream never
		// had; at a CRA in an unbroken stream they decode.
		d.skipRASL = d.waitKey && vcl == h265.NALCRA
	case d.skipRASL && (vcl == 8 || vcl == 9):
		return out
	default:
		d.skipRASL = false
	}
	d.waitKey = false
	return append(out, accessUnit{ts: d.ts, key: key, data: data, codec: h264.CodecH265})
}

// paramSets265 remembers the latest VPS, SPS and PPS seen, so that an IRAP
// access unit that arrives without them can carry them.
type paramSets265 struct {
	vps, sps, pps []byte
}

func (p *paramSets265) learn(nals [][]byte) {
	for _, n := range nals {
		switch h265.Type(n) {
		case h265.NALVPS:
			p.vps = append(p.vps[:0:0], n...)
		case h265.NALSPS:
			p.sps = append(p.sps[:0:0], n...)
		case h265.NALPPS:
			p.pps = append(p.pps[:0:0], n...)
		}
	}
}

// buildFrame265 is buildFrame for H.265: a keyframe (IRAP) starts with
// VPS, SPS and PPS; ok is false for one when they are not all known.
func buildFrame265(nals [][]byte, ps *paramSets265) (data []byte, key, ok bool) {
	ps.learn(nals)
	for _, n := range nals {
		if h265.IsIRAP(h265.Type(n)) {
			key = true
			break
		}
	}
	out := make([][]byte, 0, len(nals)+3)
	if key {
		if ps.vps == nil || ps.sps == nil || ps.pps == nil {
			return nil, true, false
		}
		out = append(out, ps.vps, ps.sps, ps.pps)
	}
	for _, n := range nals {
		switch t := h265.Type(n); {
		case t == h265.NALAUD:
		case key && (t == h265.NALVPS || t == h265.NALSPS || t == h265.NALPPS):
			// already placed first
		default:
			out = append(out, n)
		}
	}
	return h264.JoinNALs(out...), key, true
}

// splitAccessUnits265 groups an H.265 Annex-B stream's NAL units into
// access units (ITU-T H.265 7.4.2.4.4): a unit ends before an AUD, VPS,
// SPS, PPS, prefix SEI or reserved prefix type that follows a slice, and
// before a slice with first_slice_segment_in_pic_flag set that follows a
// slice. Each returned unit holds NALs without start codes, aliasing stream.
func splitAccessUnits265(stream []byte) [][][]byte {
	var aus [][][]byte
	var cur [][]byte
	sawSlice := false
	for _, nal := range h264.SplitNALs(stream) {
		t := h265.Type(nal)
		vcl := h265.IsVCL(t)
		starts := false
		switch {
		case vcl:
			starts = sawSlice && len(nal) > 2 && nal[2]&0x80 != 0
		case t >= h265.NALVPS && t <= h265.NALAUD, t == h265.NALSEIPrefix, t >= 41 && t <= 44, t >= 48 && t <= 55:
			starts = sawSlice
		}
		if starts && len(cur) > 0 {
			aus = append(aus, cur)
			cur, sawSlice = nil, false
		}
		cur = append(cur, nal)
		if vcl {
			sawSlice = true
		}
	}
	if len(cur) > 0 {
		aus = append(aus, cur)
	}
	return aus
}
