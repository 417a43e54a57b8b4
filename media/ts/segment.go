package ts

import (
	"fmt"
	"time"

	"github.com/custos-cctv/custos/media/h264"
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
}

// NewSegmenter returns a Segmenter that cuts as cfg says.
func NewSegmenter(cfg Config) *Segmenter {
	return &Segmenter{cfg: cfg}
}

// Push adds a frame. It returns the segment the frame closed, or nil. A
// frame that is empty, not Annex-B or larger than MaxBytes is refused with
// an error and changes nothing.
func (s *Segmenter) Push(f h264.Frame) (*Segment, error) {
	if _, err := firstNAL(f.Data); err != nil {
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
	s.cur = &Segment{Start: f.Time, KeyStart: f.Key}
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
