package h264

import (
	"fmt"

	"github.com/custos-cctv/custos/media/internal/rbsp"
)

// SPS is what Custos reads from a sequence parameter set: the size of the
// pictures as shown (after the frame crop), for status and the console.
type SPS struct {
	Width, Height int
}

// maxMBs bounds a picture side in macroblocks: level 6.2 allows 139 264
// macroblocks a frame, so a side above 16384 pixels is no camera's.
const maxMBs = 16384 / 16

// ParseSPS reads a sequence parameter set NAL unit (header included, no
// start code) up to the frame cropping (ITU-T H.264 7.3.2.1.1).
func ParseSPS(nal []byte) (SPS, error) {
	if len(nal) < 1 || nal[0]&0x1f != NALSPS {
		return SPS{}, fmt.Errorf("h264: SPS: not an SPS NAL unit")
	}
	r := rbsp.NewReader(rbsp.Unescape(nal[1:]))
	profile := r.Bits(8)
	r.Skip(16) // constraint flags, level_idc
	r.UE()     // seq_parameter_set_id
	chroma, separate := uint32(1), false
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		if chroma = r.UE(); chroma > 3 {
			return SPS{}, fmt.Errorf("h264: SPS: chroma_format_idc %d out of range", chroma)
		}
		if chroma == 3 {
			separate = r.Flag()
		}
		r.UE()        // bit_depth_luma_minus8
		r.UE()        // bit_depth_chroma_minus8
		r.Skip(1)     // qpprime_y_zero_transform_bypass_flag
		if r.Flag() { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.Flag() {
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(r, size)
				}
			}
		}
	}
	r.UE()          // log2_max_frame_num_minus4
	switch r.UE() { // pic_order_cnt_type
	case 0:
		r.UE() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.Skip(1) // delta_pic_order_always_zero_flag
		r.SE()    // offset_for_non_ref_pic
		r.SE()    // offset_for_top_to_bottom_field
		n := r.UE()
		if n > 255 {
			return SPS{}, fmt.Errorf("h264: SPS: %d reference frames in the POC cycle, at most 255", n)
		}
		for range n {
			r.SE()
		}
	}
	r.UE()    // max_num_ref_frames
	r.Skip(1) // gaps_in_frame_num_value_allowed_flag
	// 64-bit: a ue(v) may be 2^32-2.
	wMBs, hMaps := uint64(r.UE())+1, uint64(r.UE())+1
	frameMBsOnly := r.Flag()
	if !frameMBsOnly {
		r.Skip(1) // mb_adaptive_frame_field_flag
	}
	r.Skip(1) // direct_8x8_inference_flag
	var left, right, top, bottom uint32
	if r.Flag() { // frame_cropping_flag
		left, right, top, bottom = r.UE(), r.UE(), r.UE(), r.UE()
	}
	if err := r.Err(); err != nil {
		return SPS{}, fmt.Errorf("h264: SPS: %w", err)
	}
	fieldFactor := uint64(1)
	if !frameMBsOnly {
		fieldFactor = 2
	}
	if wMBs > maxMBs || hMaps*fieldFactor > maxMBs {
		return SPS{}, fmt.Errorf("h264: SPS: %dx%d macroblocks is not a plausible size", wMBs, hMaps*fieldFactor)
	}
	// Crop units (7-19 … 7-22); 64-bit sums: offsets are ue(v) values.
	unitX, unitY := uint64(1), fieldFactor
	if !separate && chroma != 0 {
		if chroma == 1 || chroma == 2 {
			unitX = 2
		}
		if chroma == 1 {
			unitY = 2 * fieldFactor
		}
	}
	w, h := wMBs*16, hMaps*16*fieldFactor
	cw, ch := unitX*(uint64(left)+uint64(right)), unitY*(uint64(top)+uint64(bottom))
	if cw >= w || ch >= h {
		return SPS{}, fmt.Errorf("h264: SPS: a crop of %d,%d leaves nothing of %dx%d", cw, ch, w, h)
	}
	return SPS{Width: int(w - cw), Height: int(h - ch)}, nil
}

// skipScalingList reads past a scaling_list() of size entries (7.3.2.1.1.1).
func skipScalingList(r *rbsp.Reader, size int) {
	last, next := int32(8), int32(8)
	for range size {
		if next != 0 {
			next = (last + r.SE() + 256) % 256
		}
		if next != 0 {
			last = next
		}
		if r.Err() != nil {
			return
		}
	}
}
