package media

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/source/gsttest"
	"github.com/custos-cctv/custos/media/ts"
)

// TestRecordFromGStreamer records from GStreamer's own RTSP server
// (run by media/source/gsttest, the clip remuxed with
// `ffmpeg -c copy` so its NAL units are untouched) through a real
// Recorder with 1 s segments, for about 4 s of video, then stops cleanly
// and checks what a release would get: every segment decrypts with dc-a's
// and dc-b's shares; the concatenation decodes in ffprobe without an
// error, with exactly the frames the camera delivered, about 25 per
// second of wall time; and the recorded frames are the fixture's, NAL
// unit for NAL unit, byte for byte, in order, each frame in its own PES.
func TestRecordFromGStreamer(t *testing.T) {
	if testing.Short() {
		t.Skip("records in real time from a GStreamer RTSP server")
	}
	t.Parallel() // waits on real time; overlaps the kill -9 test
	url := gsttest.Start(t)
	src, err := source.Open(url, source.Options{Backoff: source.Backoff{Initial: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	recordFromRTSP(t, "GStreamer", src, 4*clip.FPS, true)
}

// recordFromRTSP records want frames from src through a real Recorder
// with 1 s segments, stops cleanly and checks the stored segments:
// they decrypt, decode in ffprobe with the frames delivered, and (with
// exactNALs) hold the fixture's NAL units byte for byte.
func recordFromRTSP(t *testing.T, name string, src source.Source, want uint64, exactNALs bool) RecorderStats {
	t.Helper()
	r := newRig(t, rigOpts{config: func(c *RecorderConfig) { c.Source = src }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	go func() { r.done <- r.rec.Run(ctx) }()

	deadline := time.Now().Add(30 * time.Second)
	for r.rec.Stats().Frames < want {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %+v", r.rec.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-r.done:
		if err != context.Canceled {
			t.Fatalf("Run after a clean stop: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after its context ended")
	}
	wall := time.Since(began)

	st := r.rec.Stats()
	t.Logf("recorded %v of wall time: %d frames at %.1f fps, %.0f kbit/s; %d segments stored",
		wall.Round(time.Millisecond), st.Frames, st.FPS, st.BitrateBPS/1e3, st.SegmentsWritten)
	if st.State != StateStopped || st.SegmentsLost != 0 || st.FramesDropped != 0 || st.FramesRefused != 0 ||
		st.Reconnects != 0 || st.SourceError != "" || st.LastError != "" {
		t.Errorf("Stats after recording from %s: %+v", name, st)
	}
	// The server paces the clip at 25 fps: the frames took about their
	// duration to arrive (start-up takes part of the wall time).
	if fps := float64(st.Frames) / wall.Seconds(); fps < 12 || fps > 30 {
		t.Errorf("%d frames in %v of wall time: %.1f fps, want about %d", st.Frames, wall, fps, clip.FPS)
	}

	segs := decryptDC(t, r.st)
	if len(segs) == 0 || uint64(len(segs)) != st.SegmentsWritten {
		t.Fatalf("%d segments decrypt; the recorder stored %d", len(segs), st.SegmentsWritten)
	}
	var plain []byte
	for i, s := range segs {
		if i > 0 && s.meta.Start.Before(segs[i-1].meta.End) {
			t.Errorf("segment %d starts at %s, before segment %d ends at %s", i, stamp(s.meta.Start), i-1, stamp(segs[i-1].meta.End))
		}
		if d := time.Since(s.meta.Start); d < 0 || d > time.Minute {
			t.Errorf("segment %d starts %v ago; want footage stamped with the time it was recorded", i, d)
		}
		plain = append(plain, s.plain...)
	}
	frames := tsFrames(t, plain)
	if uint64(frames) != st.Frames {
		t.Errorf("%d frames stored, the camera delivered %d: a clean stop must store them all", frames, st.Frames)
	}
	if span := segs[len(segs)-1].meta.End.Sub(segs[0].meta.Start); span < time.Duration(frames-1)*frameInterval || span > time.Duration(frames+1)*frameInterval {
		t.Errorf("segments span %v for %d frames at 25 fps", span, frames)
	}
	if exactNALs {
		checkFixtureNALs(t, plain)
	}
	ffprobeFrames(t, plain, frames)
	return st
}

// checkFixtureNALs demuxes MPEG-TS and checks that every access unit is
// the fixture's next frame: the same NAL units, byte for byte, in the
// fixture's order (the muxer's AUD aside; the clip has none), starting at
// one of its keyframes and wrapping around at its end.
func checkFixtureNALs(t *testing.T, plain []byte) {
	t.Helper()
	fixture := clipAccessUnits()
	if len(fixture) != clip.Frames {
		t.Fatalf("the fixture splits into %d access units, want %d", len(fixture), clip.Frames)
	}
	got := tsAccessUnits(t, plain)
	if len(got) == 0 {
		t.Fatal("no access unit in the recording")
	}
	first := -1
	for i := 0; i < clip.Frames; i += clip.GOP {
		if equalNALs(got[0], fixture[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatalf("the first recorded frame (NAL types %v) is none of the fixture's keyframes", nalTypes(got[0]))
	}
	for k, au := range got {
		i := (first + k) % clip.Frames
		if !equalNALs(au, fixture[i]) {
			t.Fatalf("recorded frame %d (NAL types %v, %d bytes) is not fixture frame %d (NAL types %v, %d bytes) byte for byte",
				k, nalTypes(au), nalBytes(au), i, nalTypes(fixture[i]), nalBytes(fixture[i]))
		}
	}
	t.Logf("%d recorded frames are fixture frames %d… byte for byte", len(got), first)
}

// clipAccessUnits splits the fixture into frames: a frame is its picture's
// slice NAL units and whatever non-slice NAL units (SPS, PPS, SEI) come
// right before them. The clip has one slice per picture.
func clipAccessUnits() [][][]byte {
	var aus [][][]byte
	var cur [][]byte
	for _, n := range h264.SplitNALs(clip.H264) {
		cur = append(cur, n)
		if t := h264.Type(n); t >= 1 && t <= 5 {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

// tsAccessUnits returns the NAL units of each PES on the video PID (one
// PES per frame), AUDs left out.
func tsAccessUnits(t *testing.T, b []byte) [][][]byte {
	t.Helper()
	var pes [][]byte
	for p := b; len(p) >= ts.PacketSize; p = p[ts.PacketSize:] {
		pkt := p[:ts.PacketSize]
		if pkt[0] != 0x47 {
			t.Fatal("TS packet without sync byte")
		}
		if pid := int(pkt[1]&0x1f)<<8 | int(pkt[2]); pid != ts.PIDVideo || pkt[3]&0x10 == 0 {
			continue
		}
		off := 4
		if pkt[3]&0x20 != 0 {
			off += 1 + int(pkt[4])
		}
		if off > ts.PacketSize {
			t.Fatal("TS adaptation field runs past its packet")
		}
		if pkt[1]&0x40 != 0 {
			pes = append(pes, nil)
		}
		if len(pes) == 0 {
			t.Fatal("video payload before the first PES start")
		}
		pes[len(pes)-1] = append(pes[len(pes)-1], pkt[off:]...)
	}
	aus := make([][][]byte, 0, len(pes))
	for i, p := range pes {
		if len(p) < 9 || !bytes.Equal(p[:3], []byte{0, 0, 1}) || p[3] != 0xe0 || len(p) < 9+int(p[8]) {
			t.Fatalf("PES %d: bad header % x", i, p[:min(len(p), 9)])
		}
		var nals [][]byte
		for _, n := range h264.SplitNALs(p[9+int(p[8]):]) {
			if h264.Type(n) != h264.NALAUD {
				nals = append(nals, n)
			}
		}
		aus = append(aus, nals)
	}
	return aus
}

func equalNALs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func nalTypes(nals [][]byte) []int {
	out := make([]int, len(nals))
	for i, n := range nals {
		out[i] = h264.Type(n)
	}
	return out
}

func nalBytes(nals [][]byte) int {
	n := 0
	for _, u := range nals {
		n += len(u)
	}
	return n
}
