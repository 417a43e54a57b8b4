package media

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// Queue bounds for RecorderConfig.QueueSegments.
const (
	// DefaultQueueSegments is about 32 s of 4 s segments: enough to ride
	// out a slow fsync or a retention pass, small enough (a few MB per
	// segment) that a dead disk cannot eat the node's memory.
	DefaultQueueSegments = 8
	// MaxQueueSegments caps the queue; every queued segment is plaintext
	// held in memory.
	MaxQueueSegments = 1024
)

// RecorderConfig is what a Recorder needs. Camera, Source, Store,
// Custodians and Signer are required; every other field documents its
// default.
type RecorderConfig struct {
	// Camera is the policy's camera id, "site/name".
	Camera string
	// Source delivers the camera's frames; the Recorder calls its Run.
	Source source.Source
	// Store keeps the encrypted segments and epoch records. The Recorder
	// does not close it.
	Store *store.Store
	// Custodians receive the shares of every epoch key, 2 of them needed
	// to decrypt (DESIGN §7: dc-a, dc-b and the recovery key).
	Custodians []keys.Custodian
	// Signer is the store's custody signer: its node key under its policy
	// name. Every epoch record and segment is stored sealed by it, and
	// only records it sealed are recorded under. The Recorder does not
	// zero it.
	Signer *keys.CustodySigner
	// EpochLength is the time slice of one epoch key, whole seconds;
	// default keys.DefaultEpochLength.
	EpochLength time.Duration
	// Segment says where segments are cut; the zero value gives ~4 s.
	Segment ts.Config
	// QueueSegments is how many finished segments may wait for the disk;
	// default DefaultQueueSegments. When the queue is full the newest
	// segment is dropped (see Recorder).
	QueueSegments int
	// Now is the clock for epoch keys, events and stats; default time.Now.
	// Footage is stamped by the source, not by Now.
	Now func() time.Time
	// Logger receives the recorder's events; nil discards them. No line
	// carries a key, a share or a camera password.
	Logger *slog.Logger
	// Live, if set, is the camera's live-view hub: the Recorder publishes
	// every frame its source delivers to it, before the segmenter, and
	// never waits for a viewer (Live.Publish does not block). Optional;
	// the Recorder does not close it.
	Live *Live
	// OnEvent, if set, receives audit-worthy events. It is called from
	// the recorder's goroutines, possibly two at once, must return
	// quickly (a slow one holds up recording) and must not call Run.
	OnEvent func(Event)
}

// check validates the configuration; every message says what to fix.
func (c *RecorderConfig) check() error {
	if err := checkCamera(c.Camera); err != nil {
		return err
	}
	if c.Source == nil {
		return errors.New("no Source; open one with source.Open")
	}
	if c.Store == nil {
		return errors.New("no Store; open one with store.Open")
	}
	if len(c.Custodians) < keys.EpochThreshold {
		return fmt.Errorf("%d custodians; at least %d are needed for the %d-of-n split of epoch keys (dc-a, dc-b, recovery)",
			len(c.Custodians), keys.EpochThreshold, keys.EpochThreshold)
	}
	for i, cu := range c.Custodians {
		if cu.Fingerprint().IsZero() {
			return fmt.Errorf("custodian %d is empty; make it with keys.NewCustodian", i)
		}
		for _, d := range c.Custodians[:i] {
			if cu.Fingerprint() == d.Fingerprint() || cu.Name() == d.Name() {
				return fmt.Errorf("custodian %q appears twice", cu.Name())
			}
		}
	}
	if c.Signer == nil {
		return errors.New("no Signer; make the store's custody signer from its node key with keys.NewCustodySigner")
	}
	if l := c.EpochLength; l != 0 && (l < time.Second || l%time.Second != 0 || l > store.MaxEpochDuration) {
		return fmt.Errorf("epoch length %v: want whole seconds from 1s to %v", l, store.MaxEpochDuration)
	}
	if c.QueueSegments < 0 || c.QueueSegments > MaxQueueSegments {
		return fmt.Errorf("queue of %d segments: want 1 to %d (0 for the default %d)",
			c.QueueSegments, MaxQueueSegments, DefaultQueueSegments)
	}
	if d := segmentSpan(c.Segment); d > store.MaxSegmentDuration {
		return fmt.Errorf("segments may last up to %v; the store takes at most %v: lower Segment.Target or MaxDuration",
			d, store.MaxSegmentDuration)
	}
	// Encryption adds a little framing; leave it a MiB of room.
	if c.Segment.MaxBytes > store.MaxSegmentBytes-1<<20 {
		return fmt.Errorf("Segment.MaxBytes %d: the store takes segments up to %d bytes", c.Segment.MaxBytes, store.MaxSegmentBytes-1<<20)
	}
	return nil
}

// segmentSpan is the longest segment cfg lets the segmenter cut (its
// documented MaxDuration default).
func segmentSpan(cfg ts.Config) time.Duration {
	target := cfg.Target
	if target <= 0 {
		target = ts.DefaultTarget
	}
	if cfg.MaxDuration < target {
		return 3 * target
	}
	return cfg.MaxDuration
}

// checkCamera accepts the policy's camera key, "site/name", each part 1–63
// letters, digits, '-', '_' or '.'.
func checkCamera(id string) error {
	site, name, ok := strings.Cut(id, "/")
	if !ok || strings.Contains(name, "/") {
		return fmt.Errorf("camera %q: want the policy's id, site/name", id)
	}
	for _, part := range []string{site, name} {
		if part == "" || len(part) > 63 {
			return fmt.Errorf("camera %q: site and name need 1 to 63 characters each", id)
		}
		for _, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("camera %q: use letters, digits, '-', '_' or '.' in site and name", id)
			}
		}
	}
	return nil
}
