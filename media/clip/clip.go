// Package clip embeds the fixture video every demo and test plays: ten
// seconds of H.264 (Annex-B, Constrained Baseline, 640x360, 25 fps, 250
// frames, an IDR with in-band SPS and PPS every 25 frames, each frame
// showing its number). It owns only the bytes; media/source splits and
// paces them.
package clip

import _ "embed"

// The clip's facts, for tests that check what a source delivers.
const (
	Width  = 640
	Height = 360
	FPS    = 25
	Frames = 250
	GOP    = 25 // frames from one IDR to the next
)

// H264 is the clip as an Annex-B byte stream. Callers must not modify it.
//
//go:embed clip-640x360-25fps-10s.h264
var H264 []byte
