package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Index entries (bbolt values). Keys are the start time as 8 big-endian
// bytes of Unix nanoseconds, so a cursor walks them in time order. Values:
//
//	kind    1 byte  's' segment, 'e' epoch record
//	version 1 byte  1
//	start   8       Unix ns, big-endian (also the key)
//	end     8
//	epoch   8       the segment's epoch start; an epoch record's own start
//	size    8       bytes of the file
//	sha256  32      of the file
//	nameLen 2       then the file's base name, which must be the one the
//	                fields above give (so a value cannot point elsewhere)
const (
	kindSegment  = 's'
	kindEpoch    = 'e'
	entryVersion = 1
	entryFixed   = 2 + 8*4 + 32 + 2
)

type entry struct {
	kind              byte
	start, end, epoch time.Time
	size              int64
	sha               [32]byte
}

// name is the base name of the entry's file.
func (e entry) name() string {
	if e.kind == kindEpoch {
		return epochName{e.start, e.end, e.sha}.String()
	}
	return segName{e.start, e.end, e.epoch, e.sha}.String()
}

// same reports whether e and o describe the same file.
func (e entry) same(o entry) bool {
	return e.kind == o.kind && e.start.Equal(o.start) && e.end.Equal(o.end) && e.epoch.Equal(o.epoch) &&
		e.size == o.size && e.sha == o.sha
}

func (e entry) encode() []byte {
	name := e.name()
	b := make([]byte, 0, entryFixed+len(name))
	b = append(b, e.kind, entryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.start.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.end.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.epoch.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.size))
	b = append(b, e.sha[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
	return append(b, name...)
}

var errBadEntry = errors.New("bad index entry")

// decodeEntry decodes and checks an index value; it accepts only what
// encode produces for a valid entry.
func decodeEntry(b []byte) (entry, error) {
	if len(b) < entryFixed {
		return entry{}, fmt.Errorf("%w: %d bytes", errBadEntry, len(b))
	}
	e := entry{kind: b[0]}
	if e.kind != kindSegment && e.kind != kindEpoch {
		return entry{}, fmt.Errorf("%w: kind %#x", errBadEntry, b[0])
	}
	if b[1] != entryVersion {
		return entry{}, fmt.Errorf("%w: version %d", errBadEntry, b[1])
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[2+8*i:]) }
	for i, p := range []*time.Time{&e.start, &e.end, &e.epoch} {
		if u(i) > 1<<63-1 {
			return entry{}, fmt.Errorf("%w: time before 1970", errBadEntry)
		}
		*p = time.Unix(0, int64(u(i))).UTC()
	}
	size := u(3)
	if size == 0 || size > uint64(MaxSegmentBytes) {
		return entry{}, fmt.Errorf("%w: size %d", errBadEntry, size)
	}
	e.size = int64(size)
	copy(e.sha[:], b[34:66])
	n := int(binary.BigEndian.Uint16(b[66:]))
	if len(b) != entryFixed+n {
		return entry{}, fmt.Errorf("%w: name length %d in %d bytes", errBadEntry, n, len(b))
	}
	var err error
	if e.kind == kindEpoch {
		if !e.epoch.Equal(e.start) {
			err = errors.New("an epoch record's epoch is not its start")
		} else {
			err = checkEpochSpan(e.start, e.end)
		}
	} else {
		err = checkSpan(e.start, e.end, e.epoch)
	}
	if err != nil {
		return entry{}, fmt.Errorf("%w: %v", errBadEntry, err)
	}
	if name := string(b[entryFixed:]); name != e.name() {
		return entry{}, fmt.Errorf("%w: file name %q does not match its fields", errBadEntry, name)
	}
	return e, nil
}

// timeKey is the index key of a start time.
func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// clampKey is timeKey for a time that may be outside the keyable range.
func clampKey(t time.Time) []byte {
	switch {
	case t.Before(minTime):
		return timeKey(minTime)
	case t.After(maxTime):
		return timeKey(maxTime)
	}
	return timeKey(t)
}
