// Package ts owns the recording format of Custos: H.264 or H.265 access
// units (h264.Frame, whose Codec says which) muxed into MPEG-TS (ISO/IEC
// 13818-1) and cut into GOP-aligned segments of about four seconds, each of
// which plays on its own.
//
// It never decodes video, never touches files, sockets or keys, and never
// logs: it turns frames into bytes in memory. Encryption, storage and
// indexing belong to media/store; capture belongs to media/source.
//
// # Stream layout
//
// One program (number 1): PAT on PID 0, PMT on PID 0x1000, video on PID
// 0x100 (stream type 0x1b for H.264, 0x24 for H.265; each codec's PMT has
// its own version number), which also carries the PCR. PAT and PMT open
// every segment and are repeated before every keyframe (an H.264 IDR, an
// H.265 IRAP, parameter sets first in either case) and whenever the codec
// changes, so a player can join at any keyframe. Each access unit is one
// PES packet (stream id 0xe0, data_alignment_indicator set) that starts
// with an access unit delimiter of its codec (inserted when the camera sent
// none, because players and ffmpeg expect one in TS). The first TS packet of every PES carries a PCR, and on keyframes
// the random_access_indicator. Stuffing goes into the adaptation field.
//
// # Time
//
// PTS is the frame's wall-clock time in 90 kHz ticks modulo 2^33 (see PTS),
// not a counter from zero: a segment's timestamps say when it was recorded,
// and segments cut from one recording concatenate (cat a.ts b.ts) into one
// continuous stream. Continuity counters also run on across the segments of
// one Segmenter, so the concatenation has no CC errors. DTS is omitted
// because it equals PTS (constrained baseline has no B-frames), which is
// what ISO 13818-1 means by a PES with PTS only. The PCR runs PCRDelay
// behind the PTS, the decoder buffering allowance muxers usually give.
// 2^33 ticks wrap every 26.5 hours; players unwrap PTS as they do for
// broadcast.
//
// # Why an own writer and not go-astits
//
// github.com/asticode/go-astits (in go.mod) could write this stream, but it
// builds a Packet struct per 188 bytes and writes it bit by bit through an
// io.Writer fixed at construction, wants the PES payload in one slice (so
// inserting an AUD means copying every frame), and decides by a packet
// count when to repeat tables. Custos needs one fixed one-program layout:
// that is under 300 lines (mux.go, psi.go) that append straight into the
// segment's buffer with no allocation at all. On the fixture, Muxer runs at several GB/s
// against a few hundred MB/s and 2,400 allocations for go-astits
// (BenchmarkMuxer, BenchmarkMuxAstits). The tests read the output back with
// go-astits' demuxer, an independent reading of the standard, and ffprobe.
//
// # Cutting
//
// See Segmenter: cuts at the first keyframe at or after Config.Target, a
// hard cap (Config.MaxDuration, Config.MaxBytes) for cameras that stop
// sending keyframes, small timestamp steps backwards clamped, large ones
// ending the segment, and a change of codec or SPS (resolution) starting a
// new segment at its keyframe.
package ts
