package media

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// ErrLiveClosed is what LiveViewer.Next returns once the viewer or its hub
// is closed, wrapped with the camera's id: the stream is over (a grant
// ended, the viewer left or the camera stopped), not merely slow.
var ErrLiveClosed = errors.New("live view closed")

// LiveConfig defaults.
const (
	// DefaultLiveRingGOPs keeps the GOP being received and the one before
	// it: enough to start a viewer at once, little memory.
	DefaultLiveRingGOPs = 2
	// DefaultLiveRingBytes caps the ring far above two GOPs of a typical
	// camera (a few MB), so only a broken or huge stream hits it.
	DefaultLiveRingBytes = 32 << 20
	// DefaultLiveViewerBuffer is 2 s at 25 fps: a viewer further behind
	// than that is slow and skips to the next keyframe.
	DefaultLiveViewerBuffer = 50
)

// LiveConfig tunes a Live hub; the zero value gives the defaults.
type LiveConfig struct {
	// RingGOPs is how many of the most recent GOPs are kept in memory;
	// default DefaultLiveRingGOPs.
	RingGOPs int
	// MaxRingBytes caps the frame bytes the ring keeps; the oldest GOPs go
	// first, and a GOP that alone exceeds it is not kept (new viewers then
	// wait for the next keyframe). Default DefaultLiveRingBytes.
	MaxRingBytes int
	// ViewerBuffer is how many live frames may wait for one viewer before
	// it counts as slow; default DefaultLiveViewerBuffer.
	ViewerBuffer int
	// Now stamps skip events in LiveViewerStats; default time.Now. Frames
	// keep the source's timestamps.
	Now func() time.Time
}

// Live fans one camera's frames out to its live viewers (DESIGN §8). It
// keeps a ring of the most recent GOPs so a new viewer starts at once, at
// the latest keyframe, and then follows the live frames.
//
// Publish copies each frame once into memory the hub owns; every viewer
// gets that same, immutable copy: many viewers cost one copy and one
// append per viewer queue per frame, never an encode. Publish never waits
// for a viewer: a viewer whose queue is full when a frame arrives loses its
// whole queue and resumes at the next keyframe (so what it plays stays
// decodable), counted in its Stats. So neither a slow viewer nor a stalled
// network can slow the recorder that publishes, nor the other viewers.
//
// The frames are plaintext in memory only (DESIGN invariant 1 is about
// disks). An evicted GOP is not wiped: a viewer may still be reading it or
// hold a frame Next returned; the garbage collector frees it once no one
// does. The hub does not check grants (invariant 5): whoever serves a
// viewer re-checks the grant and closes the LiveViewer when it ends.
type Live struct {
	camera string
	cfg    LiveConfig

	keyed atomic.Bool // a keyframe was published: frames are worth copying

	mu        sync.Mutex
	closed    bool
	gops      []*liveGOP // oldest first; the last one is being received
	ringBytes int        // frame bytes held by gops
	viewers   map[*LiveViewer]struct{}
}

// liveGOP is one keyframe and the frames after it, in order.
type liveGOP struct {
	// frames is append-only: a viewer may read a prefix of it while the
	// hub appends beyond that prefix.
	frames []h264.Frame
	bytes  int
	// dropped: the GOP outgrew MaxRingBytes on its own and is no longer
	// kept; a new viewer waits for the next keyframe.
	dropped bool
}

