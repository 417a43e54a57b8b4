package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/asticode/go-astits"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
)

// MPEG-TS stream types (ISO/IEC 13818-1 table 2-34) that say which codec a
// camera sends.
const (
	streamTypeMPEG1Video = 0x01
	streamTypeMPEG2Video = 0x02
	streamTypeMPEG4Video = 0x10
	streamTypeH264       = 0x1b
	streamTypeH265       = 0x24
	streamTypeH266       = 0x33
)

const (
	pidPAT = 0
	// maxSection bounds a PAT or PMT section (section_length is at most
	// 1021, plus the 3 bytes before it).
	maxSection = 1024
	// maxBeforePMT bounds the packets read before the tables say where the
	// video is (about 1.9 MB; Custos writes them first and before every
	// key frame).
	maxBeforePMT = 10000
)

// ErrNotPlayable is returned by Feed when the stream's video is not H.264.
// The error Feed returns is a sentence for the viewer, for instance "H.265
// is not playable in the browser; watch it with custos live"; test for it
// with errors.Is.
var ErrNotPlayable = errors.New("the camera's video is not playable in the browser; watch it with custos live")

// notPlayable is ErrNotPlayable with the codec named.
type notPlayable struct{ msg string }

func (e *notPlayable) Error() string        { return e.msg }
func (e *notPlayable) Is(target error) bool { return target == ErrNotPlayable }

// codecName names the video stream types a camera may send instead of H.264.
func codecName(streamType uint8) string {
	switch streamType {
	case streamTypeH265:
		return "H.265"
	case streamTypeH266:
		return "H.266"
	case streamTypeMPEG1Video, streamTypeMPEG2Video:
		return "MPEG-2 video"
	case streamTypeMPEG4Video:
		return "MPEG-4 video"
	}
	return ""
}

// frame is one access unit of the stream.
type frame struct {
	pts  uint64 // 90 kHz, 33 bits
	key  bool
	data []byte // Annex-B
}

// demuxer reads H.264 access units from MPEG-TS. go-astits parses the TS
// packets; the PAT, the PMT and the PES are read here because astits'
// NextData hands a PES over only when the next one starts, which would hold
// every frame back by one frame interval.
type demuxer struct {
	dmx      *astits.Demuxer
	maxFrame int

	pmtPID   int // -1 until the PAT names it
	videoPID int // -1 until the PMT names it
	psi      []byte
	psiPID   int
	before   int // packets read before the PMT named the video

	out []frame // access units complete, not yet returned

	// The PES being collected.
	cur     []byte
	curPTS  uint64
	curLen  int // expected payload bytes; 0: until the next PES starts
	inPES   bool
	lastCC  int
	broken  bool // data lost since the last key frame: wait for the next
	skipped int  // access units dropped for broken or oversized data
}

func newDemuxer(ctx context.Context, r io.Reader, maxFrame int) *demuxer {
	return &demuxer{
		dmx:      astits.NewDemuxer(ctx, r, astits.DemuxerOptPacketSize(astits.MpegTsPacketSize)),
		maxFrame: maxFrame,
		pmtPID:   -1,
		videoPID: -1,
		psiPID:   -1,
		lastCC:   -1,
	}
}

// next returns the next complete access unit, io.EOF at the end of the
// stream, or an error (ErrNotPlayable when the video is not H.264).
func (d *demuxer) next() (frame, error) {
	for len(d.out) == 0 {
		p, err := d.dmx.NextPacket()
		if errors.Is(err, astits.ErrNoMorePackets) {
			// A PES without a length ends with the stream.
			if f, ok := d.finish(); ok {
				return f, nil
			}
			return frame{}, io.EOF
		}
		if err != nil {
			return frame{}, fmt.Errorf("reading MPEG-TS: %w", err)
		}
		if d.videoPID < 0 {
			if d.before++; d.before > maxBeforePMT {
				return frame{}, fmt.Errorf("no H.264 program in the first %d MPEG-TS packets", maxBeforePMT)
			}
		}
		if p.Header.TransportErrorIndicator || !p.Header.HasPayload {
			continue
		}
		pid := int(p.Header.PID)
		switch {
		case pid == pidPAT || pid == d.pmtPID:
			if err := d.section(p); err != nil {
				return frame{}, err
			}
		case pid == d.videoPID:
			d.video(p)
		}
	}
	f := d.out[0]
	d.out = append(d.out[:0], d.out[1:]...)
	return f, nil
}

// section collects a PAT or PMT section and reads it when complete.
func (d *demuxer) section(p *astits.Packet) error {
	b := p.Payload
	pid := int(p.Header.PID)
	if p.Header.PayloadUnitStartIndicator {
		if len(b) < 1 || int(b[0])+1 > len(b) {
			return nil // a broken pointer field: wait for the next table
		}
		d.psi = append(d.psi[:0], b[1+int(b[0]):]...)
		d.psiPID = pid
	} else if d.psiPID == pid && len(d.psi) > 0 {
		d.psi = append(d.psi, b...)
	} else {
		return nil
	}
	if len(d.psi) > maxSection {
		d.psi, d.psiPID = d.psi[:0], -1
		return nil
	}
	if len(d.psi) < 3 {
		return nil
	}
	n := 3 + (int(d.psi[1]&0x0f)<<8 | int(d.psi[2]))
	if len(d.psi) < n {
		return nil // continues in the next packet
	}
	sec := d.psi[:n]
	d.psiPID = -1
	if n < 12 || ts.CRC32MPEG(sec) != 0 {
		return nil // not a section we can trust; tables repeat at every key frame
	}
	switch {
	case pid == pidPAT && sec[0] == 0x00:
		d.readPAT(sec)
	case pid == d.pmtPID && sec[0] == 0x02:
		return d.readPMT(sec)
	}
	return nil
}

