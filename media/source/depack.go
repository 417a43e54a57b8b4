package source

import (
	"bytes"

	"github.com/pion/rtp"

	"github.com/custos-cctv/custos/media/h264"
)

// Bounds on one access unit, so a hostile stream cannot make us buffer
// without limit. A 4K intra frame at high quality is well under 8 MiB.
const (
	maxAUBytes = 8 << 20
	maxAUNALs  = 1024
)

// RFC 6184 payload structures.
const (
	nalSTAPA = 24
	nalFUA   = 28
)

// accessUnit is one complete, undamaged access unit ready to emit.
type accessUnit struct {
	ts    uint32 // RTP timestamp
	key   bool
	data  []byte // Annex-B; a keyframe starts with SPS and PPS (H.265: VPS, SPS, PPS)
	codec h264.Codec
}

// depacketizer rebuilds H.264 access units from RTP packets (RFC 6184
// single NAL, STAP-A and FU-A). An access unit ends at the marker bit or
// when the timestamp changes. After any loss (a sequence gap, a fragment
// without its start, a malformed aggregate) it drops the damaged unit and
// everything up to the next keyframe, since those frames reference what
// was lost: better a short gap in a recording than a smeared one.
type depacketizer struct {
	ps       paramSets
	h265     bool // RFC 7798 payloads (depack_h265.go)
	ps265    paramSets265
	skipRASL bool // H.265: started at a CRA, drop its leading RASL pictures

	nals    [][]byte // NALs of the unit being assembled
	size    int
	ts      uint32
	fu      []byte // FU-A reassembly; nil when none in progress
	broken  bool   // the current unit is damaged
	waitKey bool   // drop units until a keyframe

	haveSeq bool
	lastSeq uint16
}

func newDepacketizer(sps, pps []byte) *depacketizer {
	d := &depacketizer{waitKey: true} // a recording starts at a keyframe
	if sps != nil && pps != nil {
		d.ps = paramSets{sps: sps, pps: pps}
	}
	return d
}

// push consumes one packet and returns the units it completed (at most
// two: one ended by a timestamp change, one by this packet's marker).
func (d *depacketizer) push(p *rtp.Packet) []accessUnit {
	lost := false
	if d.haveSeq {
		switch gap := int16(p.SequenceNumber - d.lastSeq - 1); {
		case gap == 0:
		case gap < 0 && gap > -100:
			return nil // duplicate or late: its unit is gone already
		default:
			lost = true // includes a large backwards jump: a restarted sender
		}
	}
	d.haveSeq, d.lastSeq = true, p.SequenceNumber
	if lost {
		d.loss()
	}

	var out []accessUnit
	if (len(d.nals) > 0 || d.fu != nil || d.broken) && p.Timestamp != d.ts {
		// The previous unit's marker packet never came.
		out = d.appendFlush(out)
		if lost {
			d.loss() // the lost packets may have begun this unit too
		}
	}
	d.ts = p.Timestamp
	d.payload(p.Payload)
	if p.Marker {
		out = d.appendFlush(out)
	}
	return out
}

func (d *depacketizer) loss() {
	d.broken, d.waitKey = true, true
	d.fu = nil
}

// payload unpacks one RTP payload into the current unit.
func (d *depacketizer) payload(b []byte) {
	if len(b) == 0 || d.broken {
		return
	}
	if d.h265 {
		d.payload265(b)
		return
	}
	switch t := b[0] & 0x1f; {
	case t >= 1 && t <= 23:
		if d.fu != nil {
			d.loss() // a fragment's end never came
			return
		}
		d.addNAL(b)
	case t == nalSTAPA:
		b = b[1:]
		for len(b) > 0 {
			if len(b) < 2 {
				d.loss()
				return
			}
			n := int(b[0])<<8 | int(b[1])
			if n == 0 || n > len(b)-2 {
				d.loss()
				return
			}
			d.addNAL(b[2 : 2+n])
			b = b[2+n:]
		}
	case t == nalFUA:
		d.fragment(b)
	case t == 0 || t >= 30:
		// reserved: RFC 6184 says ignore
	default:
		d.loss() // STAP-B, MTAP, FU-B: interleaved mode, which we refused
	}
}

func (d *depacketizer) fragment(b []byte) {
	if len(b) < 2 {
		d.loss()
		return
	}
	start, end := b[1]&0x80 != 0, b[1]&0x40 != 0
	switch {
	case start && d.fu != nil:
		d.loss() // the previous fragment's end never came
		return
	case start:
		d.fu = append(make([]byte, 0, 2*len(b)), b[0]&0xe0|b[1]&0x1f)
	case d.fu == nil:
		d.loss() // its start was lost
		return
	}
	if d.size+len(d.fu)+len(b)-2 > maxAUBytes {
		d.loss()
		return
	}
	d.fu = append(d.fu, b[2:]...)
	if end {
		nal := d.fu
		d.fu = nil
		d.addNAL(nal)
	}
}

// addNAL appends a copy of nal to the current unit, within bounds. A NAL
// that could not survive Annex-B framing (7.4.1: no 00 00 00/01/02 inside,
// no trailing zero byte) is damage: emitted, it would split differently
// downstream, e.g. smuggling in a fake IDR.
func (d *depacketizer) addNAL(nal []byte) {
	if d.size+len(nal) > maxAUBytes || len(d.nals) >= maxAUNALs || !validNAL(nal) {
		d.loss()
		d.nals, d.size = nil, 0
		return
	}
	d.nals = append(d.nals, append([]byte(nil), nal...))
	d.size += len(nal)
}

func validNAL(nal []byte) bool {
	if len(nal) == 0 || nal[len(nal)-1] == 0 {
		return false
	}
	for i := 0; ; {
		k := bytes.Index(nal[i:], []byte{0, 0})
		if k < 0 || i+k+2 >= len(nal) {
			return true
		}
		i += k
		if nal[i+2] <= 2 {
			return false
		}
		i++
	}
}

// appendFlush ends the current unit, appending it to out if it is whole,
// has a picture in it, and may be shown (a keyframe, or not waiting for one).
func (d *depacketizer) appendFlush(out []accessUnit) []accessUnit {
	nals, broken := d.nals, d.broken || d.fu != nil
	d.nals, d.size, d.fu, d.broken = nil, 0, nil, false
	if broken {
		d.waitKey = true
		return out
	}
	if d.h265 {
		return d.flush265(out, nals)
	}
	hasPicture := false
	for _, n := range nals {
		if t := h264.Type(n); t >= 1 && t <= 5 {
			hasPicture = true
		}
	}
	if !hasPicture {
		d.ps.learn(nals) // parameter sets sent on their own
		return out
	}
	data, key, ok := buildFrame(nals, &d.ps)
	if !ok || (d.waitKey && !key) {
		return out
	}
	d.waitKey = false
	return append(out, accessUnit{ts: d.ts, key: key, data: data})
}
