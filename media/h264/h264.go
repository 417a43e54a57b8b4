// Package h264 owns the unit every media stage passes along: one access
// unit in Annex-B form with its wall-clock time, plus the few H.264
// bitstream facts Custos needs (NAL boundaries and types, keyframes).
// Despite the package's name, a Frame carries either codec Custos records:
// Frame.Codec says which (the zero value is H.264, so code that predates
// H.265 keeps working); media/h265 has the H.265 facts. It parses no slice
// data: Custos records and forwards video, it never decodes it.
package h264

import (
	"bytes"
	"fmt"
	"time"
)

// NAL unit types Custos looks at (ITU-T H.264 table 7-1).
const (
	NALSlice = 1
	NALIDR   = 5
	NALSEI   = 6
	NALSPS   = 7
	NALPPS   = 8
	NALAUD   = 9
)

// Codec is the video coding of a Frame. The zero value is H.264.
type Codec uint8

// The codecs Custos records.
const (
	CodecH264 Codec = iota // ITU-T H.264 / AVC
	CodecH265              // ITU-T H.265 / HEVC
)

// String names the codec as people and ffprobe do ("h264", "hevc").
func (c Codec) String() string {
	switch c {
	case CodecH264:
		return "h264"
	case CodecH265:
		return "hevc"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Frame is one access unit. Data is Annex-B (each NAL unit preceded by a
// 00 00 00 01 start code). A keyframe's Data starts with the parameter sets
// (H.264: SPS, PPS; H.265: VPS, SPS, PPS) so that any segment or live view
// that begins at it decodes on its own.
type Frame struct {
	Time  time.Time // wall-clock capture time; PTS derives from it
	Key   bool      // H.264: an IDR access unit; H.265: an IRAP one; parameter sets included
	Data  []byte
	Codec Codec // zero: H.264
}

var startCode = []byte{0, 0, 0, 1}

// SplitNALs returns the NAL units of an Annex-B byte stream without their
// start codes. Three- and four-byte start codes are both accepted.
func SplitNALs(b []byte) [][]byte {
	var out [][]byte
	i := nextStart(b, 0)
	for i >= 0 {
		// skip the start code itself
		j := i + 3
		next := nextStart(b, j)
		end := len(b)
		if next >= 0 {
			end = next
			// a 4-byte start code's leading zero belongs to it, not to this NAL
			if end > j && b[end-1] == 0 {
				end--
			}
		}
		if end > j {
			out = append(out, b[j:end])
		}
		i = next
	}
	return out
}

// nextStart finds the next 00 00 01 at or after from and returns its index.
func nextStart(b []byte, from int) int {
	if from >= len(b) {
		return -1
	}
	k := bytes.Index(b[from:], []byte{0, 0, 1})
	if k < 0 {
		return -1
	}
	return from + k
}

// Type returns a NAL unit's type (0 for an empty unit).
func Type(nal []byte) int {
	if len(nal) == 0 {
		return 0
	}
	return int(nal[0] & 0x1f)
}

// JoinNALs builds an Annex-B access unit from NAL units.
func JoinNALs(nals ...[]byte) []byte {
	n := 0
	for _, u := range nals {
		n += len(startCode) + len(u)
	}
	out := make([]byte, 0, n)
	for _, u := range nals {
		out = append(out, startCode...)
		out = append(out, u...)
	}
	return out
}

// IsKey reports whether an access unit holds an IDR slice.
func IsKey(au []byte) bool {
	for _, n := range SplitNALs(au) {
		if Type(n) == NALIDR {
			return true
		}
	}
	return false
}
