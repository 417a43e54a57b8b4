package media

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
)

// writer turns finished segments into stored, sealed ciphertext. It runs
// on one goroutine (Run's) or, in the benchmark, inline; it is not safe for
// concurrent use.
type writer struct {
	r   *Recorder
	ek  *keys.EpochKeys
	cur *epoch // the epoch of the last segment, its record stored
	ct  []byte // ciphertext, reused from segment to segment

	// The camera's custody chain: the next stored segment's sequence
	// number and the hash of the last stored link. chained is false until
	// the chain is picked up from the store, on the first segment sealed.
	chained bool
	seq     uint64
	prev    [32]byte
}

// epoch is an epoch whose sealed record is durably stored, with the
// encrypter to its public key.
type epoch struct {
	start, end time.Time
	hash       [32]byte // the record's RecordHash, which links name
	enc        *keys.SegmentEncrypter
}

func (e *epoch) covers(t time.Time) bool { return !t.Before(e.start) && t.Before(e.end) }

func newWriter(r *Recorder, ek *keys.EpochKeys) *writer { return &writer{r: r, ek: ek} }

// write stores seg, or counts it lost with the reason. Either way its
// plaintext is wiped before write returns.
func (w *writer) write(seg *ts.Segment) {
	r := w.r
	meta, err := w.put(seg)
	if err == nil {
		if r.stats.noteStored(meta) {
			r.log.Info("disk space is back; recording is stored again")
			r.event(EventDiskRecovered, "segments are stored again")
		}
		return
	}
	if errors.Is(err, store.ErrDiskFull) && r.stats.raiseDiskFull(r.cfg.Now()) {
		r.log.Error("disk full: segments are lost until space is freed", "err", err)
		r.event(EventDiskFull, err.Error())
	}
	r.lose(seg, err)
}

// put encrypts seg to its epoch's key, seals it as the camera's next link
// and stores it, the epoch record first. seg.Data is wiped as soon as it is
// encrypted.
func (w *writer) put(seg *ts.Segment) (store.SegmentMeta, error) {
	camera := w.r.cfg.Camera
	meta := store.SegmentMeta{Camera: camera, Start: seg.Start, End: seg.End}
	ep, err := w.epochFor(seg.Start)
	if err != nil {
		clear(seg.Data)
		return meta, fmt.Errorf("media: record %s: segment %s: %w", camera, stamp(seg.Start), err)
	}
	meta.EpochStart = ep.start

	if need := keys.SealedSize(len(seg.Data)); cap(w.ct) < need {
		w.ct = make([]byte, 0, need+need/8) // room for a somewhat larger next segment
	}
	w.ct, err = ep.enc.Append(w.ct[:0], seg.Data)
	// The plaintext is not needed any more; the sealer keeps no copy of it
	// (the first chunk is assembled in the output and sealed in place).
	clear(seg.Data)
	if err != nil {
		return meta, fmt.Errorf("media: record %s: encrypt segment %s: %w", camera, stamp(seg.Start), err)
	}
	if !w.chained {
		w.resumeChain()
	}
	sealed, link, err := keys.SealSegment(w.r.cfg.Signer, keys.SegmentLink{
		Camera: camera, EpochStart: ep.start, EpochHash: ep.hash,
		Seq: w.seq, Start: seg.Start, End: seg.End, Prev: w.prev,
	}, w.ct)
	if err != nil {
		return meta, fmt.Errorf("media: record %s: seal segment %s: %w", camera, stamp(seg.Start), err)
	}
	if w.r.hookBeforePut != nil {
		err = w.r.hookBeforePut(meta)
	}
	if err == nil {
		err = w.r.cfg.Store.Put(meta, sealed)
	}
	if err != nil {
		return meta, fmt.Errorf("media: record %s: %w", camera, err)
	}
	// Only a stored segment takes a sequence number, so a gap in the
	// sequence always means footage removed after it was stored.
	w.seq, w.prev = link.Seq+1, link.Hash()
	return meta, nil
}

// resumeChain continues the camera's custody chain from its newest stored
// segment, so a restart leaves no gap in the sequence. A newest segment
// that cannot be read, or is not this store's own sealed link, cannot be
// continued: a new chain starts at 0 and the break is reported (an export
// shows it too). It never stops recording.
func (w *writer) resumeChain() {
	r := w.r
	w.chained, w.seq, w.prev = true, 0, [32]byte{}
	l, err := w.newestLink()
	switch {
	case err != nil:
		err = fmt.Errorf("media: record %s: custody chain cannot be continued: %w; starting a new chain at sequence 0", r.cfg.Camera, err)
		r.stats.noteError(err, r.cfg.Now())
		r.log.Error("custody chain restarted", "err", err)
		r.event(EventChainRestart, err.Error())
	case l != nil:
		w.seq, w.prev = l.Seq+1, l.Hash()
		r.log.Info("continuing the custody chain", "seq", w.seq, "after", l.Start)
	}
}

