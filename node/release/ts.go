package release

// Reading back what media/ts writes, for exports: a decrypted segment is
// MPEG-TS with one H.264 or H.265 program (video on ts.PIDVideo, the PMT
// says which codec), one access unit per PES packet, PTS only. media/ts has
// a writer but no reader, so this is the small demuxer an export needs. It
// is strict about the layout (sync bytes, whole packets, PES start codes)
// and reads only the PMT and the video PID; it never decodes video.

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
	"github.com/custos-cctv/custos/media/ts"
)

const ptsWrap = 1 << 33

// tsFrame is one access unit read back from a segment, its time rebuilt from
// the 90 kHz PTS.
type tsFrame struct {
	Ticks int64 // 90 kHz ticks since the Unix epoch (unwrapped PTS)
	Key   bool
	Codec h264.Codec // from the PMT before it; H.264 if none came
	Data  []byte     // Annex-B
	buf   []byte     // the whole PES packet Data is part of
}

// ticksOf is t in 90 kHz ticks since the Unix epoch, rounded down, without
// the 2^33 wrap (ts.PTS(t) == ticksOf(t) mod 2^33).
func ticksOf(t time.Time) int64 {
	return t.Unix()*90000 + int64(t.Nanosecond())*9/100000
}

// timeOfTicks is the earliest instant whose ticksOf is ticks, so that the
// muxer writes the very PTS the frame was read with.
func timeOfTicks(ticks int64) time.Time {
	s, rem := ticks/90000, ticks%90000
	if rem < 0 {
		s, rem = s-1, rem+90000
	}
	return time.Unix(s, (rem*100000+8)/9).UTC()
}

// unwrapPTS places a 33-bit PTS within ±2^32 ticks (13 h) of ref.
func unwrapPTS(pts uint64, ref int64) int64 {
	d := (int64(pts) - ref%ptsWrap + 2*ptsWrap) % ptsWrap
	if d > ptsWrap/2 {
		d -= ptsWrap
	}
	return ref + d
}

