package ts

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

const clip265Path = "../clip/clip-640x360-25fps-10s.h265"

var clip265AUs = sync.OnceValues(func() ([][]byte, error) {
	b, err := os.ReadFile(clip265Path)
	if err != nil {
		return nil, err
	}
	// A slice with first_slice_segment_in_pic_flag (the first bit after
	// the two-byte header), or a VPS, SPS, PPS, AUD or prefix SEI, after a
	// slice starts an access unit.
	var aus [][]byte
	var cur [][]byte
	seenSlice := false
	for _, n := range h264.SplitNALs(b) {
		t := h265.Type(n)
		newAU := false
		switch {
		case h265.IsVCL(t):
			newAU = seenSlice && len(n) > 2 && n[2]&0x80 != 0
		case t >= h265.NALVPS && t <= h265.NALAUD, t == h265.NALSEIPrefix:
			newAU = seenSlice
		}
		if newAU {
			aus = append(aus, h264.JoinNALs(cur...))
			cur, seenSlice = nil, false
		}
		cur = append(cur, n)
		seenSlice = seenSlice || h265.IsVCL(t)
	}
	return append(aus, h264.JoinNALs(cur...)), nil
})

// fixtureFrames265 returns the H.265 clip's 250 frames stamped from t0.
func fixtureFrames265(tb testing.TB, t0 time.Time) []h264.Frame {
	tb.Helper()
	aus, err := clip265AUs()
	if err != nil {
		tb.Fatalf("read H.265 fixture clip: %v", err)
	}
	if len(aus) != clipFrames {
		tb.Fatalf("H.265 fixture clip: %d access units, want %d", len(aus), clipFrames)
	}
	frames := make([]h264.Frame, len(aus))
	for i, au := range aus {
		frames[i] = h264.Frame{Time: t0.Add(time.Duration(i) * clipInterval), Key: h265.IsKey(au), Data: au, Codec: h264.CodecH265}
		if want := i%clipGOP == 0; frames[i].Key != want {
			tb.Fatalf("H.265 fixture frame %d: key %v, want %v", i, frames[i].Key, want)
		}
	}
	return frames
}

// TestMuxH265: stream type 0x24 in the PMT, an H.265 access unit delimiter
// before each frame, tables before every IRAP.
func TestMuxH265(t *testing.T) {
	frames := fixtureFrames265(t, recordingStart)
	segs := segmentAll(t, NewSegmenter(Config{}), frames)
	r := newTSReader()
	for _, s := range segs {
		if !s.KeyStart || s.Codec != h264.CodecH265 {
			t.Errorf("segment at %v: KeyStart %v codec %v", s.Start, s.KeyStart, s.Codec)
		}
		if err := r.read(s.Data); err != nil {
			t.Fatal(err)
		}
	}
	units, err := r.done()
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(frames) {
		t.Fatalf("%d PES units, want %d", len(units), len(frames))
	}
	for i, u := range units {
		if u.streamType != 0x24 {
			t.Fatalf("frame %d: PMT stream type %#x, want 0x24", i, u.streamType)
		}
		if want := append(bytes.Clone(aud265), frames[i].Data...); !bytes.Equal(u.es, want) {
			t.Fatalf("frame %d: elementary stream is not the AUD then the frame", i)
		}
		if u.tables != frames[i].Key || u.rai != frames[i].Key {
			t.Fatalf("frame %d: tables %v rai %v, key %v", i, u.tables, u.rai, frames[i].Key)
		}
	}
	if c, ok := CodecOf(0x24); !ok || c != h264.CodecH265 || StreamType(h264.CodecH265) != 0x24 {
		t.Errorf("CodecOf(0x24) = %v, %v", c, ok)
	}
	if _, err := new(Muxer).AppendFrame(nil, h264.Frame{Data: frames[0].Data, Codec: 9}); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("a frame of codec 9: %v, want ErrUnknownCodec", err)
	}
}

// TestFFprobeH265: each segment of the H.265 clip decodes alone as hevc,
// and their concatenation decodes to all 250 frames.
func TestFFprobeH265(t *testing.T) {
	frames := fixtureFrames265(t, recordingStart)
	segs := segmentAll(t, NewSegmenter(Config{}), frames)
	dir := t.TempDir()
	var all []byte
	for i, seg := range segs {
		path := filepath.Join(dir, "seg"+strconv.Itoa(i)+".ts")
		if err := os.WriteFile(path, seg.Data, 0o600); err != nil {
			t.Fatal(err)
		}
		checkProbeCodec(t, filepath.Base(path), ffprobe(t, path), seg.Frames, "hevc")
		all = append(all, seg.Data...)
	}
	path := filepath.Join(dir, "all.ts")
	if err := os.WriteFile(path, all, 0o600); err != nil {
		t.Fatal(err)
	}
	checkProbeCodec(t, "concatenation", ffprobe(t, path), len(frames), "hevc")

	// An export to .mp4 is this stream remuxed by ffmpeg as node/release
	// does it: the same frames, as hevc.
	mp4 := filepath.Join(dir, "all.mp4")
	remux := exec.Command("ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "mpegts", "-i", path,
		"-c", "copy", "-movflags", "+faststart", "-f", "mp4", mp4)
	if out, err := remux.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("remux to mp4: %v\n%s", err, out)
	}
	checkProbeCodec(t, "mp4", ffprobe(t, mp4), len(frames), "hevc")
}

