// Package clip embeds the fixture video every demo and test plays: ten
// seconds of H.264 (Annex-B, Constrained Baseline, 640x360, 25 fps, 250
// frames, an IDR with in-band SPS and PPS every 25 frames, each frame
// showing its number), and the same pictures in H.265. It owns only the
// bytes; media/source splits and paces them.
package clip

import _ "embed"

// The clips' facts, for tests that check what a source delivers. Both
// clips share them.
const (
	Width  = 640
	Height = 360
	FPS    = 25
	Frames = 250
	GOP    = 25 // frames from one keyframe to the next
)

// H264 is the clip as an Annex-B byte stream. Callers must not modify it.
//
//go:embed clip-640x360-25fps-10s.h264
var H264 []byte

// H265 is the H.264 clip re-encoded to H.265 (Main profile, Annex-B, an
// IDR with in-band VPS, SPS and PPS every 25 frames, no B-frames, closed
// GOP, about 1 Mbit/s). Callers must not modify it. It was made from the
// H.264 clip by gen.sh in this directory (make clip-h265); libx265's output
// differs between versions, so regenerating it changes the bytes but none
// of the facts above.
//
//go:embed clip-640x360-25fps-10s.h265
var H265 []byte
