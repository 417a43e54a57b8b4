package release

// The export of one camera's footage: its segments as served, checked
// against the store's seals and the camera's chain of custody, answered
// for in batches, decrypted and trimmed into the output.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
)

// cameraRun is one camera's export in progress: the segments waiting for
// their custodians' answers, and the camera's chain.
type cameraRun struct {
	x        *exporter
	cam      string
	o        *output
	from, to int64 // the request's range, in 90 kHz ticks
	started  bool  // a keyframe in range was written
	out      []keys.ManifestSegment
	batch    []pendingSegment
	held     int // ciphertext bytes in batch
	chain    custodyChain
}

// camera streams camera's segments from its store into o and returns the
// manifest entries of those that gave frames. Every segment must carry a
// store's seal that verifies, name the epoch record it is opened with, and
// continue the camera's chain (custodyChain); what the chain shows missing,
// or what cannot be opened, fails the export unless gaps are allowed.
func (x *exporter) camera(ctx context.Context, cam string, o *output) ([]keys.ManifestSegment, error) {
	rd, conn, err := x.scopeCall(ctx, cam, OpSegments)
	if err != nil {
		return nil, err
	}
	pf := prefetch(rd)
	defer func() {
		pf.halt()
		select {
		case <-pf.done: // it read to the end or an error
		default:
			conn.Close() // ends a read in progress
			<-pf.done
		}
		rd.Close() // only now: a Reader is not for two goroutines at once
		conn.Close()
	}()
	c := &cameraRun{x: x, cam: cam, o: o, from: ticksOf(x.r.From), to: ticksOf(x.r.To), chain: custodyChain{camera: cam}}
	for {
		sv, err := pf.next(ctx)
		if err == io.EOF {
			return c.finish(ctx)
		}
		if err != nil {
			return nil, err
		}
		if err := c.take(ctx, sv); err != nil {
			return nil, err
		}
	}
}

// take checks one served segment (its header, then its ciphertext) and
// queues it for its custodians' answers.
func (c *cameraRun) take(ctx context.Context, sv served) error {
	x, cam := c.x, c.cam
	var h SegmentHeader
	if len(sv.header) > maxSegmentHeader || rpc.DecodeStrict(sv.header, &h) != nil {
		return errors.New("store sent a bad segment header")
	}
	var sealed []byte
	var err error
	if h.Corrupt != "" {
		// The store's copy is damaged: a replica's, with the hash
		// the store's index gave, stands in.
		if sealed, err = x.replicaSegment(ctx, cam, h); err != nil {
			if !x.allowGaps {
				return fmt.Errorf("%w; or export with --allow-gaps to write the rest with this gap listed", err)
			}
			c.chain.pending = err.Error()
			return nil
		}
	} else if sealed, err = sv.sealed, sv.err; err != nil {
		return fmt.Errorf("segment %s: %w", stamp(h.Start), err)
	}
	if err := checkSegmentSum(h, sealed); err != nil {
		return err
	}
	x.ciphertext += int64(len(sealed))
	ep := x.epochs[epochID(cam, h.EpochStart)]
	g, err := custody.VerifySegment(x.st, cam, sealed, ep)
	if err == nil && (!g.Link.Start.Equal(h.Start) || !g.Link.End.Equal(h.End) || !g.Link.EpochStart.Equal(h.EpochStart)) {
		err = fmt.Errorf("segment %s %s: its signed link says %s…%s: %w", cam, stamp(h.Start), stamp(g.Link.Start), stamp(g.Link.End), custody.ErrBroken)
	}
	if err != nil {
		// Made up, altered or moved: never exported. Without
		// --allow-gaps the export fails; with it the footage is a
		// gap, and the chain check names what is missing.
		if !x.allowGaps {
			return fmt.Errorf("segment %s of %s as served is not the store's: %w", stamp(h.Start), cam, err)
		}
		c.chain.pending = "a segment that did not verify was served in its place: " + err.Error()
		return nil
	}
	if gap, err := c.chain.next(&g.Link); err != nil {
		return err
	} else if gap != nil {
		if !x.allowGaps {
			return fmt.Errorf("%s %s…%s: %s; export with --allow-gaps to write the rest with this gap listed",
				cam, stamp(gap.From), stamp(gap.To), gap.Reason)
		}
		x.gap(gap.Camera, gap.From, gap.To, gap.Missing, gap.Reason)
	}
	if ep == nil {
		// Encrypted to an epoch that does not overlap the scope: it
		// starts before from, and its frames from the next keyframe
		// on are in the next segment. Its link still counts in the
		// chain.
		return nil
	}
	c.batch = append(c.batch, pendingSegment{h: h, link: g.Link, ct: g.Ciphertext, o: x.openers[epochID(cam, h.EpochStart)]})
	c.held += len(sealed)
	if len(c.batch) == releaseBatch || c.held >= maxBatchBytes {
		return c.flush(ctx)
	}
	return nil
}

// flush has the batch's segments answered for, decrypts them and writes
// their frames in range.
func (c *cameraRun) flush(ctx context.Context) error {
	if len(c.batch) == 0 {
		return nil
	}
	x := c.x
	parts, short, err := x.answers(ctx, c.cam, c.batch)
	if err != nil {
		return err
	}
	defer zeroAnswers(parts)
	for i, p := range c.batch {
		if why, ok := short[i]; ok {
			x.gap(c.cam, p.link.Start, p.link.End, 1, fmt.Sprintf("segment %d of store %s (%s): %s", p.link.Seq, p.link.Store, stamp(p.link.Start), why))
			c.started = false // the next frames need a keyframe again
			continue
		}
		ms, used, err := x.segment(p, parts[i], c.cam, c.from, c.to, &c.started, c.o)
		if err != nil {
			return err
		}
		if used {
			c.out = append(c.out, ms)
		}
	}
	c.batch, c.held = c.batch[:0], 0
	return nil
}