// demuxTS returns the video access units of a Custos MPEG-TS segment, in
// order. ref is a time near the segment (its start), used to unwrap PTS.
// The frames' Data are copies of b's video payload, which the caller
// clears (clearFrames) when done: they are plaintext.
func demuxTS(b []byte, ref time.Time) ([]tsFrame, error) {
	if len(b)%ts.PacketSize != 0 {
		return nil, fmt.Errorf("ts: %d bytes is not a whole number of %d-byte packets", len(b), ts.PacketSize)
	}
	var frames []tsFrame
	var pes []byte // the PES being gathered
	var codec, pesCodec h264.Codec
	refTicks := ticksOf(ref)
	flush := func() error {
		if pes == nil {
			return nil
		}
		f, err := parsePES(pes, refTicks, pesCodec)
		if err != nil {
			return err
		}
		frames = append(frames, f)
		pes = nil
		return nil
	}
	for off := 0; off < len(b); off += ts.PacketSize {
		if c, ok, err := pmtCodec(b[off : off+ts.PacketSize]); err != nil {
			return nil, fmt.Errorf("ts: packet %d: %w", off/ts.PacketSize, err)
		} else if ok {
			codec = c
		}
		pusi, payload, err := videoPayload(b[off : off+ts.PacketSize])
		if err != nil {
			return nil, fmt.Errorf("ts: packet %d: %w", off/ts.PacketSize, err)
		}
		if payload == nil {
			continue
		}
		if pusi {
			if err := flush(); err != nil {
				return nil, err
			}
			pes, pesCodec = make([]byte, 0, 4096), codec
		} else if pes == nil {
			return nil, fmt.Errorf("ts: packet %d: video payload before any PES start", off/ts.PacketSize)
		}
		pes = append(pes, payload...)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return frames, nil
}

// videoPayload returns the payload of p if it is on the video PID (nil
// otherwise) and whether it starts a PES.
func videoPayload(p []byte) (bool, []byte, error) {
	if p[0] != 0x47 {
		return false, nil, errors.New("no sync byte")
	}
	pid := int(p[1]&0x1f)<<8 | int(p[2])
	if pid != ts.PIDVideo {
		return false, nil, nil
	}
	pusi := p[1]&0x40 != 0
	afc := p[3] >> 4 & 3
	body := p[4:]
	if afc&2 != 0 {
		n := int(body[0])
		if 1+n > len(body) {
			return false, nil, errors.New("adaptation field longer than the packet")
		}
		body = body[1+n:]
	}
	if afc&1 == 0 || len(body) == 0 {
		return pusi, nil, nil
	}
	return pusi, body, nil
}

// pmtCodec reads the video codec from p if it is a packet that starts a
// PMT section (ok false otherwise). A PMT whose video is neither H.264 nor
// H.265 is an error: Custos never writes one.
func pmtCodec(p []byte) (c h264.Codec, ok bool, err error) {
	if p[0] != 0x47 || int(p[1]&0x1f)<<8|int(p[2]) != ts.PIDPMT || p[1]&0x40 == 0 || p[3]>>4&1 == 0 {
		return 0, false, nil
	}
	body := p[4:]
	if p[3]>>4&2 != 0 {
		if 1+int(body[0]) > len(body) {
			return 0, false, errors.New("adaptation field longer than the packet")
		}
		body = body[1+int(body[0]):]
	}
	if len(body) < 1 || 1+int(body[0]) > len(body) {
		return 0, false, errors.New("PMT pointer past the packet")
	}
	sec := body[1+int(body[0]):]
	if len(sec) < 12 || sec[0] != 0x02 {
		return 0, false, errors.New("not a PMT section")
	}
	end := min(3+(int(sec[1]&0x0f)<<8|int(sec[2]))-4, len(sec)) // before the CRC
	i := 12 + (int(sec[10]&0x0f)<<8 | int(sec[11]))
	for i+5 <= end {
		st, pid, n := sec[i], int(sec[i+1]&0x1f)<<8|int(sec[i+2]), int(sec[i+3]&0x0f)<<8|int(sec[i+4])
		if pid == ts.PIDVideo {
			c, ok := ts.CodecOf(st)
			if !ok {
				return 0, false, fmt.Errorf("video stream type %#x is neither H.264 nor H.265", st)
			}
			return c, true, nil
		}
		i += 5 + n
	}
	return 0, false, errors.New("PMT without the video stream")
}

// parsePES reads a video PES packet with a PTS.
func parsePES(p []byte, refTicks int64, codec h264.Codec) (tsFrame, error) {
	if len(p) < 14 || p[0] != 0 || p[1] != 0 || p[2] != 1 || p[3]&0xf0 != 0xe0 {
		return tsFrame{}, errors.New("ts: not a video PES packet")
	}
	if p[7]&0x80 == 0 {
		return tsFrame{}, errors.New("ts: PES packet without a PTS")
	}
	hl := int(p[8])
	if 9+hl > len(p) || hl < 5 {
		return tsFrame{}, errors.New("ts: PES header longer than the packet")
	}
	q := p[9:14]
	pts := uint64(q[0]>>1&7)<<30 | uint64(q[1])<<22 | uint64(q[2]>>1)<<15 | uint64(q[3])<<7 | uint64(q[4]>>1)
	data := p[9+hl:]
	if n := int(p[4])<<8 | int(p[5]); n != 0 && 6+n < len(p) && 6+n >= 9+hl {
		data = p[9+hl : 6+n] // a bounded PES: stuffing after it is not video
	}
	return tsFrame{Ticks: unwrapPTS(pts, refTicks), Key: h265.IsKeyFrame(codec, data), Codec: codec, Data: data, buf: p}, nil
}

// clearFrames wipes the frames' plaintext.
func clearFrames(fs []tsFrame) {
	for i := range fs {
		clear(fs[i].buf)
	}
}
