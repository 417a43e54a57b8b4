package h265

import (
	"errors"
	"fmt"
)

// SPS is what Custos reads from a sequence parameter set: the size of the
// pictures as shown (after the conformance window crop).
type SPS struct {
	Width, Height int
}

// maxDim bounds a picture side: level 6.2 allows 8444 luma samples, so
// anything above 16384 is no camera's.
const maxDim = 16384

var errShort = errors.New("ended early")

// ParseSPS reads a sequence parameter set NAL unit (header included, no
// start code) up to the conformance window (ITU-T H.265 7.3.2.2.1).
func ParseSPS(nal []byte) (SPS, error) {
	if Type(nal) != NALSPS {
		return SPS{}, fmt.Errorf("h265: SPS: NAL unit type %d is not an SPS (%d)", Type(nal), NALSPS)
	}
	r := bitReader{b: unescape(nal[HeaderLen:])}
	r.skip(4) // sps_video_parameter_set_id
	subLayers := int(r.bits(3))
	r.skip(1) // sps_temporal_id_nesting_flag
	// profile_tier_level(1, subLayers): the general part is 88 bits of
	// profile and 8 of level, then per sub-layer presence flags.
	r.skip(96)
	var profile, level [8]bool
	for i := range subLayers {
		profile[i], level[i] = r.bits(1) == 1, r.bits(1) == 1
	}
	if subLayers > 0 {
		r.skip(2 * (8 - subLayers)) // reserved_zero_2bits
	}
	for i := range subLayers {
		if profile[i] {
			r.skip(88)
		}
		if level[i] {
			r.skip(8)
		}
	}
	r.ue() // sps_seq_parameter_set_id
	chroma := r.ue()
	if chroma > 3 {
		return SPS{}, fmt.Errorf("h265: SPS: chroma_format_idc %d out of range", chroma)
	}
	separate := chroma == 3 && r.bits(1) == 1
	w, h := r.ue(), r.ue()
	var left, right, top, bottom uint32
	if r.bits(1) == 1 { // conformance_window_flag
		left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err != nil {
		return SPS{}, fmt.Errorf("h265: SPS: %w", r.err)
	}
	subW, subH := uint64(1), uint64(1)
	if !separate && (chroma == 1 || chroma == 2) {
		subW = 2
	}
	if !separate && chroma == 1 {
		subH = 2
	}
	// 64-bit sums: offsets are ue(v) values up to 2^32-2 each.
	cw, ch := subW*(uint64(left)+uint64(right)), subH*(uint64(top)+uint64(bottom))
	if w == 0 || h == 0 || w > maxDim || h > maxDim || cw >= uint64(w) || ch >= uint64(h) {
		return SPS{}, fmt.Errorf("h265: SPS: picture %dx%d with crop %d,%d is not a plausible size", w, h, cw, ch)
	}
	return SPS{Width: int(uint64(w) - cw), Height: int(uint64(h) - ch)}, nil
}

// unescape removes emulation prevention bytes (00 00 03 → 00 00).
func unescape(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// bitReader reads big-endian bits; past the end it records errShort and
// returns zeros, so a parser checks err once at the end.
type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for range n {
		if r.pos >= 8*len(r.b) {
			r.err = errShort
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) skip(n int) {
	if r.pos+n > 8*len(r.b) {
		r.err, r.pos = errShort, 8*len(r.b)
		return
	}
	r.pos += n
}

// ue reads an Exp-Golomb code; more than 31 leading zeros is an error.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.bits(1) == 0 {
		if r.err != nil {
			return 0
		}
		if zeros++; zeros > 31 {
			r.err = errors.New("Exp-Golomb code longer than 32 bits")
			return 0
		}
	}
	return (1<<zeros - 1) + r.bits(zeros)
}
