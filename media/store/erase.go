package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrErased: Put was handed a segment that overlaps an erased range (a
// tombstone), or PutEpoch an epoch record whose whole span was erased.
// Replication, catch-up and re-uploads meet it; it is final, not a retry.
var ErrErased = errors.New("footage was erased")

// bucketTombstones: camera → from (8 bytes, Unix ns, big-endian) ‖ to (8)
// → tombstoneVersion. The key is the whole tombstone, so two erasures of
// the same range are one entry and a scan walks them in order of from.
var bucketTombstones = []byte("tombstones")

const tombstoneVersion = 1

// Tombstone is an erased range of one camera's footage, [From, To).
type Tombstone struct {
	Camera   string
	From, To time.Time // returned in UTC
}

// Erased reports what DeleteRange removed, for the erasure's audit line.
type Erased struct {
	Camera   string
	From, To time.Time     // the range asked for, [From, To)
	Segments []SegmentMeta // removed, by start; span, size and SHA-256 as the index had them
	Epochs   []EpochMeta   // epoch records removed: their keys' shares are gone with them
	Held     []SegmentMeta // overlapping segments kept because skip said so, by start
	Damaged  int           // quarantined files (Recovery.Damaged) of the range removed
}

// AddTombstone records, durably, that camera's footage in [from, to) was
// erased: from its return on, Put refuses any segment that overlaps the
// range and PutEpoch any epoch record wholly inside erased ranges
// (ErrErased), also after a restart. It takes the camera's writer lock, so
// no Put that began before it can store into the range after it returns:
// add the tombstone first, then DeleteRange, and nothing slips in between.
// Adding the same range again is a no-op.
func (s *Store) AddTombstone(camera string, from, to time.Time) error {
	from, to = from.UTC(), to.UTC()
	if err := checkRange(camera, from, to); err != nil {
		return fmt.Errorf("store: tombstone %s: %w", camera, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	defer s.lockCamera(camera)()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketTombstones).CreateBucketIfNotExists([]byte(camera))
		if err != nil {
			return err
		}
		return b.Put(tombstoneKey(from, to), []byte{tombstoneVersion})
	})
	if err != nil {
		return fmt.Errorf("store: tombstone %s %s…%s: index: %w", camera, formatTime(from), formatTime(to), diskFull(err))
	}
	return nil
}

// Tombstones lists camera's erased ranges by start.
func (s *Store) Tombstones(camera string) ([]Tombstone, error) {
	if err := checkCamera(camera); err != nil {
		return nil, fmt.Errorf("store: tombstones of %s: %w: %v", camera, ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var out []Tombstone
	err := s.db.View(func(tx *bolt.Tx) error {
		return eachTombstone(tx, camera, func(t Tombstone) bool { out = append(out, t); return true })
	})
	if err != nil {
		return nil, fmt.Errorf("store: tombstones of %s: %w", camera, err)
	}
	return out, nil
}

// DeleteRange erases camera's footage in [from, to): every segment whose
// span overlaps the range, unless skip (nil: none) says it is held, and
// every epoch record whose whole span lies inside the range and that no
// remaining segment uses (crypto-shredding: without the record nobody can
// decrypt any copy of its segments). Quarantined files of the range go
// too.
//
// The cut is at segment granularity: a segment that straddles from or to
// is deleted whole, so up to one segment's footage (about 4 s) on each
// side of the range goes with it; segments are never re-encoded. An epoch
// record that straddles an end is kept for the segments outside the
// range. DeleteRange does not stop footage from coming back: AddTombstone
// does, and must come first.
//
// Like DeleteBefore it removes files first and index entries after, and
// segments before epoch records, so a crash part-way leaves entries of
// missing files, which Open drops: nothing erased comes back, nothing is
// half-indexed, and running DeleteRange again finishes the job and
// reports only what it removed itself. On an error it reports what it did
// remove. skip runs while the camera's writers wait, so it must not write
// to this store.
func (s *Store) DeleteRange(camera string, from, to time.Time, skip func(SegmentMeta) bool) (Erased, error) {
	er := Erased{Camera: camera, From: from.UTC(), To: to.UTC()}
	err := s.deleteRange(camera, er.From, er.To, skip, &er)
	if err != nil {
		err = fmt.Errorf("store: erase %s %s…%s: %w", camera, formatTime(from), formatTime(to), err)
	}
	return er, err
}

func (s *Store) deleteRange(camera string, from, to time.Time, skip func(SegmentMeta) bool, er *Erased) error {
	if err := checkRange(camera, from, to); err != nil {
		return err
	}
	esc, err := escapeCamera(camera)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	defer s.lockCamera(camera)()

	var segs []entry
	err = s.db.View(func(tx *bolt.Tx) error {
		// A segment is at most MaxSegmentDuration long, so one that
		// overlaps from starts no earlier than that before it.
		return eachIn(tx, bucketSegments, camera, from.Add(-MaxSegmentDuration), to, func(e entry) {
			if e.end.After(from) {
				segs = append(segs, e)
			}
		})
	})
	if err != nil {
		return err
	}
	segs = slices.DeleteFunc(segs, func(e entry) bool {
		if skip != nil && skip(e.segment(camera)) {
			er.Held = append(er.Held, e.segment(camera))
			return true
		}
		return false
	})
	gone, err := s.removeFiles(esc, segs)
	for _, e := range gone {
		er.Segments = append(er.Segments, e.segment(camera))
	}
	if ierr := s.unindex(bucketSegments, camera, gone); ierr != nil || err != nil {
		return errors.Join(err, ierr)
	}

	// Epoch records after the segments' index entries: a segment never
	// outlives the record that makes it decryptable.
	var eps []entry
	err = s.db.View(func(tx *bolt.Tx) error {
		// A segment starts inside its epoch, so the segments that can use
		// an epoch inside [from, to) start inside it too.
		used := map[int64]bool{}
		err := eachIn(tx, bucketSegments, camera, from, to, func(e entry) { used[e.epoch.UnixNano()] = true })
		if err != nil {
			return err
		}
		return eachIn(tx, bucketEpochs, camera, from, to, func(e entry) {
			if !e.end.After(to) && !used[e.start.UnixNano()] {
				eps = append(eps, e)
			}
		})
	})
	if err != nil {
		return err
	}
	gone, err = s.removeFiles(esc, eps)
	for _, e := range gone {
		er.Epochs = append(er.Epochs, EpochMeta{Camera: camera, Start: e.start, End: e.end, Size: e.size, SHA256: e.sha})
	}
	if err := errors.Join(err, s.unindex(bucketEpochs, camera, gone)); err != nil {
		return err
	}
	er.Damaged, err = s.purgeDamaged(esc, func(e entry) bool {
		if e.kind == kindEpoch {
			return !e.start.Before(from) && !e.end.After(to)
		}
		return e.start.Before(to) && e.end.After(from) && (skip == nil || !skip(e.segment(camera)))
	})
	return err
}

// checkRange checks a camera id and a non-empty range the index can key.
func checkRange(camera string, from, to time.Time) error {
	err := checkCamera(camera)
	if err == nil {
		err = errors.Join(checkTime("from", from), checkTime("to", to))
	}
	if err == nil && !from.Before(to) {
		err = fmt.Errorf("range %s…%s is empty or reversed", formatTime(from), formatTime(to))
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// eachIn calls fn for camera's entries under top that start in [from, to),
// in order.
func eachIn(tx *bolt.Tx, top []byte, camera string, from, to time.Time, fn func(entry)) error {
	b := cameraBucket(tx, top, camera)
	if b == nil {
		return nil
	}
	end := clampKey(to)
	c := b.Cursor()
	for k, v := c.Seek(clampKey(from)); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("%w: index: %v", ErrCorrupt, err)
		}
		fn(e)
	}
	return nil
}

func tombstoneKey(from, to time.Time) []byte {
	return binary.BigEndian.AppendUint64(timeKey(from), uint64(to.UnixNano()))
}

// eachTombstone calls fn for camera's tombstones in order of From until fn
// returns false.
func eachTombstone(tx *bolt.Tx, camera string, fn func(Tombstone) bool) error {
	b := cameraBucket(tx, bucketTombstones, camera)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 16 || len(v) != 1 || v[0] != tombstoneVersion {
			// Refuse rather than skip: a tombstone nobody can read must
			// not let erased footage back in.
			return fmt.Errorf("%w: tombstone entry %x=%x of %s", ErrCorrupt, k, v, camera)
		}
		from, to := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:])
		if from > 1<<63-1 || to > 1<<63-1 || from >= to {
			return fmt.Errorf("%w: tombstone entry %x of %s", ErrCorrupt, k, camera)
		}
		t := Tombstone{Camera: camera, From: time.Unix(0, int64(from)).UTC(), To: time.Unix(0, int64(to)).UTC()}
		if !fn(t) {
			return nil
		}
	}
	return nil
}

