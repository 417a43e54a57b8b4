package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// Recorder records one camera: frames from its Source are cut into
// MPEG-TS segments, each encrypted to its epoch's public key and stored.
// Plaintext exists only in memory (DESIGN invariant 1) and no private key
// exists here at all (invariant 2): EpochKeys wipes each epoch's private
// key right after splitting it to the custodians.
//
// Two goroutines do the work. The source's Run goroutine pushes frames into
// the segmenter and hands each finished segment to a bounded queue without
// ever waiting; a writer goroutine takes segments from the queue, makes
// sure the epoch record is stored, encrypts and stores them. So neither key
// generation nor a slow disk holds up the camera's connection, whose TCP
// buffer would otherwise back up until the camera drops us.
//
// When the queue is full (the disk has been far too slow for
// QueueSegments segments in a row) the newest segment is dropped, loudly:
// counted in Stats().SegmentsLost, logged as an error and reported as
// EventSegmentLost. Dropping the newest rather than the oldest loses the
// same footage, keeps what is queued in order, and needs no second reader
// on the queue. Blocking instead would stall the source and lose frames
// anyway, only less visibly.
//
// A segment the store refuses for lack of space (store.ErrDiskFull) is
// lost too: Stats().DiskFull is raised, EventDiskFull reported, and
// recording goes on; the next segment stored after space is freed clears
// the alarm (EventDiskRecovered). The store never harms what it holds on
// a full disk.
//
// Everything is stored sealed by the store's node key (Signer; see
// keys/custody.go), so footage is provably this store's and gap-evident:
// epoch records as keys.SealedEpoch, segments as keys.SealedSegment whose
// links chain the camera's stored segments with sequence numbers 0, 1, 2…
// Only a stored segment takes a number, so a gap means footage removed
// after it was stored. A restart continues the chain from the newest
// stored segment; if that is not this store's own valid link a new chain
// starts at 0 (EventChainRestart). A stored epoch record this store did
// not seal is never recorded under: it may be a planted key whose maker
// could read the footage, so that epoch's segments are lost, loudly.
type Recorder struct {
	cfg     RecorderConfig
	log     *slog.Logger
	started atomic.Bool
	stats   recStats

	// hookBeforePut, if set (tests only), runs on the writer goroutine
	// after a segment is encrypted and sealed and before it is stored; an
	// error it returns fails the Put as if the store had refused it.
	hookBeforePut func(store.SegmentMeta) error
}

// NewRecorder checks cfg and returns a Recorder that has not started.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.check(); err != nil {
		if cfg.Camera == "" {
			return nil, fmt.Errorf("media: recorder: %w", err)
		}
		return nil, fmt.Errorf("media: recorder %s: %w", cfg.Camera, err)
	}
	if cfg.EpochLength == 0 {
		cfg.EpochLength = keys.DefaultEpochLength
	}
	if cfg.QueueSegments == 0 {
		cfg.QueueSegments = DefaultQueueSegments
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{cfg: cfg, log: log.With("camera", cfg.Camera)}
	r.stats.init(cfg.Camera, cfg.QueueSegments)
	return r, nil
}

// Run records until ctx ends, then stores the segment being cut and
// everything still queued before it returns ctx.Err(): a clean stop loses
// nothing, a crash at most the segment being cut and the queue. Transient
// camera failures are retried by the source; Run returns early only when
// the source fails for good (a bad URL, an unsupported codec), with that
// error. Run may be called once.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("media: record %s: Run called twice; make a new Recorder", r.cfg.Camera)
	}
	ek, err := keys.NewEpochKeys(keys.EpochKeysConfig{
		Camera:     r.cfg.Camera,
		Custodians: r.cfg.Custodians,
		Length:     r.cfg.EpochLength,
		Now:        r.cfg.Now,
		OnNew:      func(*keys.EpochRecord) { r.stats.epochsMade.Add(1) },
		Logf: func(format string, args ...any) {
			r.log.Warn("epoch keys: " + fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		err = fmt.Errorf("media: record %s: %w", r.cfg.Camera, err)
		r.stats.setFailed(err, r.cfg.Now())
		return err
	}
	defer ek.Close()

	w := newWriter(r, ek)
	queue := make(chan *ts.Segment, r.cfg.QueueSegments)
	r.stats.setQueue(queue)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for seg := range queue {
			w.write(seg)
		}
	}()

	r.stats.setState(StateRecording)
	r.event(EventStarted, "")
	r.log.Info("recording started", "epoch_length", r.cfg.EpochLength, "queue_segments", r.cfg.QueueSegments)

	seg := ts.NewSegmenter(r.cfg.Segment)
	srcErr := r.cfg.Source.Run(ctx, func(f h264.Frame) error {
		r.push(seg, f, queue)
		return nil
	})

	// Stopping: the partial segment joins the queue (waiting for room is
	// fine now, the camera is gone), and the writer drains it all.
	if last := seg.Flush(); last != nil {
		queue <- last
	}
	close(queue)
	<-writerDone

	if ctx.Err() != nil && (srcErr == nil || errors.Is(srcErr, ctx.Err())) {
		r.stats.setState(StateStopped)
		r.event(EventStopped, "stopped")
		r.log.Info("recording stopped")
		return ctx.Err()
	}
	if srcErr == nil { // a Source must not return nil before ctx ends
		srcErr = errors.New("source stopped without an error")
	}
	err = fmt.Errorf("media: record %s: %w", r.cfg.Camera, srcErr)
	r.stats.setFailed(err, r.cfg.Now())
	r.event(EventStopped, err.Error())
	r.log.Error("recording failed", "err", err)
	return err
}

// push feeds one frame to the live view, if any, and to the segmenter, and
// queues the segment it closes. It runs on the source's goroutine and
// never blocks.
func (r *Recorder) push(seg *ts.Segmenter, f h264.Frame, queue chan<- *ts.Segment) {
	if r.cfg.Live != nil {
		r.cfg.Live.Publish(f) // copies f.Data, so before the clear below
	}
	if f.Key {
		r.stats.noteFormat(f)
	}
	done, err := seg.Push(f)
	clear(f.Data) // the segmenter copied it; drop our plaintext copy now
	r.stats.framesDropped.Store(int64(seg.Dropped()))
	if err != nil {
		if r.stats.framesRefused.Add(1) == 1 {
			r.log.Warn("camera sent a frame the segmenter refuses; further ones are only counted", "err", err)
		}
		r.stats.noteError(fmt.Errorf("media: record %s: %w", r.cfg.Camera, err), r.cfg.Now())
	}
	if done == nil {
		return
	}
	select {
	case queue <- done:
	default:
		r.lose(done, fmt.Errorf("media: record %s: segment %s dropped: %d segments already wait for the disk; check the disk or raise the queue",
			r.cfg.Camera, stamp(done.Start), cap(queue)))
	}
}

// lose counts a segment that will not be stored, wipes its plaintext and
// raises the alarm, unless a full disk already has (then one alarm stands
// for all the segments it costs, rather than one every few seconds).
func (r *Recorder) lose(seg *ts.Segment, err error) {
	clear(seg.Data)
	if r.stats.noteLost(err, r.cfg.Now()) {
		r.log.Debug("segment lost to the full disk", "start", seg.Start, "frames", seg.Frames)
		return
	}
	r.log.Error("segment lost", "start", seg.Start, "frames", seg.Frames, "err", err)
	r.event(EventSegmentLost, err.Error())
}

// event reports e to OnEvent, if set.
func (r *Recorder) event(kind EventKind, detail string) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(Event{Time: r.cfg.Now(), Camera: r.cfg.Camera, Kind: kind, Detail: detail})
	}
}
