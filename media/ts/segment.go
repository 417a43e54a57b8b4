package ts

import (
	"bytes"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// Defaults for a zero Config.
const (
	DefaultTarget   = 4 * time.Second
	DefaultMaxBytes = 64 << 20
)

// maxBackStep is the largest step back in time treated as jitter and
// clamped; a larger step (a camera or NTP clock reset) ends the segment.
const maxBackStep = time.Second

// clampStep is what a clamped frame gets after the previous one: just over
// one 90 kHz tick, so its PTS is strictly greater.
const clampStep = 11112 * time.Nanosecond

// defaultInterval stands in for the frame interval when a segment of one
// frame follows no other (End must lie after Start).
const defaultInterval = 40 * time.Millisecond

// Config sets where a Segmenter cuts. The zero value gives 4 s segments.
type Config struct {
	// Target is the duration after which the next keyframe starts a new
	// segment. Zero or negative means DefaultTarget.
	Target time.Duration
	// MaxDuration cuts a segment even without a keyframe, so that a
	// camera that stops sending them cannot grow one without bound; the
	// segment after such a cut does not start with a keyframe. A frame
	// more than MaxDuration after the previous one is a gap: the segment
	// ends before it and the next starts at a keyframe. Zero, or less
	// than Target, means 3×Target.
	MaxDuration time.Duration
	// MaxBytes caps a segment's size the same way. Zero or negative means
	// DefaultMaxBytes; a single frame too large for it is refused.
	MaxBytes int
}

func (c Config) target() time.Duration {
	if c.Target <= 0 {
		return DefaultTarget
	}
	return c.Target
}

func (c Config) maxDuration() time.Duration {
	if c.MaxDuration < c.target() {
		return 3 * c.target()
	}
	return c.MaxDuration
}

func (c Config) maxBytes() int {
	if c.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return c.MaxBytes
}

// Segment is a finished piece of recording: MPEG-TS that plays on its own
// when KeyStart is true.
type Segment struct {
	Start     time.Time // time of the first frame
	End       time.Time // time of the last frame plus one frame interval
	Frames    int       // access units in Data
	Keyframes int       // of which keyframes
	Bytes     int       // len(Data)
	KeyStart  bool      // starts with a keyframe; false only after a MaxDuration or MaxBytes cut
	Data      []byte    // TS packets, PAT and PMT first; owned by the caller
	Codec     h264.Codec
}

// Duration is End minus Start.
func (s *Segment) Duration() time.Duration { return s.End.Sub(s.Start) }

// Segmenter cuts a camera's frames into segments. Frames come in with Push
// one at a time in capture order; each segment ends when the next starts,
// at the first keyframe at or after Config.Target, so every segment starts
// with a keyframe and its parameter sets. Frames before the first keyframe
// cannot be decoded and are dropped (counted by Dropped).
//
// Time is kept monotonic, because PTS is the wall clock: a frame stamped at
// or up to one second before its predecessor (jitter) is restamped just
// after it; a larger step back, or a gap of more than MaxDuration, ends the
// segment and frames are dropped until the next keyframe, whose time starts
// the next segment (its recording time is the truth, even if earlier).
//
// When no keyframe comes for Config.MaxDuration, or the segment would pass
// Config.MaxBytes, it is cut anyway so memory stays bounded; the segment
// after such a cut has KeyStart false.
//
// A segment holds one codec and one sequence parameter set: a frame of
// another codec, or a keyframe whose SPS differs byte for byte from the
// one before (new resolution or encoder settings), ends the segment, and
// the next starts at that keyframe (a non-keyframe of another codec is
// dropped until one comes). A player or an export then never meets a
// stream that changes format in the middle of a segment.
//
// The zero Segmenter uses the zero Config. A Segmenter is not safe for
// concurrent use.
type Segmenter struct {
	cfg Config
	mux Muxer

	cur      *Segment      // the open segment, nil before a keyframe
	last     time.Time     // time of the last frame muxed (after clamping)
	haveLast bool          // whether last is set (a zero Time is a valid stamp)
	interval time.Duration // frame interval estimated from the last closed segment
	sizeHint int           // capacity to give the next segment: the last one's size and a margin
	dropped  int
	codec    h264.Codec // of the frames in cur
	sps      []byte     // the latest keyframe's SPS, to see format changes
}

// NewSegmenter returns a Segmenter that cuts as cfg says.
func NewSegmenter(cfg Config) *Segmenter {
	return &Segmenter{cfg: cfg}
}

// Push adds a frame. It returns the segment the frame closed, or nil. A
// frame that is empty, not Annex-B or larger than MaxBytes is refused with
// an error and changes nothing.
func (s *Segmenter) Push(f h264.Frame) (*Segment, error) {
	if _, err := checkFrame(f); err != nil {
		return nil, fmt.Errorf("ts: push frame at %s: %w", f.Time.Format(time.RFC3339Nano), err)
	}
	size := maxFrameSize(len(f.Data))
	if size > s.cfg.maxBytes() {
		return nil, fmt.Errorf("ts: push frame of %d bytes: %w", len(f.Data), ErrFrameTooLarge)
	}

	var done *Segment
	if s.haveLast {
		switch d := f.Time.Sub(s.last); {
		case d < -maxBackStep || d > s.cfg.maxDuration():
			done = s.Flush()
		case d <= 0:
			f.Time = s.last.Add(clampStep)
		}
	}
	var sps []byte
	if f.Key {
		sps = findSPS(f.Codec, f.Data)
	}
	if s.cur != nil && (f.Codec != s.codec || sps != nil && s.sps != nil && !bytes.Equal(sps, s.sps)) {
		done = s.Flush() // a new format starts a new segment, at a keyframe
	}
	if sps != nil {
		s.sps = append(s.sps[:0], sps...)
	}
	forced := false
	if s.cur != nil {
		switch age := f.Time.Sub(s.cur.Start); {
		case f.Key && age >= s.cfg.target():
			done = s.Flush()
		case age >= s.cfg.maxDuration() || len(s.cur.Data)+size > s.cfg.maxBytes():
			done, forced = s.Flush(), true
		}
	}
	if s.cur == nil {
		if !f.Key && !forced {
			s.dropped++
			return done, nil
		}
		s.open(f)
	}
	s.reserve(size)
	var err error
	if s.cur.Data, err = s.mux.AppendFrame(s.cur.Data, f); err != nil {
		return done, fmt.Errorf("ts: push: %w", err) // unreachable: checked above
	}
	s.cur.Frames++
	if f.Key {
		s.cur.Keyframes++
	}
	s.last, s.haveLast = f.Time, true
	return done, nil
}

// open starts a segment at f. A keyframe brings its own PAT and PMT.
func (s *Segmenter) open(f h264.Frame) {
	s.cur = &Segment{Start: f.Time, KeyStart: f.Key, Codec: f.Codec}
	s.codec = f.Codec
	s.cur.Data = make([]byte, 0, min(s.sizeHint, s.cfg.maxBytes()))
	if !f.Key {
		s.cur.Data = s.mux.AppendTables(s.cur.Data)
	}
}

// reserve makes room for n more bytes in the open segment. Segments are
// large, so it doubles rather than letting append grow by a quarter and
// copy several times over, and it never reserves past MaxBytes.
func (s *Segmenter) reserve(n int) {
	d := s.cur.Data
	if cap(d)-len(d) >= n {
		return
	}
	grown := make([]byte, len(d), max(len(d)+n, min(2*cap(d), s.cfg.maxBytes())))
	copy(grown, d)
	s.cur.Data = grown
}

// Flush ends the open segment and returns it, or nil when none is open.
// Call it when recording stops. The Segmenter stays usable; the next
// segment starts at a keyframe and continues the continuity counters.
func (s *Segmenter) Flush() *Segment {
	seg := s.cur
	if seg == nil {
		return nil
	}
	s.cur = nil
	if seg.Frames > 1 {
		s.interval = s.last.Sub(seg.Start) / time.Duration(seg.Frames-1)
	}
	iv := s.interval
	if iv <= 0 {
		iv = defaultInterval
	}
	seg.End = s.last.Add(iv)
	seg.Bytes = len(seg.Data)
	s.sizeHint = seg.Bytes + seg.Bytes/4
	return seg
}

// Dropped returns how many frames were dropped waiting for a keyframe.
func (s *Segmenter) Dropped() int { return s.dropped }

// findSPS returns the sequence parameter set in an access unit's leading
// non-VCL NAL units, or nil. It stops at the first slice: a keyframe puts
// its parameter sets first, and scanning the slice data would cost a pass
// over the whole frame.
func findSPS(c h264.Codec, au []byte) []byte {
	for i := 0; ; {
		k := bytes.Index(au[i:], []byte{0, 0, 1})
		if k < 0 {
			return nil
		}
		start := i + k + 3
		end := len(au)
		if n := bytes.Index(au[start:], []byte{0, 0, 1}); n >= 0 {
			end = start + n
			for end > start && au[end-1] == 0 {
				end-- // trailing_zero_8bits and a 4-byte start code's zero
			}
		}
		nal := au[start:end]
		if c == h264.CodecH265 {
			switch t := h265.Type(nal); {
			case t == h265.NALSPS:
				return nal
			case h265.IsVCL(t):
				return nil
			}
		} else {
			switch t := h264.Type(nal); {
			case t == h264.NALSPS:
				return nal
			case t >= 1 && t <= 5:
				return nil
			}
		}
		if end == len(au) {
			return nil
		}
		i = end
	}
}
