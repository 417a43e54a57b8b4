package media

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// State is where a Recorder is in its life.
type State string

// Recorder states.
const (
	StateIdle      State = "idle"      // Run not called yet
	StateRecording State = "recording" // Run is recording
	StateStopped   State = "stopped"   // Run returned after its context ended
	StateFailed    State = "failed"    // Run returned an error it could not retry
)

// EventKind names an audit-worthy recorder event.
type EventKind string

// Recorder events.
const (
	EventStarted       EventKind = "recording-started"
	EventStopped       EventKind = "recording-stopped" // Detail: "stopped" or the error
	EventSegmentLost   EventKind = "segment-lost"      // Detail: why; not repeated while the disk is full
	EventDiskFull      EventKind = "disk-full"         // raised once until a segment is stored again
	EventDiskRecovered EventKind = "disk-recovered"
	// EventChainRestart: the custody chain could not be continued from
	// the camera's newest stored segment (Detail: why), so a new one
	// starts at sequence 0 and an export shows the break.
	EventChainRestart EventKind = "custody-chain-restarted"
)

// Event is something a Recorder reports through RecorderConfig.OnEvent.
type Event struct {
	Time   time.Time `json:"time"`
	Camera string    `json:"camera"`
	Kind   EventKind `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// RecorderStats is a snapshot of a Recorder's health, as `custos status`
// and `custos cameras --json` show it. It holds no secret and no camera
// password.
type RecorderStats struct {
	Camera string `json:"camera"`
	State  State  `json:"state"`

	// From the source.
	SourceState   string  `json:"source_state"`
	FPS           float64 `json:"fps"`
	BitrateBPS    float64 `json:"bitrate_bps"`
	Frames        uint64  `json:"frames"`                   // frames the camera delivered
	Reconnects    int     `json:"reconnects"`               // source reconnection attempts
	SourceError   string  `json:"source_error,omitempty"`   // the source's last failure
	FramesDropped int64   `json:"frames_dropped"`           // frames before the first keyframe (undecodable)
	FramesRefused int64   `json:"frames_refused,omitempty"` // malformed frames the segmenter refused
	// How RTP arrives ("tcp", "udp" or "tls"), whether an auto transport
	// fell back from UDP to TCP, UDP loss counters, and the certificate
	// fingerprint an rtsps camera presented.
	Transport        string `json:"transport,omitempty"`
	FellBack         bool   `json:"transport_fell_back,omitempty"`
	PacketsLost      uint64 `json:"packets_lost,omitempty"`
	PacketsReordered uint64 `json:"packets_reordered,omitempty"`
	PacketsForeign   uint64 `json:"packets_foreign,omitempty"`
	CertFingerprint  string `json:"cert_fingerprint,omitempty"`
	// The stream as its newest keyframe's SPS says: codec ("h264",
	// "hevc") and picture size ("" and 0 before the first keyframe).
	Codec  string `json:"codec,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`

	// From the recorder.
	LastSegment     time.Time `json:"last_segment,omitzero"` // end of the newest segment stored by this run
	SegmentsWritten uint64    `json:"segments_written"`      // segments stored by this run
	SegmentsLost    uint64    `json:"segments_lost"`         // segments dropped (queue full) or refused by the disk
	Queued          int       `json:"queued"`                // segments waiting for the disk
	QueueCap        int       `json:"queue_cap"`
	DiskFull        bool      `json:"disk_full"` // the last write was refused for lack of space
	DiskFullSince   time.Time `json:"disk_full_since,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
	EpochsMade      uint64    `json:"epochs_made"` // epoch keys made by this run (some ahead of time)

	// From the store: everything stored for the camera, all runs.
	Segments   int       `json:"segments"`
	Bytes      int64     `json:"bytes"`
	Oldest     time.Time `json:"oldest,omitzero"`
	Epochs     int       `json:"epochs"`
	StoreError string    `json:"store_error,omitempty"` // reading the store's stats failed
}

// recStats holds the counters behind RecorderStats. The hot per-frame ones
// are atomics; the rest change once per segment, under mu.
type recStats struct {
	framesDropped atomic.Int64
	framesRefused atomic.Int64
	epochsMade    atomic.Uint64

	mu          sync.Mutex
	camera      string
	state       State
	queue       chan *ts.Segment // nil before Run
	queueCap    int
	lastSegment time.Time
	written     uint64
	lost        uint64
	diskFull    bool
	diskFullAt  time.Time
	lastErr     string
	lastErrAt   time.Time
	format      streamFormat
}

// streamFormat is the stream's codec and size, and the SPS they came from
// (parsed again only when it changes).
type streamFormat struct {
	codec         h264.Codec
	sps           []byte
	width, height int
}

func (s *recStats) init(camera string, queueCap int) {
	s.camera, s.state, s.queueCap = camera, StateIdle, queueCap
}

// noteFormat reads a keyframe's SPS for status, when it differs from the
// last one. An SPS that does not parse leaves the size at 0: the
// segmenter decides what is recorded, not this.
func (s *recStats) noteFormat(f h264.Frame) {
	var sps []byte
	for _, n := range h264.SplitNALs(f.Data) {
		if f.Codec == h264.CodecH265 && h265.Type(n) == h265.NALSPS || f.Codec == h264.CodecH264 && len(n) > 0 && n[0]&0x1f == h264.NALSPS {
			sps = n
			break
		}
	}
	if sps == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.format.codec == f.Codec && bytes.Equal(s.format.sps, sps) {
		return
	}
	s.format = streamFormat{codec: f.Codec, sps: bytes.Clone(sps)}
	if f.Codec == h264.CodecH265 {
		if p, err := h265.ParseSPS(sps); err == nil {
			s.format.width, s.format.height = p.Width, p.Height
		}
	} else if p, err := h264.ParseSPS(sps); err == nil {
		s.format.width, s.format.height = p.Width, p.Height
	}
}

func (s *recStats) setQueue(q chan *ts.Segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = q
}

func (s *recStats) setState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
}

func (s *recStats) setFailed(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = StateFailed
	s.setErrorLocked(err, now)
}

func (s *recStats) noteError(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setErrorLocked(err, now)
}

func (s *recStats) setErrorLocked(err error, now time.Time) {
	s.lastErr, s.lastErrAt = err.Error(), now
}

// noteStored counts a stored segment and clears the disk-full alarm; it
// reports whether the alarm was raised.
func (s *recStats) noteStored(m store.SegmentMeta) (wasFull bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written++
	if m.End.After(s.lastSegment) {
		s.lastSegment = m.End
	}
	wasFull = s.diskFull
	s.diskFull, s.diskFullAt = false, time.Time{}
	return wasFull
}

// raiseDiskFull sets the disk-full alarm; it reports whether it was down.
func (s *recStats) raiseDiskFull(now time.Time) (raised bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.diskFull {
		return false
	}
	s.diskFull, s.diskFullAt = true, now
	return true
}

// noteLost counts a lost segment; it reports whether the disk-full alarm
// is up (which already told the operator).
func (s *recStats) noteLost(err error, now time.Time) (diskFull bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost++
	s.setErrorLocked(err, now)
	return s.diskFull && errors.Is(err, store.ErrDiskFull)
}

// Stats returns a snapshot of the recorder, its source and what the store
// holds for the camera (a scan of the camera's index entries). It is safe
// to call at any time from any goroutine.
func (r *Recorder) Stats() RecorderStats {
	src := r.cfg.Source.Stats()
	out := RecorderStats{
		Camera:           r.cfg.Camera,
		SourceState:      src.State.String(),
		FPS:              src.FPS,
		BitrateBPS:       src.Bitrate,
		Frames:           src.Frames,
		Reconnects:       src.Reconnects,
		SourceError:      src.LastError,
		Transport:        src.Transport,
		FellBack:         src.FellBack,
		PacketsLost:      src.PacketsLost,
		PacketsReordered: src.PacketsReordered,
		PacketsForeign:   src.PacketsForeign,
		CertFingerprint:  src.CertFingerprint,
		FramesDropped:    r.stats.framesDropped.Load(),
		FramesRefused:    r.stats.framesRefused.Load(),
		EpochsMade:       r.stats.epochsMade.Load(),
	}
	s := &r.stats
	s.mu.Lock()
	out.State = s.state
	if s.queue != nil {
		out.Queued = len(s.queue)
	}
	out.QueueCap = s.queueCap
	out.LastSegment = s.lastSegment
	out.SegmentsWritten, out.SegmentsLost = s.written, s.lost
	out.DiskFull, out.DiskFullSince = s.diskFull, s.diskFullAt
	out.LastError, out.LastErrorAt = s.lastErr, s.lastErrAt
	if len(s.format.sps) > 0 {
		out.Codec, out.Width, out.Height = s.format.codec.String(), s.format.width, s.format.height
	}
	s.mu.Unlock()

	st, err := r.cfg.Store.Stats(r.cfg.Camera)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		out.StoreError = err.Error()
	}
	out.Segments, out.Bytes, out.Oldest, out.Epochs = st.Segments, st.Bytes, st.Oldest, st.Epochs
	return out
}