// checkNotErased refuses a segment [start, end) that overlaps one of
// camera's tombstones.
func checkNotErased(tx *bolt.Tx, camera string, start, end time.Time) error {
	var hit *Tombstone
	err := eachTombstone(tx, camera, func(t Tombstone) bool {
		if !t.From.Before(end) {
			return false // sorted by From: none later overlaps
		}
		if t.To.After(start) {
			hit = &t
			return false
		}
		return true
	})
	if err == nil && hit != nil {
		err = fmt.Errorf("%w: %s…%s overlaps the erased range %s…%s", ErrErased,
			formatTime(start), formatTime(end), formatTime(hit.From), formatTime(hit.To))
	}
	return err
}

// checkEpochNotErased refuses an epoch record whose whole span [start,
// end) lies inside camera's tombstones (together: two adjacent erasures
// erase the epoch between them). An epoch only partly erased is still
// needed by the segments outside the ranges.
func checkEpochNotErased(tx *bolt.Tx, camera string, start, end time.Time) error {
	covered := start // [start, covered) lies inside tombstones
	err := eachTombstone(tx, camera, func(t Tombstone) bool {
		if t.From.After(covered) || !covered.Before(end) {
			return false // sorted by From: a gap, or done
		}
		if t.To.After(covered) {
			covered = t.To
		}
		return true
	})
	if err == nil && !covered.Before(end) {
		err = fmt.Errorf("%w: epoch %s…%s lies inside erased ranges", ErrErased, formatTime(start), formatTime(end))
	}
	return err
}

// UnderTombstones lists camera's stored segments that overlap one of its
// tombstones, by start: what an erasure has yet to delete (one that a
// crash interrupted, or that skipped held segments). An erasure is
// complete on this store when it is empty.
func (s *Store) UnderTombstones(camera string) ([]SegmentMeta, error) {
	ts, err := s.Tombstones(camera)
	if err != nil {
		return nil, err
	}
	seen := map[time.Time]bool{}
	var out []SegmentMeta
	for _, t := range ts {
		segs, err := s.Segments(camera, t.From, t.To)
		if err != nil {
			return nil, err
		}
		for _, m := range segs {
			if !seen[m.Start] {
				seen[m.Start] = true
				out = append(out, m)
			}
		}
	}
	slices.SortFunc(out, func(a, b SegmentMeta) int { return a.Start.Compare(b.Start) })
	return out, nil
}
