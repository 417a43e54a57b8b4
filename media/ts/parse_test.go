package ts

import (
	"bytes"
	"fmt"
)

// A tiny TS reader for tests: it knows only what this package writes, and
// checks the packet-level invariants on the way.

// pesUnit is one PES packet as read back.
type pesUnit struct {
	pts    uint64
	pcr    uint64 // PCR base of its first packet
	hasPCR bool
	rai    bool   // random_access_indicator on its first packet
	es     []byte // elementary stream bytes (the access unit)
	tables bool   // PAT and PMT came right before it
	// streamType is what the last PMT said
	streamType byte
}

// tsReader reads a sequence of TS buffers as one stream, so continuity
// counters are checked across segment boundaries.
type tsReader struct {
	cc         map[uint16]int
	units      []pesUnit
	cur        *pesUnit
	buf        []byte
	tables     int // PAT+PMT seen since the last PES start: 0, 1 or 2
	streamType byte
}

func newTSReader() *tsReader { return &tsReader{cc: map[uint16]int{}} }

// segmentStart reports whether b begins with PAT then PMT packets.
func segmentStart(b []byte) bool {
	return len(b) >= 2*PacketSize &&
		b[0] == syncByte && b[1]&0x1f == 0 && b[2] == 0 &&
		b[PacketSize] == syncByte && uint16(b[PacketSize+1]&0x1f)<<8|uint16(b[PacketSize+2]) == PIDPMT
}

// read consumes one buffer (a segment) of whole packets.
func (r *tsReader) read(b []byte) error {
	if len(b)%PacketSize != 0 {
		return fmt.Errorf("length %d is not a multiple of %d", len(b), PacketSize)
	}
	for off := 0; off < len(b); off += PacketSize {
		if err := r.packet(b[off : off+PacketSize]); err != nil {
			return fmt.Errorf("packet at %d: %w", off, err)
		}
	}
	return nil
}

func (r *tsReader) packet(p []byte) error {
	if p[0] != syncByte {
		return fmt.Errorf("sync byte %#x", p[0])
	}
	if p[1]&0x80 != 0 {
		return fmt.Errorf("transport_error_indicator set")
	}
	pid := uint16(p[1]&0x1f)<<8 | uint16(p[2])
	pusi := p[1]&0x40 != 0
	afc := p[3] >> 4 & 3
	cc := int(p[3] & 0x0f)
	if afc&1 == 0 {
		return fmt.Errorf("pid %#x: packet without payload", pid)
	}
	if prev, ok := r.cc[pid]; ok && cc != (prev+1)&0x0f {
		return fmt.Errorf("pid %#x: continuity counter %d after %d", pid, cc, prev)
	}
	r.cc[pid] = cc

	payload := p[4:]
	var af []byte
	if afc&2 != 0 {
		n := int(payload[0])
		if n > 182 {
			return fmt.Errorf("adaptation field length %d", n)
		}
		af, payload = payload[1:1+n], payload[1+n:]
	}
	switch pid {
	case PIDPAT:
		if !pusi || !bytes.Equal(payload[1:1+len(patSection)], patSection) {
			return fmt.Errorf("unexpected PAT")
		}
		r.tables = 1
	case PIDPMT:
		r.streamType = 0
		for _, sec := range pmtSections {
			if bytes.Equal(payload[1:1+len(sec)], sec) {
				r.streamType = sec[12]
			}
		}
		if !pusi || r.streamType == 0 || r.tables != 1 {
			return fmt.Errorf("unexpected PMT")
		}
		r.tables = 2
	case PIDVideo:
		return r.video(pusi, af, payload)
	default:
		return fmt.Errorf("unexpected pid %#x", pid)
	}
	return nil
}

func (r *tsReader) video(pusi bool, af, payload []byte) error {
	if !pusi {
		if r.cur == nil {
			return fmt.Errorf("video payload before a PES start")
		}
		if len(af) > 0 && af[0] != 0 {
			return fmt.Errorf("adaptation flags %#x in a continuation packet", af[0])
		}
		r.buf = append(r.buf, payload...)
		return nil
	}
	if err := r.finish(); err != nil {
		return err
	}
	u := pesUnit{tables: r.tables == 2, streamType: r.streamType}
	r.tables = 0
	if len(af) >= 7 && af[0]&0x10 != 0 {
		u.hasPCR = true
		u.pcr = uint64(af[1])<<25 | uint64(af[2])<<17 | uint64(af[3])<<9 | uint64(af[4])<<1 | uint64(af[5])>>7
	}
	u.rai = len(af) > 0 && af[0]&0x40 != 0
	r.cur = &u
	r.buf = append(r.buf[:0], payload...)
	return nil
}

// finish parses the PES gathered so far.
func (r *tsReader) finish() error {
	if r.cur == nil {
		return nil
	}
	b := r.buf
	if len(b) < pesHead || !bytes.Equal(b[:4], []byte{0, 0, 1, streamIDVideo}) {
		return fmt.Errorf("bad PES start % x", b[:min(len(b), 4)])
	}
	if b[7]&0xc0 != 0x80 || b[8] != 5 {
		return fmt.Errorf("PES flags %#x header length %d, want PTS only", b[7], b[8])
	}
	if n := int(b[4])<<8 | int(b[5]); n != 0 && n != len(b)-6 {
		return fmt.Errorf("PES_packet_length %d, payload %d", n, len(b)-6)
	}
	p := b[9:14]
	r.cur.pts = uint64(p[0]>>1&7)<<30 | uint64(p[1])<<22 | uint64(p[2]>>1)<<15 | uint64(p[3])<<7 | uint64(p[4]>>1)
	r.cur.es = bytes.Clone(b[14:])
	r.units = append(r.units, *r.cur)
	r.cur = nil
	return nil
}

// done finishes the last PES and returns all of them.
func (r *tsReader) done() ([]pesUnit, error) {
	err := r.finish()
	return r.units, err
}