// readPAT takes the first program's PMT PID.
func (d *demuxer) readPAT(sec []byte) {
	for e := sec[8 : len(sec)-4]; len(e) >= 4; e = e[4:] {
		program := int(e[0])<<8 | int(e[1])
		if program != 0 { // 0 names the network PID
			d.pmtPID = int(e[2]&0x1f)<<8 | int(e[3])
			return
		}
	}
}

// readPMT takes the first H.264 stream; a program whose video is something
// else is not playable.
func (d *demuxer) readPMT(sec []byte) error {
	infoLen := int(sec[10]&0x0f)<<8 | int(sec[11])
	if 12+infoLen > len(sec)-4 {
		return nil
	}
	other := uint8(0)
	for e := sec[12+infoLen : len(sec)-4]; len(e) >= 5; {
		st := e[0]
		pid := int(e[1]&0x1f)<<8 | int(e[2])
		esLen := int(e[3]&0x0f)<<8 | int(e[4])
		if st == streamTypeH264 {
			if d.videoPID != pid {
				d.videoPID = pid
				d.dropPES()
				d.lastCC = -1
			}
			return nil
		}
		if other == 0 && codecName(st) != "" {
			other = st
		}
		if 5+esLen > len(e) {
			break
		}
		e = e[5+esLen:]
	}
	if other != 0 {
		return &notPlayable{fmt.Sprintf("%s is not playable in the browser; watch it with custos live", codecName(other))}
	}
	return &notPlayable{"the camera's stream has no H.264 video to play in the browser; watch it with custos live"}
}

// video adds a packet of the video PID to the PES being collected and
// queues the access units it completes: the previous one when this packet
// starts a PES and the previous had no length, and this one when it reaches
// its length.
func (d *demuxer) video(p *astits.Packet) {
	cc := int(p.Header.ContinuityCounter)
	if d.lastCC >= 0 && cc == d.lastCC {
		return // a duplicate packet
	}
	lost := d.lastCC >= 0 && cc != (d.lastCC+1)&0x0f
	if p.AdaptationField != nil && p.AdaptationField.DiscontinuityIndicator {
		lost = false // the sender says the counter restarts here
	}
	d.lastCC = cc
	if lost {
		d.dropPES()
	}
	if p.Header.PayloadUnitStartIndicator {
		if f, ok := d.finish(); ok {
			d.out = append(d.out, f)
		}
		if !d.startPES(p.Payload) {
			return
		}
	} else {
		if !d.inPES {
			return
		}
		if len(d.cur)+len(p.Payload) > d.maxFrame {
			d.dropPES()
			return
		}
		d.cur = append(d.cur, p.Payload...)
	}
	if d.curLen > 0 && len(d.cur) >= d.curLen {
		if f, ok := d.finish(); ok {
			d.out = append(d.out, f)
		}
	}
}

// startPES reads a PES header (which must fit in the first packet, as it
// does in every muxer we know of) and starts collecting its payload.
func (d *demuxer) startPES(b []byte) bool {
	d.inPES = false
	// packet_start_code_prefix, stream_id, PES_packet_length, two flag
	// bytes, PES_header_data_length.
	if len(b) < 9 || b[0] != 0 || b[1] != 0 || b[2] != 1 || b[3]&0xf0 != 0xe0 {
		d.skipped++
		d.broken = true
		return false
	}
	pesLen := int(b[4])<<8 | int(b[5])
	hdr := 9 + int(b[8])
	if hdr > len(b) || b[7]&0x80 == 0 || hdr < 14 {
		d.skipped++ // no PTS, or a header past this packet
		d.broken = true
		return false
	}
	d.curPTS = uint64(b[9]>>1&0x07)<<30 | uint64(b[10])<<22 | uint64(b[11]>>1)<<15 |
		uint64(b[12])<<7 | uint64(b[13]>>1)
	d.curLen = 0
	if pesLen > 0 {
		d.curLen = pesLen - (hdr - 6)
		if d.curLen <= 0 {
			d.skipped++
			return false
		}
	}
	d.cur = append(d.cur[:0], b[hdr:]...)
	d.inPES = true
	return true
}

// finish ends the PES being collected and returns it as an access unit,
// unless it is broken or comes before the key frame that follows lost data.
func (d *demuxer) finish() (frame, bool) {
	if !d.inPES {
		return frame{}, false
	}
	d.inPES = false
	data := d.cur
	if d.curLen > 0 {
		if len(data) < d.curLen {
			d.skipped++
			d.broken = true
			return frame{}, false
		}
		data = data[:d.curLen]
	}
	if len(data) == 0 || len(data) > d.maxFrame {
		d.skipped++
		d.broken = true
		return frame{}, false
	}
	key := h264.IsKey(data)
	if d.broken && !key {
		d.skipped++
		return frame{}, false
	}
	d.broken = false
	// The frame leaves; the next PES collects into a new buffer.
	f := frame{pts: d.curPTS, key: key, data: data}
	d.cur = make([]byte, 0, cap(data))
	return f, true
}

// dropPES abandons the PES being collected after lost packets.
func (d *demuxer) dropPES() {
	if d.inPES {
		d.skipped++
	}
	d.inPES = false
	d.cur = d.cur[:0]
	d.broken = true
}
