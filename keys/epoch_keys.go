package keys

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// EpochKeysConfig configures EpochKeys. Zero fields take the documented
// defaults; Camera and Custodians are required.
type EpochKeysConfig struct {
	Camera     string
	Custodians []Custodian
	// Length of an epoch; default DefaultEpochLength.
	Length time.Duration
	// Ahead is how many epochs after the current one are kept ready;
	// default 2.
	Ahead int
	// Now is the clock; default time.Now. Tests pass a fake one.
	Now func() time.Time
	// OnNew, if set, is called once for each record made, before any
	// caller gets it: the store persists and replicates it there. It runs
	// on the generator goroutine or on a Record caller's goroutine, never
	// under a lock, and must not call back into EpochKeys.
	OnNew func(*EpochRecord)
	// Logf reports background generation failures; default: discard.
	// Lines never carry secrets.
	Logf func(format string, args ...any)
}

// EpochKeys hands out a camera's epoch records and keeps the next ones made
// in the background, so that recording never waits for key generation.
// Each epoch gets one key, however many goroutines ask at once. Records of
// epochs before the previous one are forgotten; asking for such an epoch
// again (a clock stepped back) makes a second key for it, which is safe:
// segments name their key by fingerprint, and OnNew sees both records.
type EpochKeys struct {
	cfg  EpochKeysConfig
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu    sync.Mutex
	slots map[int64]*epochSlot // by epoch start, Unix seconds
}

// epochSlot is one epoch's record, made once; ready closes when it is.
type epochSlot struct {
	ready chan struct{}
	enc   *SegmentEncrypter
	err   error
}

// ErrClosed is returned by EpochKeys after Close.
var ErrClosed = errors.New("keys: epoch keys closed")

// NewEpochKeys starts the background generator; Close stops it.
func NewEpochKeys(cfg EpochKeysConfig) (*EpochKeys, error) {
	if cfg.Length == 0 {
		cfg.Length = DefaultEpochLength
	}
	if cfg.Ahead <= 0 {
		cfg.Ahead = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := checkEpochArgs(cfg.Camera, cfg.Length, cfg.Custodians); err != nil {
		return nil, fmt.Errorf("keys: epoch keys: %w", err)
	}
	k := &EpochKeys{cfg: cfg, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), slots: make(map[int64]*epochSlot)}
	go k.run()
	return k, nil
}

// Record returns the record of the epoch containing t. It is normally ready;
// if not (a clock jump, a failed background run), it is made now, which
// takes about a millisecond.
func (k *EpochKeys) Record(t time.Time) (*EpochRecord, error) {
	e, err := k.Encrypter(t)
	if err != nil {
		return nil, err
	}
	return e.Record(), nil
}

// Encrypter returns the segment encrypter of the epoch containing t.
func (k *EpochKeys) Encrypter(t time.Time) (*SegmentEncrypter, error) {
	select {
	case <-k.stop:
		return nil, ErrClosed
	default:
	}
	start := EpochStart(t, k.cfg.Length)
	if !k.has(start.Add(time.Duration(k.cfg.Ahead) * k.cfg.Length)) {
		k.wake() // the generator is behind (or the clock jumped): catch up now
	}
	return k.get(start)
}

// Close stops the generator and waits for it. Records already handed out
// stay valid.
func (k *EpochKeys) Close() error {
	k.once.Do(func() { close(k.stop) })
	<-k.done
	return nil
}

func (k *EpochKeys) wake() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

func (k *EpochKeys) has(start time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.slots[start.Unix()]
	return ok
}

// get returns the epoch's encrypter, making the record if no one has; a
// concurrent caller waits for the one being made.
func (k *EpochKeys) get(start time.Time) (*SegmentEncrypter, error) {
	k.mu.Lock()
	s, ok := k.slots[start.Unix()]
	if !ok {
		s = &epochSlot{ready: make(chan struct{})}
		k.slots[start.Unix()] = s
	}
	k.mu.Unlock()
	if ok {
		<-s.ready
		return s.enc, s.err
	}
	s.enc, s.err = k.make(start)
	if s.err != nil {
		k.mu.Lock()
		delete(k.slots, start.Unix()) // let a later call retry
		k.mu.Unlock()
	}
	close(s.ready)
	return s.enc, s.err
}

func (k *EpochKeys) make(start time.Time) (*SegmentEncrypter, error) {
	rec, err := NewEpochKey(k.cfg.Camera, start, k.cfg.Length, k.cfg.Custodians)
	if err != nil {
		return nil, err
	}
	enc, err := NewSegmentEncrypter(rec)
	if err != nil {
		return nil, err
	}
	if k.cfg.OnNew != nil {
		k.cfg.OnNew(rec)
	}
	return enc, nil
}

// run keeps the current epoch and the next Ahead ones made, forgets older
// ones (keeping the previous epoch for late segments), and sleeps until the
// next boundary, a kick, or Close.
func (k *EpochKeys) run() {
	defer close(k.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		case <-k.kick:
		}
		wait := k.fill()
		t.Stop()
		t.Reset(wait)
	}
}

// fill makes the missing records and returns how long to sleep.
func (k *EpochKeys) fill() time.Duration {
	now := k.cfg.Now()
	cur := EpochStart(now, k.cfg.Length)
	for i := 0; i <= k.cfg.Ahead; i++ {
		select {
		case <-k.stop:
			return time.Hour
		default:
		}
		start := cur.Add(time.Duration(i) * k.cfg.Length)
		if _, err := k.get(start); err != nil {
			k.cfg.Logf("keys: camera %s: making the epoch key for %s: %v", k.cfg.Camera, start.Format(time.RFC3339), err)
			return time.Second // retry soon
		}
	}
	k.prune(cur.Add(-k.cfg.Length))
	return cur.Add(k.cfg.Length).Sub(now)
}

func (k *EpochKeys) prune(keepFrom time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for s := range k.slots {
		if s < keepFrom.Unix() {
			delete(k.slots, s)
		}
	}
}