// newestLink returns the link of the camera's newest stored segment, nil
// if there is none, or why it is not this store's to continue.
func (w *writer) newestLink() (*keys.SegmentLink, error) {
	st, camera, signer := w.r.cfg.Store, w.r.cfg.Camera, w.r.cfg.Signer
	m, ok, _, _, err := st.Newest(camera)
	if err != nil || !ok {
		return nil, err
	}
	b, err := st.ReadSegment(m)
	var g *keys.SealedSegment
	if err == nil {
		g, err = keys.ParseSealedSegment(b)
	}
	switch {
	case err != nil:
	case g.Link.Store != signer.Name():
		err = fmt.Errorf("sealed by store %q, not by this store (%q)", g.Link.Store, signer.Name())
	case g.Link.Camera != camera || !g.Link.Start.Equal(m.Start):
		err = fmt.Errorf("its link names camera %s at %s", g.Link.Camera, stamp(g.Link.Start))
	default:
		err = g.Verify(signer.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("newest stored segment %s: %w", stamp(m.Start), err)
	}
	return &g.Link, nil
}

// epochFor returns the epoch covering t with its record durably stored.
//
// A record the store already holds for t is used as it is, if this store
// sealed it: after a restart inside an epoch the store has that epoch's
// record (made by the last run, whose private key is gone), and the store
// refuses a second record for the same span. Otherwise EpochKeys hands out
// the record made ahead of time and it is sealed and stored here, before
// any segment that needs it. A failed PutEpoch (a full disk) stores
// nothing, so it is simply made again for the next segment.
func (w *writer) epochFor(t time.Time) (*epoch, error) {
	if w.cur != nil && w.cur.covers(t) {
		return w.cur, nil
	}
	ep, err := w.storedEpoch(t)
	if err != nil {
		return nil, err
	}
	if ep == nil {
		if ep, err = w.newEpoch(t); err != nil {
			return nil, err
		}
	}
	w.cur = ep
	return ep, nil
}

// storedEpoch returns the stored epoch covering t, or nil if none is.
func (w *writer) storedEpoch(t time.Time) (*epoch, error) {
	st, camera := w.r.cfg.Store, w.r.cfg.Camera
	metas, err := st.Epochs(camera, t, t.Add(time.Nanosecond))
	if err != nil {
		return nil, fmt.Errorf("look up the stored epoch: %w", err)
	}
	for _, m := range metas {
		if !t.Before(m.Start) && t.Before(m.End) {
			return w.loadEpoch(m)
		}
	}
	return nil, nil
}

// loadEpoch reads back a stored record. Only a record this store sealed is
// used: whoever can write to the disk could otherwise plant a record of a
// key they hold ahead of an epoch and read its footage. It is checked like
// any untrusted record (ParseSealedEpoch) and must name this camera and
// span.
func (w *writer) loadEpoch(m store.EpochMeta) (*epoch, error) {
	camera, signer := w.r.cfg.Camera, w.r.cfg.Signer
	b, err := w.r.cfg.Store.Epoch(camera, m.Start)
	if err != nil {
		return nil, fmt.Errorf("read the stored epoch record: %w", err)
	}
	se, err := keys.ParseSealedEpoch(b)
	switch {
	case err != nil:
	case se.Store != signer.Name():
		err = fmt.Errorf("it is sealed by store %q", se.Store)
	default:
		err = se.Verify(signer.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("epoch record %s on this store's disk was not sealed by this store; refusing to record under it: %w",
			stamp(m.Start), err)
	}
	rec := se.Record
	if rec.Camera != camera || !rec.Start.Equal(m.Start) || !rec.End.Equal(m.End) {
		return nil, fmt.Errorf("stored epoch record %s names camera %s, %s to %s: not this camera's record for the span",
			stamp(m.Start), rec.Camera, stamp(rec.Start), stamp(rec.End))
	}
	if !w.sameCustodians(rec) {
		// The custodians changed since that record was made (a restart
		// inside the epoch). Its shares still open with the old
		// custodians' keys; the next epoch uses the new ones.
		w.r.log.Warn("the stored epoch record's custodians differ from the configured ones; using it until the epoch ends",
			"epoch", m.Start)
	}
	enc, err := keys.NewSegmentEncrypter(rec)
	if err != nil {
		return nil, fmt.Errorf("stored epoch record %s: %w", stamp(m.Start), err)
	}
	w.r.log.Info("using the stored epoch record", "epoch", m.Start, "fingerprint", rec.Fingerprint)
	return &epoch{start: rec.Start, end: rec.End, hash: se.RecordHash, enc: enc}, nil
}

func (w *writer) sameCustodians(rec *keys.EpochRecord) bool {
	if len(rec.Shares) != len(w.r.cfg.Custodians) {
		return false
	}
	for i, c := range w.r.cfg.Custodians {
		if rec.Shares[i].Fingerprint != c.Fingerprint() {
			return false
		}
	}
	return true
}

// newEpoch takes the record EpochKeys made for t, seals it and stores it
// durably.
func (w *writer) newEpoch(t time.Time) (*epoch, error) {
	enc, err := w.ek.Encrypter(t)
	if err != nil {
		return nil, fmt.Errorf("epoch key: %w", err)
	}
	rec := enc.Record()
	b, err := keys.SealEpochRecord(w.r.cfg.Signer, rec)
	if err != nil {
		return nil, fmt.Errorf("seal epoch record %s: %w", stamp(rec.Start), err)
	}
	// The hash links name, taken as every verifier takes it.
	se, err := keys.ParseSealedEpoch(b)
	if err != nil {
		return nil, fmt.Errorf("sealed epoch record %s: %w", stamp(rec.Start), err)
	}
	if err := w.r.cfg.Store.PutEpoch(w.r.cfg.Camera, rec.Start, rec.End, b); err != nil {
		return nil, err
	}
	w.r.log.Debug("epoch record stored", "epoch", rec.Start, "fingerprint", rec.Fingerprint)
	return &epoch{start: rec.Start, end: rec.End, hash: se.RecordHash, enc: enc}, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
