package source

import "github.com/custos-cctv/custos/media/h264"

// splitAccessUnits groups an Annex-B stream's NAL units into access units
// (ITU-T H.264 7.4.1.2.3): a unit ends before an AUD, SPS, PPS, SEI or
// prefix NAL that follows a slice, and before a slice whose
// first_mb_in_slice is 0 that follows a slice. Each returned unit holds
// NALs without start codes, aliasing stream.
func splitAccessUnits(stream []byte) [][][]byte {
	var aus [][][]byte
	var cur [][]byte
	sawSlice := false
	for _, nal := range h264.SplitNALs(stream) {
		t := h264.Type(nal)
		vcl := t >= 1 && t <= 5
		starts := false
		switch {
		case vcl:
			// first_mb_in_slice is ue(v); it is 0 exactly when the first
			// bit after the one-byte NAL header is 1.
			starts = sawSlice && len(nal) > 1 && nal[1]&0x80 != 0
		case t == h264.NALAUD, t == h264.NALSPS, t == h264.NALPPS, t == h264.NALSEI, t >= 14 && t <= 18:
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

// paramSets remembers the latest SPS and PPS seen, so that an IDR access
// unit that arrives without them can carry them.
type paramSets struct {
	sps, pps []byte
}

func (p *paramSets) learn(nals [][]byte) {
	for _, n := range nals {
		switch h264.Type(n) {
		case h264.NALSPS:
			p.sps = append(p.sps[:0:0], n...)
		case h264.NALPPS:
			p.pps = append(p.pps[:0:0], n...)
		}
	}
}

// buildFrame turns one access unit into Frame.Data and its keyframe flag.
// A keyframe starts with SPS and PPS (in-band ones, else the remembered
// ones); ok is false for a keyframe when no parameter sets are known, since
// emitting it would break the Frame contract. AUDs are dropped: they are
// optional, and a muxer that needs them adds its own.
func buildFrame(nals [][]byte, ps *paramSets) (data []byte, key, ok bool) {
	ps.learn(nals)
	for _, n := range nals {
		if h264.Type(n) == h264.NALIDR {
			key = true
			break
		}
	}
	out := make([][]byte, 0, len(nals)+2)
	if key {
		if ps.sps == nil || ps.pps == nil {
			return nil, true, false
		}
		out = append(out, ps.sps, ps.pps)
	}
	for _, n := range nals {
		switch t := h264.Type(n); {
		case t == h264.NALAUD:
		case key && (t == h264.NALSPS || t == h264.NALPPS):
			// already placed first
		default:
			out = append(out, n)
		}
	}
	return h264.JoinNALs(out...), key, true
}