// TestSegmentFormatChange: a camera that switches codec, or sends a
// keyframe with another SPS (a new resolution), starts a new segment at
// that keyframe, before Target; a non-keyframe of the new codec is
// dropped until one comes. Each segment decodes alone as its codec.
func TestSegmentFormatChange(t *testing.T) {
	t0 := recordingStart
	h264s := fixtureFrames(t, t0)
	h265s := fixtureFrames265(t, t0)
	var in []h264.Frame
	at := func(f h264.Frame, i int) h264.Frame {
		f.Time = t0.Add(time.Duration(i) * clipInterval)
		return f
	}
	// 0..59 H.264; 60..109 H.265 frames 10..59 (15 undecodable, then an
	// IRAP at 75); 110..159 H.264 frames 0..49 again (a keyframe at 110).
	for i := range 60 {
		in = append(in, at(h264s[i], i))
	}
	for i := 10; i < 60; i++ {
		in = append(in, at(h265s[i], len(in)))
	}
	for i := range 50 {
		in = append(in, at(h264s[i], len(in)))
	}
	// 160..209: H.264 whose SPS differs (a changed byte stands for a new
	// resolution); its first keyframe at 160 must cut.
	for i := range 50 {
		f := at(h264s[i], len(in))
		if f.Key {
			f.Data = bytes.Clone(f.Data)
			f.Data[5] ^= 0x01 // profile_idc's low bit, inside the SPS
		}
		in = append(in, f)
	}
	s := NewSegmenter(Config{Target: 10 * time.Second})
	segs := segmentAll(t, s, in)
	type want struct {
		start, frames int
		codec         h264.Codec
	}
	wants := []want{{0, 60, h264.CodecH264}, {75, 35, h264.CodecH265}, {110, 50, h264.CodecH264}, {160, 50, h264.CodecH264}}
	if len(segs) != len(wants) {
		t.Fatalf("%d segments, want %d", len(segs), len(wants))
	}
	for i, w := range wants {
		g := segs[i]
		if !g.Start.Equal(in[w.start].Time) || g.Frames != w.frames || g.Codec != w.codec || !g.KeyStart {
			t.Errorf("segment %d: start %v, %d frames, %v, KeyStart %v; want frame %d, %d frames, %v",
				i, g.Start.Sub(t0), g.Frames, g.Codec, g.KeyStart, w.start, w.frames, w.codec)
		}
	}
	if s.Dropped() != 15 {
		t.Errorf("dropped %d frames, want the 15 H.265 ones before its IRAP", s.Dropped())
	}
	dir := t.TempDir()
	for i, seg := range segs[:3] {
		path := filepath.Join(dir, "seg"+strconv.Itoa(i)+".ts")
		if err := os.WriteFile(path, seg.Data, 0o600); err != nil {
			t.Fatal(err)
		}
		checkProbeCodec(t, filepath.Base(path), ffprobe(t, path), seg.Frames, seg.Codec.String())
	}
}

func TestFindSPS(t *testing.T) {
	h265s := fixtureFrames265(t, recordingStart)
	h264s := fixtureFrames(t, recordingStart)
	if sps := findSPS(h264.CodecH265, h265s[0].Data); h265.Type(sps) != h265.NALSPS {
		t.Errorf("H.265 keyframe: found %x", sps)
	}
	if sps := findSPS(h264.CodecH264, h264s[0].Data); h264.Type(sps) != h264.NALSPS || sps[len(sps)-1] == 0 {
		t.Errorf("H.264 keyframe: found %x", sps)
	}
	for _, b := range [][]byte{nil, {0, 0, 1}, {0, 0, 1, 0, 0, 1}, {0, 0, 0, 1, 0x67}, h265s[1].Data} {
		_ = findSPS(h264.CodecH265, b)
		_ = findSPS(h264.CodecH264, b)
	}
	if findSPS(h264.CodecH265, h265s[1].Data) != nil {
		t.Errorf("found an SPS in a P frame")
	}
}
