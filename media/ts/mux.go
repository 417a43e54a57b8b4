package ts

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// PacketSize is the size of every TS packet; each starts with 0x47.
const PacketSize = 188

// PCRDelay is how far the PCR runs behind the PTS: the time a decoder may
// buffer a frame before showing it. 700 ms is what ffmpeg gives by default;
// it only has to cover the largest keyframe at the stream's bitrate.
const PCRDelay = 700 * time.Millisecond

const (
	syncByte = 0x47
	ptsWrap  = 1 << 33 // PTS and PCR base are 33-bit counters
	tsHeader = 4
	pcrAF    = 8 // adaptation field with a PCR: length, flags, 6 PCR bytes
	pesHead  = 14

	pcrDelayTicks = uint64(PCRDelay/time.Millisecond) * 90
)

// aud is an H.264 access unit delimiter, primary_pic_type 7 (any slice
// type); aud265 is H.265's, pic_type 2 (any slice type).
var (
	aud    = []byte{0, 0, 0, 1, h264.NALAUD, 0xf0}
	aud265 = append([]byte{0, 0, 0, 1}, h265.AUD...)
)

// maxAUD is the longer of the two delimiters, for size bounds.
const maxAUD = 7

// stuffing is a run of 0xff bytes to copy adaptation-field stuffing from.
var stuffing = slices.Repeat([]byte{0xff}, PacketSize)

// Errors for frames the muxer refuses; they come wrapped with the operation.
var (
	ErrEmptyFrame    = errors.New("empty frame")
	ErrNotAnnexB     = errors.New("frame is not Annex-B (no start code at its beginning)")
	ErrFrameTooLarge = errors.New("frame larger than the segment size cap (Config.MaxBytes)")
	ErrUnknownCodec  = errors.New("frame of a codec other than H.264 and H.265")
)

// PTS returns t as a 90 kHz MPEG timestamp: ticks since the Unix epoch
// modulo 2^33. It is computed from seconds and nanoseconds apart so that no
// time.Time, however far from 1970, overflows.
func PTS(t time.Time) uint64 {
	s := t.Unix() % ptsWrap
	if s < 0 {
		s += ptsWrap
	}
	ticks := uint64(s)*90000 + uint64(t.Nanosecond())*9/100000
	return ticks % ptsWrap
}

// Muxer writes one H.264 or H.265 program as MPEG-TS into caller-supplied
// buffers. It holds only the continuity counters and the codec of the last
// frame, so the output of one Muxer, split wherever the caller likes at
// packet boundaries, concatenates into one stream without CC errors. The
// zero value is ready to use and starts out H.264; a Muxer is not safe for
// concurrent use.
type Muxer struct {
	ccPAT, ccPMT, ccVideo uint8
	codec                 h264.Codec // what the PMT says
}

// SetCodec sets the codec the next AppendTables announces, for a stream
// that starts with them before its first frame. AppendFrame sets it too.
// A codec Custos does not mux is ignored (AppendFrame refuses its frames).
func (m *Muxer) SetCodec(c h264.Codec) {
	if StreamType(c) != 0 {
		m.codec = c
	}
}

// AppendTables appends a PAT and a PMT packet to dst. A segment must start
// with them; AppendFrame also writes them before each keyframe and when
// the codec changes.
func (m *Muxer) AppendTables(dst []byte) []byte {
	dst = appendSection(dst, PIDPAT, m.ccPAT, patSection)
	dst = appendSection(dst, PIDPMT, m.ccPMT, pmtSections[m.codec])
	m.ccPAT = (m.ccPAT + 1) & 0x0f
	m.ccPMT = (m.ccPMT + 1) & 0x0f
	return dst
}

// AppendFrame appends f as one PES packet (preceded by PAT and PMT when f is
// a keyframe or its codec differs from the last frame's) and returns the
// extended buffer. On error dst is returned unchanged.
func (m *Muxer) AppendFrame(dst []byte, f h264.Frame) ([]byte, error) {
	hasAUD, err := checkFrame(f)
	if err != nil {
		return dst, fmt.Errorf("ts: mux frame at %s: %w", f.Time.Format(time.RFC3339Nano), err)
	}
	if f.Key || f.Codec != m.codec {
		m.codec = f.Codec
		dst = m.AppendTables(dst)
	}
	pts := PTS(f.Time)
	pcr := (pts + ptsWrap - pcrDelayTicks) % ptsWrap

	// The PES header and, when missing, the AUD go first; f.Data follows
	// without being copied into a scratch buffer.
	var hb [pesHead + maxAUD]byte
	var delim []byte
	if !hasAUD {
		delim = aud
		if f.Codec == h264.CodecH265 {
			delim = aud265
		}
	}
	head := appendPESHeader(hb[:0], pts, len(f.Data), len(delim))
	head = append(head, delim...)
	return m.appendPES(dst, head, f.Data, f.Key, pcr), nil
}

