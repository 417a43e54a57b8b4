package ts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// FuzzSegmenter feeds the Segmenter frames built from the input (each 4
// bytes: flags, a signed step in ms, a size) and checks that it never
// panics, refuses only bad frames, and only ever emits whole, continuous,
// parseable TS within its caps.
func FuzzSegmenter(f *testing.F) {
	f.Add(uint16(1000), uint16(4), []byte{1, 0, 40, 3, 0, 0, 40, 3, 0, 0xff, 0xf0, 1, 1, 0, 40, 200})
	f.Add(uint16(0), uint16(0), []byte{0, 0, 40, 1, 1, 0x80, 0, 9, 2, 0, 0, 0, 4, 0, 1, 0})
	f.Add(uint16(100), uint16(1), bytes.Repeat([]byte{0, 0, 100, 255}, 50))
	f.Fuzz(func(t *testing.T, targetMS, maxPackets uint16, ops []byte) {
		ops = ops[:min(len(ops), 4*300)] // long inputs only slow the fuzzer down
		cfg := Config{Target: time.Duration(targetMS) * time.Millisecond, MaxBytes: int(maxPackets) * 16 * PacketSize}
		s := NewSegmenter(cfg)
		r := newTSReader()
		at, pushed, frames := recordingStart, 0, 0
		check := func(seg *Segment) {
			if seg == nil {
				return
			}
			if seg.Frames < 1 || seg.Keyframes > seg.Frames || seg.Bytes != len(seg.Data) || seg.Bytes > cfg.maxBytes() {
				t.Fatalf("segment frames %d keyframes %d bytes %d len %d (cap %d)", seg.Frames, seg.Keyframes, seg.Bytes, len(seg.Data), cfg.maxBytes())
			}
			if !seg.End.After(seg.Start) {
				t.Fatalf("segment ends %v, not after its start %v", seg.End, seg.Start)
			}
			for off := 0; off < len(seg.Data); off += PacketSize {
				if seg.Data[off] != syncByte {
					t.Fatalf("packet at %d: sync byte %#x", off, seg.Data[off])
				}
			}
			n := len(r.units)
			if err := r.read(seg.Data); err != nil {
				t.Fatal(err)
			}
			if err := r.finish(); err != nil {
				t.Fatal(err)
			}
			units := r.units[n:]
			if len(units) != seg.Frames || units[0].rai != seg.KeyStart {
				t.Fatalf("read %d frames (first random access %v), segment says %d (KeyStart %v)", len(units), units[0].rai, seg.Frames, seg.KeyStart)
			}
			for i := 1; i < len(units); i++ {
				if d := (units[i].pts - units[i-1].pts) % ptsWrap; d == 0 || d >= ptsWrap/2 {
					t.Fatalf("PTS %d after %d within a segment", units[i].pts, units[i-1].pts)
				}
			}
			frames += seg.Frames
		}
		for ; len(ops) >= 4; ops = ops[4:] {
			flags, step, size := ops[0], int16(binary.BigEndian.Uint16(ops[1:3])), int(ops[3])*37
			at = at.Add(time.Duration(step) * time.Millisecond)
			fr := synth(at, flags&1 != 0, size)
			if flags&16 != 0 {
				fr.Codec = h264.CodecH265 // a codec switch: the bytes need not be H.265
			}
			switch {
			case flags&2 != 0:
				fr.Data = nil
			case flags&4 != 0:
				fr.Data = fr.Data[4:] // no start code
			}
			seg, err := s.Push(fr)
			if err != nil {
				if !errors.Is(err, ErrEmptyFrame) && !errors.Is(err, ErrNotAnnexB) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("Push: unexpected error %v", err)
				}
			} else {
				pushed++
			}
			check(seg)
			if flags&8 != 0 {
				check(s.Flush())
			}
		}
		check(s.Flush())
		if frames+s.Dropped() != pushed {
			t.Fatalf("%d frames in segments + %d dropped != %d accepted", frames, s.Dropped(), pushed)
		}
	})
}

// FuzzMuxFrame muxes arbitrary bytes as a frame: either it is refused, or
// the TS reads back to exactly the frame (with an AUD in front if it had
// none).
func FuzzMuxFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x65, 1, 2, 3}, true, false)
	f.Add([]byte{0, 0, 1, 9, 0xf0, 0, 0, 1, 0x41}, false, false)
	f.Add([]byte{0, 0, 0}, false, false)
	f.Add([]byte{0, 0, 1, 0x46, 1, 0x50, 0, 0, 1, 0x02, 1, 0xd0}, false, true)
	f.Add([]byte{0, 0, 0, 1, 0x28, 1, 0xaf}, true, true)
	f.Fuzz(func(t *testing.T, data []byte, key, hevc bool) {
		var m Muxer
		codec := h264.CodecH264
		if hevc {
			codec = h264.CodecH265
		}
		out, err := m.AppendFrame(nil, h264.Frame{Time: recordingStart, Key: key, Data: data, Codec: codec})
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("refused frame left %d bytes", len(out))
			}
			return
		}
		r := newTSReader()
		if err := r.read(out); err != nil {
			t.Fatal(err)
		}
		units, err := r.done()
		if err != nil || len(units) != 1 {
			t.Fatalf("read %d units: %v", len(units), err)
		}
		want := data
		if hasAUD, _ := checkFrame(h264.Frame{Data: data, Codec: codec}); !hasAUD && hevc {
			want = append(bytes.Clone(aud265), data...)
		} else if !hasAUD {
			want = append(bytes.Clone(aud), data...)
		}
		// Tables come before a keyframe and a codec change (a zero Muxer
		// starts out H.264), and say the frame's codec.
		if units[0].tables != (key || hevc) || units[0].tables && hevc != (units[0].streamType == streamTypeH265) {
			t.Fatalf("tables %v with stream type %#x for an H.265 frame %v", units[0].tables, units[0].streamType, hevc)
		}
		if !bytes.Equal(units[0].es, want) || units[0].pts != PTS(recordingStart) || units[0].rai != key {
			t.Fatalf("round trip differs")
		}
	})
}