// finish flushes the last batch and lists what was skipped at the end.
func (c *cameraRun) finish(ctx context.Context) ([]keys.ManifestSegment, error) {
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	if c.chain.pending != "" {
		// Skipped at the end of the range: nothing after it to
		// count from.
		from := c.x.r.From
		if c.chain.prev != nil {
			from = c.chain.prev.End
		}
		c.x.gap(c.cam, from, c.x.r.To, 0, c.chain.pending)
	}
	return c.out, nil
}

// gap lists footage the export lacks. The reason may quote a peer's
// error: it is made printable and bounded for the manifest.
func (x *exporter) gap(cam string, from, to time.Time, missing uint64, why string) {
	why = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(why, "?"))
	for len(why) > 1000 {
		_, n := utf8.DecodeLastRuneInString(why)
		why = why[:len(why)-n]
	}
	x.gaps = append(x.gaps, keys.ManifestGap{Camera: cam, From: from, To: to, Missing: missing, Reason: why})
}

// custodyChain follows one camera's links in the order served: each must
// be the next of its store's chain. A sequence number that goes back or
// repeats, or a link that names another predecessor than the one served
// before it, is tampering and fails the export whatever the order allows;
// a sequence number that jumps is footage removed after it was stored, a
// gap.
type custodyChain struct {
	camera  string
	prev    *keys.SegmentLink
	pending string // why the segment skipped before this one is missing
}

func (c *custodyChain) next(l *keys.SegmentLink) (*keys.ManifestGap, error) {
	prev, why := c.prev, c.pending
	c.pending = ""
	if prev == nil {
		c.prev = l
		if why != "" {
			return &keys.ManifestGap{Camera: c.camera, From: l.Start, To: l.Start, Reason: why}, nil
		}
		return nil, nil
	}
	if l.Store != prev.Store || l.Seq == 0 && l.Prev == [32]byte{} {
		c.prev = l
		if why == "" {
			why = fmt.Sprintf("the chain of custody restarts (store %s, sequence %d after store %s's %d): footage between may be missing",
				l.Store, l.Seq, prev.Store, prev.Seq)
		}
		return &keys.ManifestGap{Camera: c.camera, From: prev.End, To: l.Start, Reason: why}, nil
	}
	switch {
	case l.Seq <= prev.Seq || l.Start.Before(prev.Start):
		return nil, fmt.Errorf("segment %s of %s is out of order: sequence %d served after %d (reordered or replayed): %w",
			stamp(l.Start), c.camera, l.Seq, prev.Seq, custody.ErrBroken)
	case l.Seq == prev.Seq+1 && l.Prev != prev.Hash():
		return nil, fmt.Errorf("segment %s of %s (sequence %d) does not chain onto the segment before it: %w",
			stamp(l.Start), c.camera, l.Seq, custody.ErrBroken)
	}
	c.prev = l
	missing := l.Seq - prev.Seq - 1
	if missing > 0 && why == "" {
		why = fmt.Sprintf("%d segments of store %s's chain (sequence %d to %d) are missing", missing, l.Store, prev.Seq+1, l.Seq-1)
	}
	if why != "" {
		// Also with nothing missing from the chain: a segment was served
		// here that is not the store's, and it was left out.
		return &keys.ManifestGap{Camera: c.camera, From: prev.End, To: l.Start, Missing: missing, Reason: why}, nil
	}
	return nil, nil
}

// maxBatchBytes bounds the ciphertext held while a batch waits for its
// answers.
const maxBatchBytes = 64 << 20

// segment decrypts one segment and writes its in-scope frames. Every
// frame's time must lie in the span the store signed.
func (x *exporter) segment(p pendingSegment, parts []*keys.Partial, cam string, from, to int64, started *bool, o *output) (keys.ManifestSegment, bool, error) {
	l := &p.link
	pt, err := p.o.DecryptSegment(p.ct, parts...)
	if err != nil {
		return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: %w", stamp(l.Start), cam, err)
	}
	x.progress.add(cam, l.End, int64(len(p.ct)))
	defer clear(pt)
	psum := sha256.Sum256(pt)
	frames, err := demuxTS(pt, l.Start)
	defer clearFrames(frames)
	if err != nil {
		return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: %w", stamp(l.Start), cam, err)
	}
	lo, hi := ticksOf(l.Start), ticksOf(l.End)
	for _, f := range frames {
		if f.Ticks < lo || f.Ticks > hi {
			return keys.ManifestSegment{}, false, fmt.Errorf("segment %s of %s: a frame at %s lies outside the span its store signed (%s…%s): %w",
				stamp(l.Start), cam, stamp(timeOfTicks(f.Ticks)), stamp(l.Start), stamp(l.End), custody.ErrBroken)
		}
	}
	used := false
	for _, f := range frames {
		if f.Ticks < from || f.Ticks >= to {
			continue
		}
		if !*started && !f.Key {
			continue // cannot decode before the first keyframe in range
		}
		*started = true
		if err := o.writeFrame(f); err != nil {
			return keys.ManifestSegment{}, false, fmt.Errorf("export file: %w", err)
		}
		used = true
	}
	lh := l.Hash()
	return keys.ManifestSegment{Camera: cam, Start: l.Start, End: l.End,
		CiphertextSHA256: p.h.SHA256, PlaintextSHA256: hex.EncodeToString(psum[:]),
		Store: l.Store, Seq: l.Seq, Link: hex.EncodeToString(lh[:])}, used, nil
}