// checkFrame checks that f is of a codec Custos muxes and that its Data
// is Annex-B, and reports whether it starts with an access unit delimiter.
func checkFrame(f h264.Frame) (hasAUD bool, err error) {
	if StreamType(f.Codec) == 0 {
		return false, fmt.Errorf("%w (%v)", ErrUnknownCodec, f.Codec)
	}
	i, err := nalStart(f.Data)
	if err != nil {
		return false, err
	}
	if f.Codec == h264.CodecH265 {
		return h265.Type(f.Data[i:]) == h265.NALAUD, nil
	}
	return h264.Type(f.Data[i:]) == h264.NALAUD, nil
}

// nalStart checks that b begins with an Annex-B start code (any number of
// leading zero bytes, at least two, then 01) and returns where the NAL
// unit after it begins.
func nalStart(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, ErrEmptyFrame
	}
	i := 0
	for i < len(b) && b[i] == 0 {
		i++
	}
	if i < 2 || i+1 >= len(b) || b[i] != 1 {
		return 0, ErrNotAnnexB
	}
	return i + 1, nil
}

// appendPESHeader appends a PES header with a PTS only: DTS equals PTS in
// a stream without B-frames, and ISO 13818-1 takes an absent DTS as equal.
func appendPESHeader(dst []byte, pts uint64, dataLen, audLen int) []byte {
	n := 3 + 5 + dataLen + audLen // header extension, PTS, payload
	if n > 0xffff {
		n = 0 // unbounded, allowed for video in TS
	}
	return append(dst,
		0x00, 0x00, 0x01, streamIDVideo,
		byte(n>>8), byte(n),
		0x84, // '10', not scrambled, data_alignment_indicator: the PES starts an AU
		0x80, // PTS_DTS_flags '10': PTS only
		5,    // PES_header_data_length
		0x20|byte(pts>>29)&0x0e|1,
		byte(pts>>22),
		byte(pts>>14)&0xfe|1,
		byte(pts>>7),
		byte(pts<<1)|1,
	)
}

// appendPES cuts the PES (head then body) into TS packets on the video PID.
// The first packet carries the PCR (and random_access_indicator on
// keyframes); the last is padded with adaptation-field stuffing, because
// 0xff after a PES payload would be read as video.
func (m *Muxer) appendPES(dst, head, body []byte, key bool, pcr uint64) []byte {
	left := len(head) + len(body)
	dst = slices.Grow(dst, (left/(PacketSize-tsHeader)+2)*PacketSize)
	first := true
	for left > 0 {
		af := 0 // adaptation field bytes before stuffing, length byte included
		if first {
			af = pcrAF
		}
		room := PacketSize - tsHeader - af
		stuff := 0
		if left < room {
			stuff, room = room-left, left
		}

		b1 := byte(PIDVideo >> 8)
		if first {
			b1 |= 0x40 // payload_unit_start_indicator
		}
		b3 := 0x10 | m.ccVideo // payload present
		if af+stuff > 0 {
			b3 |= 0x20 // adaptation field present
		}
		dst = append(dst, syncByte, b1, byte(PIDVideo&0xff), b3)
		m.ccVideo = (m.ccVideo + 1) & 0x0f

		switch {
		case first:
			flags := byte(0x10) // PCR_flag
			if key {
				flags |= 0x40 // random_access_indicator
			}
			dst = append(dst, byte(pcrAF-1+stuff), flags,
				byte(pcr>>25), byte(pcr>>17), byte(pcr>>9), byte(pcr>>1),
				byte(pcr<<7)|0x7e, 0x00) // base low bit, reserved, extension 0
			dst = append(dst, stuffing[:stuff]...)
		case stuff == 1:
			dst = append(dst, 0x00) // an adaptation field of length 0
		case stuff > 1:
			dst = append(dst, byte(stuff-1), 0x00)
			dst = append(dst, stuffing[:stuff-2]...)
		}

		n := min(room, len(head))
		dst = append(dst, head[:n]...)
		head = head[n:]
		dst = append(dst, body[:room-n]...)
		body = body[room-n:]
		left -= room
		first = false
	}
	return dst
}

// maxFrameSize bounds the TS bytes AppendFrame writes for dataLen bytes of
// access unit, tables included.
func maxFrameSize(dataLen int) int {
	payload := pesHead + maxAUD + dataLen
	return (payload/(PacketSize-tsHeader-pcrAF) + 3) * PacketSize
}