// NewLive returns a hub for camera's live view. Values of cfg that are
// zero or negative take their defaults.
func NewLive(camera string, cfg LiveConfig) *Live {
	if cfg.RingGOPs <= 0 {
		cfg.RingGOPs = DefaultLiveRingGOPs
	}
	if cfg.MaxRingBytes <= 0 {
		cfg.MaxRingBytes = DefaultLiveRingBytes
	}
	if cfg.ViewerBuffer <= 0 {
		cfg.ViewerBuffer = DefaultLiveViewerBuffer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Live{camera: camera, cfg: cfg, viewers: map[*LiveViewer]struct{}{}}
}

// Publish hands one frame to the ring and to every viewer. It is meant for
// the recorder's source goroutine and never blocks on a viewer: it copies
// f.Data once (the caller may reuse or wipe its buffer as soon as Publish
// returns) and holds the hub's lock only to queue that copy. Frames before
// the first keyframe, and frames after Close, are dropped: nothing could
// decode them.
func (l *Live) Publish(f h264.Frame) {
	if !f.Key && !l.keyed.Load() {
		return
	}
	// The one copy, outside the lock; shared read-only from here on.
	f.Data = slices.Clone(f.Data)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if f.Key {
		l.keyed.Store(true)
		l.gops = append(l.gops, &liveGOP{})
		for len(l.gops) > l.cfg.RingGOPs {
			l.dropOldest()
		}
	}
	l.keep(f)
	for v := range l.viewers {
		v.offer(f, l.cfg.Now)
	}
}

// keep appends f to the newest GOP within MaxRingBytes. l.mu is held.
func (l *Live) keep(f h264.Frame) {
	g := l.gops[len(l.gops)-1]
	if g.dropped {
		return
	}
	n := len(f.Data)
	for l.ringBytes+n > l.cfg.MaxRingBytes && len(l.gops) > 1 {
		l.dropOldest()
	}
	if l.ringBytes+n > l.cfg.MaxRingBytes {
		// This GOP alone is over the cap: rather than keep part of it
		// (useless without its keyframe), keep none of it.
		l.ringBytes -= g.bytes
		g.frames, g.bytes, g.dropped = nil, 0, true
		return
	}
	g.frames = append(g.frames, f)
	g.bytes += n
	l.ringBytes += n
}

// dropOldest evicts the oldest GOP; its bytes are left to the garbage
// collector (see Live). l.mu is held.
func (l *Live) dropOldest() {
	l.ringBytes -= l.gops[0].bytes
	l.gops[0] = nil
	l.gops = l.gops[1:]
}

// Subscribe adds a viewer. Its first frame is the latest keyframe in the
// ring, then the rest of that GOP, then live frames; with no keyframe kept
// yet, it starts at the next one. Subscribe does not wait for either; Next
// does. It fails once the hub is closed.
func (l *Live) Subscribe() (*LiveViewer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, l.closedErr("hub closed")
	}
	v := &LiveViewer{
		live:    l,
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		queue:   make([]h264.Frame, l.cfg.ViewerBuffer),
		waitKey: true,
	}
	if len(l.gops) > 0 {
		if g := l.gops[len(l.gops)-1]; len(g.frames) > 0 {
			// A view of the frames so far; the hub only appends past it.
			v.backlog = slices.Clip(g.frames)
			v.waitKey = false
		}
	}
	l.viewers[v] = struct{}{}
	return v, nil
}

// Viewers returns how many viewers are subscribed, for status and tests.
func (l *Live) Viewers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.viewers)
}

// Close ends every viewer (their Next returns ErrLiveClosed), drops the
// ring and refuses further Subscribe calls; later Publish calls do
// nothing. The owner closes the hub when the camera's live view ends;
// the Recorder never does.
func (l *Live) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for v := range l.viewers {
		v.end(l.closedErr("hub closed"))
	}
	clear(l.viewers)
	clear(l.gops)
	l.gops, l.ringBytes = nil, 0
}

func (l *Live) closedErr(why string) error {
	return fmt.Errorf("media: live %s: %s: %w", l.camera, why, ErrLiveClosed)
}

// LiveViewer is one subscriber of a Live hub. Frames from Next share their
// Data with every other viewer and the ring: they must not be modified.
type LiveViewer struct {
	live   *Live
	notify chan struct{} // a frame was queued; capacity 1
	done   chan struct{} // closed when the viewer ends

	mu      sync.Mutex
	err     error        // why the viewer ended; nil while it runs
	backlog []h264.Frame // the GOP so far at Subscribe, served first
	queue   []h264.Frame // ring buffer of live frames, ViewerBuffer long
	head, n int          // queue[head] is the oldest of n queued
	waitKey bool         // queue nothing until the next keyframe
	slow    bool         // waitKey because frames were dropped (counted)
	stats   LiveViewerStats
}

