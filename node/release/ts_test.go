package release

import (
	"bytes"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
	"github.com/custos-cctv/custos/media/ts"
)

// FuzzDemuxTS: the export's demuxer reads decrypted segments, which a
// compromised store could shape at will (under a key it was sent for):
// whatever the bytes, it returns frames inside them or an error, and never
// panics. It is one pass over the packets, so it cannot loop.
func FuzzDemuxTS(f *testing.F) {
	ref := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mux ts.Muxer
	b := mux.AppendTables(nil)
	for i := range 3 {
		b, _ = mux.AppendFrame(b, h264.Frame{Time: ref.Add(time.Duration(i) * 40 * time.Millisecond), Key: i == 0,
			Data: append([]byte{0, 0, 0, 1, 0x65}, bytes.Repeat([]byte{byte(i)}, 300)...)})
	}
	f.Add(b)
	b = mux.AppendTables(nil)
	b, _ = mux.AppendFrame(b, h264.Frame{Time: ref, Key: true, Codec: h264.CodecH265, Data: []byte{0, 0, 0, 1, 0x28, 1, 0xaf}})
	f.Add(b)
	f.Add(b[:ts.PacketSize])
	f.Add(make([]byte, ts.PacketSize))
	// A bounded PES whose length ends inside its own header (this once
	// sliced backwards and panicked).
	short := make([]byte, ts.PacketSize)
	copy(short, []byte{0x47, 0x40 | ts.PIDVideo>>8, ts.PIDVideo & 0xff, 0x10, 0, 0, 1, 0xe0, 0, 1, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1})
	f.Add(short)
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := demuxTS(b, ref)
		if err != nil && len(frames) != 0 {
			t.Fatalf("frames with an error: %v", err)
		}
		for _, fr := range frames {
			if len(fr.Data) > len(b) {
				t.Fatalf("a frame of %d bytes from %d", len(fr.Data), len(b))
			}
		}
		clearFrames(frames)
	})
}

// demuxTS reads back what ts.Muxer writes: the same frames, times (to the
// 90 kHz tick) and keyframe flags.
func TestDemuxTSRoundTrip(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var mux ts.Muxer
	var b []byte
	b = mux.AppendTables(b)
	var frames []h264.Frame
	for i := range 60 {
		nal := byte(h264.NALIDR)
		if i%25 != 0 {
			nal = 1 // a non-IDR slice
		}
		data := append([]byte{0, 0, 0, 1, 0x60 | nal}, bytes.Repeat([]byte{byte(i + 1)}, 50+i*97)...)
		fr := h264.Frame{Time: base.Add(time.Duration(i) * time.Second / clip.FPS), Key: i%25 == 0, Data: data}
		frames = append(frames, fr)
		var err error
		if b, err = mux.AppendFrame(b, fr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := demuxTS(b, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(frames) {
		t.Fatalf("%d frames read back, %d written", len(got), len(frames))
	}
	for i, g := range got {
		at := base.Add(time.Duration(i) * time.Second / clip.FPS)
		if g.Ticks != ticksOf(at) || g.Key != frames[i].Key || !bytes.HasSuffix(g.Data, frames[i].Data) {
			t.Fatalf("frame %d: ticks %d (want %d), key %v", i, g.Ticks, ticksOf(at), g.Key)
		}
		if ticksOf(timeOfTicks(g.Ticks)) != g.Ticks {
			t.Fatalf("frame %d: timeOfTicks does not round-trip", i)
		}
	}
	if _, err := demuxTS(b[:len(b)-1], base); err == nil {
		t.Error("a truncated packet was accepted")
	}
}

// TestDemuxTSCodec: the demuxer takes each frame's codec from the PMT
// before it, and its keyframe flag by that codec's rules (an H.265 IRAP,
// not an H.264 IDR), also when the codec changes within one stream.
func TestDemuxTSCodec(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mux ts.Muxer
	var b []byte
	type in struct {
		codec h264.Codec
		key   bool
		nal   []byte
	}
	ins := []in{
		{h264.CodecH264, true, []byte{0x65, 1}},             // IDR
		{h264.CodecH264, false, []byte{0x41, 2}},            // P
		{h264.CodecH265, false, []byte{1 << 1, 1, 3}},       // TRAIL_R: not key by H.265 rules
		{h264.CodecH265, true, []byte{h265.NALCRA << 1, 1}}, // CRA: key
		{h264.CodecH265, false, []byte{0x28, 1, 5}},         // type 20 (IDR_N_LP) is key in H.265
	}
	ins[4].key = true
	for i, x := range ins {
		fr := h264.Frame{Time: base.Add(time.Duration(i) * 40 * time.Millisecond), Key: x.key, Codec: x.codec,
			Data: append([]byte{0, 0, 0, 1}, x.nal...)}
		var err error
		if b, err = mux.AppendFrame(b, fr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := demuxTS(b, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ins) {
		t.Fatalf("%d frames read back, %d written", len(got), len(ins))
	}
	for i, g := range got {
		if g.Codec != ins[i].codec || g.Key != ins[i].key {
			t.Errorf("frame %d: %v key %v, want %v key %v", i, g.Codec, g.Key, ins[i].codec, ins[i].key)
		}
	}
	// A PMT naming another stream type is refused, not read as H.264.
	bad := bytes.Clone(b[:2*ts.PacketSize])
	for i := ts.PacketSize; i < 2*ts.PacketSize-1; i++ {
		if bad[i] == 0x1b && bad[i+1] == 0xe1 {
			bad[i] = 0x02 // MPEG-2 video
		}
	}
	if _, err := demuxTS(bad, base); err == nil {
		t.Error("a PMT of MPEG-2 video was accepted")
	}
}
