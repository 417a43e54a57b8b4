package h265

import (
	"fmt"

	"github.com/custos-cctv/custos/media/internal/rbsp"
)

// SPS is what Custos reads from a sequence parameter set: the size of the
// pictures as shown (after the conformance window crop).
type SPS struct {
	Width, Height int
}

// maxDim bounds a picture side: level 6.2 allows 8444 luma samples, so
// anything above 16384 is no camera's.
const maxDim = 16384

// ParseSPS reads a sequence parameter set NAL unit (header included, no
// start code) up to the conformance window (ITU-T H.265 7.3.2.2.1).
func ParseSPS(nal []byte) (SPS, error) {
	if Type(nal) != NALSPS {
		return SPS{}, fmt.Errorf("h265: SPS: NAL unit type %d is not an SPS (%d)", Type(nal), NALSPS)
	}
	r := rbsp.NewReader(rbsp.Unescape(nal[HeaderLen:]))
	r.Skip(4) // sps_video_parameter_set_id
	subLayers := int(r.Bits(3))
	r.Skip(1) // sps_temporal_id_nesting_flag
	// profile_tier_level(1, subLayers): the general part is 88 bits of
	// profile and 8 of level, then per sub-layer presence flags.
	r.Skip(96)
	var profile, level [8]bool
	for i := range subLayers {
		profile[i], level[i] = r.Bits(1) == 1, r.Bits(1) == 1
	}
	if subLayers > 0 {
		r.Skip(2 * (8 - subLayers)) // reserved_zero_2bits
	}
	for i := range subLayers {
		if profile[i] {
			r.Skip(88)
		}
		if level[i] {
			r.Skip(8)
		}
	}
	r.UE() // sps_seq_parameter_set_id
	chroma := r.UE()
	if chroma > 3 {
		return SPS{}, fmt.Errorf("h265: SPS: chroma_format_idc %d out of range", chroma)
	}
	separate := chroma == 3 && r.Bits(1) == 1
	w, h := r.UE(), r.UE()
	var left, right, top, bottom uint32
	if r.Bits(1) == 1 { // conformance_window_flag
		left, right, top, bottom = r.UE(), r.UE(), r.UE(), r.UE()
	}
	if err := r.Err(); err != nil {
		return SPS{}, fmt.Errorf("h265: SPS: %w", err)
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