// LiveViewerStats tells how one viewer kept up.
type LiveViewerStats struct {
	Frames   uint64    `json:"frames"`             // frames Next returned
	Skipped  uint64    `json:"skipped"`            // frames dropped because the viewer was slow
	Skips    uint64    `json:"skips"`              // times it fell behind and skipped to a keyframe
	LastSkip time.Time `json:"last_skip,omitzero"` // when it last fell behind
	Queued   int       `json:"queued"`             // frames waiting for Next now
}

// offer queues f (l.mu held). A viewer whose queue is full loses it and
// waits for the next keyframe; now stamps that skip.
func (v *LiveViewer) offer(f h264.Frame, now func() time.Time) {
	v.mu.Lock()
	if v.err != nil {
		v.mu.Unlock()
		return
	}
	if v.n == len(v.queue) {
		// Slow: drop everything it has not read. Whatever comes next
		// starts at a keyframe so its decoder never sees a gap.
		v.stats.Skipped += uint64(v.n + len(v.backlog))
		v.stats.Skips++
		v.stats.LastSkip = now()
		v.dropQueue()
		v.waitKey, v.slow = true, true
	}
	if v.waitKey {
		if !f.Key {
			if v.slow {
				v.stats.Skipped++
			}
			v.mu.Unlock()
			return
		}
		v.waitKey, v.slow = false, false
	}
	v.queue[(v.head+v.n)%len(v.queue)] = f
	v.n++
	v.mu.Unlock()
	select {
	case v.notify <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// dropQueue forgets every unread frame (v.mu held).
func (v *LiveViewer) dropQueue() {
	v.backlog = nil
	clear(v.queue)
	v.head, v.n = 0, 0
}

// end stops the viewer with err (v.mu not held).
func (v *LiveViewer) end(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return
	}
	v.err = err
	v.dropQueue()
	close(v.done)
}

// Next returns the viewer's next frame, waiting for one until ctx ends
// (ctx's error) or the viewer or hub is closed (an error wrapping
// ErrLiveClosed; queued frames are not delivered after that, the stream
// is cut). Frame.Time is the source's wall-clock capture time, unchanged,
// so glass-to-glass latency can be measured downstream. Call Next from
// one goroutine at a time.
func (v *LiveViewer) Next(ctx context.Context) (h264.Frame, error) {
	for {
		if err := ctx.Err(); err != nil {
			return h264.Frame{}, err
		}
		v.mu.Lock()
		if v.err != nil {
			err := v.err
			v.mu.Unlock()
			return h264.Frame{}, err
		}
		if len(v.backlog) > 0 {
			f := v.backlog[0]
			v.backlog = v.backlog[1:]
			v.stats.Frames++
			v.mu.Unlock()
			return f, nil
		}
		if v.n > 0 {
			f := v.queue[v.head]
			v.queue[v.head] = h264.Frame{}
			v.head = (v.head + 1) % len(v.queue)
			v.n--
			v.stats.Frames++
			v.mu.Unlock()
			return f, nil
		}
		v.mu.Unlock()
		select {
		case <-v.notify:
		case <-v.done:
		case <-ctx.Done():
		}
	}
}

// Stats returns how the viewer has kept up so far.
func (v *LiveViewer) Stats() LiveViewerStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.stats
	s.Queued = v.n + len(v.backlog)
	return s
}

// Close ends the viewer: Next returns ErrLiveClosed, and the hub stops
// queueing frames for it. Closing twice is harmless.
func (v *LiveViewer) Close() {
	l := v.live
	l.mu.Lock()
	delete(l.viewers, v)
	l.mu.Unlock()
	v.end(l.closedErr("viewer closed"))
}
