package source

import "time"

// Over UDP packets may come late, twice or not at all. reorder holds up
// to reorderWindow packets (at most reorderWait each) so that a packet
// overtaken by its successors is put back in place before the
// depacketizer, which treats any gap as loss, sees the stream.
const (
	reorderWindow = 64
	reorderWait   = 50 * time.Millisecond
)

// rtpSlot is one buffered datagram; buf is reused.
type rtpSlot struct {
	buf  []byte
	n    int
	seq  uint16
	at   time.Time
	full bool
}

type reorder struct {
	slots   [reorderWindow]rtpSlot
	next    uint16 // the sequence number due next
	started bool
	held    int // slots full

	lost, reordered uint64 // counters for Stats, taken by the caller
}

// push takes a datagram with its sequence number and hands every packet
// now in order to out (whose argument is valid only during the call).
// Packets behind the one due next are dropped (counted as reordered);
// duplicates are ignored; a packet more than the window ahead pushes the
// window forward, giving up the missing ones as lost.
func (r *reorder) push(seq uint16, b []byte, now time.Time, out func([]byte)) {
	if !r.started {
		r.started, r.next = true, seq
	}
	d := int16(seq - r.next)
	switch {
	case d < -1000:
		// A restarted sender: hand on what is held and start over.
		for r.held > 0 {
			r.advance(out)
		}
		r.next, d = seq, 0
	case d < 0:
		// A duplicate of something handed on, or a packet so late that
		// it was given up for lost already.
		r.reordered++
		return
	}
	for int(d) >= reorderWindow {
		if r.held == 0 {
			r.lost += uint64(d)
			r.next, d = seq, 0
			break
		}
		r.advance(out)
		d = int16(seq - r.next)
	}
	s := &r.slots[seq%reorderWindow]
	if s.full {
		return // duplicate
	}
	if r.held > 0 && r.hasAfter(seq) {
		r.reordered++ // it fills a hole behind packets that overtook it
	}
	s.buf = append(s.buf[:0], b...)
	s.n, s.seq, s.at, s.full = len(b), seq, now, true
	r.held++
	r.drain(out)
}

// flush hands on held packets once the oldest has waited reorderWait:
// the packets missing before them are then lost.
func (r *reorder) flush(now time.Time, out func([]byte)) {
	for r.held > 0 && r.expired(now) {
		r.advance(out)
		r.drain(out)
	}
}

// advance hands on the packet due next, or counts it lost.
func (r *reorder) advance(out func([]byte)) {
	s := &r.slots[r.next%reorderWindow]
	if s.full && s.seq == r.next {
		s.full = false
		r.held--
		out(s.buf[:s.n])
	} else {
		r.lost++
	}
	r.next++
}

// drain hands on consecutive held packets from the one due next.
func (r *reorder) drain(out func([]byte)) {
	for r.held > 0 {
		s := &r.slots[r.next%reorderWindow]
		if !s.full || s.seq != r.next {
			return
		}
		r.advance(out)
	}
}

// hasAfter reports whether a packet later than seq is held.
func (r *reorder) hasAfter(seq uint16) bool {
	for i := range r.slots {
		if s := &r.slots[i]; s.full && int16(s.seq-seq) > 0 {
			return true
		}
	}
	return false
}

// expired reports whether some held packet has waited its time.
func (r *reorder) expired(now time.Time) bool {
	for i := range r.slots {
		if s := &r.slots[i]; s.full && now.Sub(s.at) >= reorderWait {
			return true
		}
	}
	return false
}
