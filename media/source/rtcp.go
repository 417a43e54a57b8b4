package source

import (
	"encoding/binary"
	"errors"
	"time"
)

// RTCP, only as much as a receiver needs (RFC 3550 §6): it reads a
// camera's sender reports (for the LSR/DLSR fields of its own reports)
// and BYE, and writes receiver reports.

const (
	rtcpSR  = 200
	rtcpRR  = 201
	rtcpBYE = 203
	// maxRTCPPackets bounds the packets read from one compound datagram.
	maxRTCPPackets = 16
)

var errRTCP = errors.New("malformed RTCP packet")

// rtcpInfo is what a compound RTCP datagram told us.
type rtcpInfo struct {
	srSSRC uint32
	srNTP  uint64 // sender report's NTP timestamp; 0 if none
	bye    bool
}

// parseRTCP reads a compound RTCP datagram. Unknown packet types are
// skipped; a length that overruns the datagram is an error.
func parseRTCP(b []byte) (rtcpInfo, error) {
	var info rtcpInfo
	for n := 0; len(b) > 0; n++ {
		if n == maxRTCPPackets {
			return info, errRTCP
		}
		if len(b) < 4 || b[0]>>6 != 2 {
			return info, errRTCP
		}
		size := 4 * (int(binary.BigEndian.Uint16(b[2:4])) + 1)
		if size > len(b) {
			return info, errRTCP
		}
		p := b[:size]
		switch p[1] {
		case rtcpSR:
			if len(p) < 28 {
				return info, errRTCP
			}
			info.srSSRC = binary.BigEndian.Uint32(p[4:8])
			info.srNTP = binary.BigEndian.Uint64(p[8:16])
		case rtcpBYE:
			info.bye = true
		}
		b = b[size:]
	}
	return info, nil
}

// rtpReceiver keeps the reception statistics of one RTP source (RFC 3550
// appendix A.3 and A.8) for receiver reports.
type rtpReceiver struct {
	ssrc      uint32 // ours
	srcSSRC   uint32 // the camera's, from its packets
	clockRate uint32

	started       bool
	baseSeq       uint16
	maxSeq        uint16
	cycles        uint32
	received      uint32
	expectedPrior uint32
	receivedPrior uint32

	jitter      float64 // in RTP timestamp units
	transit     uint32
	haveTransit bool
	base        time.Time // arrival times count from here

	lsr   uint32    // middle 32 bits of the last SR's NTP timestamp
	lsrAt time.Time // when it arrived
}

// packet records a packet handed on in order (after the reorder window).
func (r *rtpReceiver) packet(seq uint16, ts uint32, ssrc uint32, arrival time.Time) {
	r.srcSSRC = ssrc
	if !r.started {
		r.started, r.baseSeq, r.maxSeq = true, seq, seq
	} else if d := seq - r.maxSeq; d < 0x8000 {
		if seq < r.maxSeq {
			r.cycles += 1 << 16
		}
		r.maxSeq = seq
	}
	r.received++
	// Interarrival jitter (A.8): arrival time in RTP units against the
	// stamp, both wrapping at 32 bits.
	rate := int64(r.clockRate)
	if rate == 0 {
		rate = 90000
	}
	if !r.haveTransit {
		r.base = arrival
	}
	since := arrival.Sub(r.base)
	arr := uint32(int64(since/time.Second)*rate + int64(since%time.Second)*rate/int64(time.Second))
	transit := arr - ts
	if r.haveTransit {
		d := int64(int32(transit - r.transit))
		if d < 0 {
			d = -d
		}
		r.jitter += (float64(d) - r.jitter) / 16
	}
	r.transit, r.haveTransit = transit, true
}

func (r *rtpReceiver) senderReport(ntp uint64, at time.Time) {
	r.lsr = uint32(ntp >> 16)
	r.lsrAt = at
}

// report builds an RTCP RR with one report block (RFC 3550 §6.4.2);
// nil before the first packet.
func (r *rtpReceiver) report(now time.Time) []byte {
	if !r.started {
		return nil
	}
	extMax := r.cycles + uint32(r.maxSeq)
	expected := extMax - uint32(r.baseSeq) + 1
	lost := int64(expected) - int64(r.received)
	lost = max(min(lost, 0x7fffff), -0x800000) // 24-bit signed
	expInt := expected - r.expectedPrior
	recInt := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt > 0 && lostInt > 0 {
		fraction = uint8(lostInt << 8 / int64(expInt))
	}
	var dlsr uint32
	if r.lsr != 0 {
		dlsr = uint32(now.Sub(r.lsrAt).Seconds() * 65536)
	}
	b := make([]byte, 32)
	b[0] = 2<<6 | 1 // version 2, one report block
	b[1] = rtcpRR
	binary.BigEndian.PutUint16(b[2:], 32/4-1)
	binary.BigEndian.PutUint32(b[4:], r.ssrc)
	binary.BigEndian.PutUint32(b[8:], r.srcSSRC)
	binary.BigEndian.PutUint32(b[12:], uint32(fraction)<<24|uint32(lost)&0xffffff)
	binary.BigEndian.PutUint32(b[16:], extMax)
	binary.BigEndian.PutUint32(b[20:], uint32(r.jitter))
	binary.BigEndian.PutUint32(b[24:], r.lsr)
	binary.BigEndian.PutUint32(b[28:], dlsr)
	return b
}
