// Package h265 owns the few H.265 (HEVC, ITU-T H.265) bitstream facts
// Custos needs to record, cut and forward H.265 video: NAL unit types,
// which access units are random access points (IRAP), and the picture size
// in a sequence parameter set. Access units travel as h264.Frame with
// Codec set to h264.CodecH265; Annex-B framing (start codes) is the same
// for both codecs, so h264.SplitNALs and h264.JoinNALs serve here too.
//
// Like media/h264 it never decodes slice data, and every function takes
// hostile bytes: a malformed unit is an error or a false, never a panic.
// It imports nothing of Custos's but media/h264.
package h265

import "github.com/custos-cctv/custos/media/h264"

// NAL unit types Custos looks at (ITU-T H.265 table 7-1, RFC 7798 §4.4).
const (
	NALTrailN    = 0  // first VCL type
	NALBLAWLP    = 16 // first IRAP type
	NALIDRWRADL  = 19
	NALIDRNLP    = 20
	NALCRA       = 21
	NALIRAPMax   = 23 // last IRAP type (22, 23 reserved IRAP)
	NALVCLMax    = 31 // last VCL type
	NALVPS       = 32
	NALSPS       = 33
	NALPPS       = 34
	NALAUD       = 35
	NALEOS       = 36
	NALEOB       = 37
	NALFD        = 38 // filler data
	NALSEIPrefix = 39
	NALSEISuffix = 40

	// RTP payload structures (RFC 7798); never in a bitstream.
	NALAP   = 48 // aggregation packet
	NALFU   = 49 // fragmentation unit
	NALPACI = 50 // payload content information
)

// HeaderLen is the size of an H.265 NAL unit header.
const HeaderLen = 2

// AUD is an access unit delimiter NAL unit (layer 0, temporal id 0) with
// pic_type 2, which allows any slice type.
var AUD = []byte{NALAUD << 1, 0x01, 0x50}

// Type returns a NAL unit's type, or -1 for a unit shorter than its
// two-byte header.
func Type(nal []byte) int {
	if len(nal) < HeaderLen {
		return -1
	}
	return int(nal[0]>>1) & 0x3f
}

// IsVCL reports whether type t carries slice data (a picture).
func IsVCL(t int) bool { return t >= NALTrailN && t <= NALVCLMax }

// IsIRAP reports whether type t is an intra random access point picture
// (BLA, IDR, CRA, reserved IRAP): decoding can start there.
func IsIRAP(t int) bool { return t >= NALBLAWLP && t <= NALIRAPMax }

// IsKey reports whether an Annex-B access unit holds an IRAP slice.
func IsKey(au []byte) bool {
	for _, n := range h264.SplitNALs(au) {
		if IsIRAP(Type(n)) {
			return true
		}
	}
	return false
}

// IsKeyFrame reports whether an Annex-B access unit of codec c is a
// keyframe: an IDR for H.264, an IRAP for H.265.
func IsKeyFrame(c h264.Codec, au []byte) bool {
	if c == h264.CodecH265 {
		return IsKey(au)
	}
	return h264.IsKey(au)
}
