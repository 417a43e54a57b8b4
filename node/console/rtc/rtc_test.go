package rtc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
)

func newPeer(t *testing.T, cfg Config) *Peer {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestAnswerLoopbackOnly: the answer carries this side's candidates, every
// one on loopback, and sends H.264 on the one video section.
func TestAnswerLoopbackOnly(t *testing.T) {
	p := newPeer(t, Config{})
	b := newGoBrowser(t)
	offer := b.offer(t)
	answer, err := p.Answer(offer)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	addrs := candidateAddrs(t, answer)
	if len(addrs) == 0 {
		t.Fatalf("no candidate in the answer:\n%s", answer)
	}
	for _, a := range addrs {
		if !isLoopbackAddr(a) {
			t.Errorf("answer has candidate address %s, not loopback", a)
		}
	}
	if err := answerSendsH264(answer); err != nil {
		t.Errorf("answer: %v\n%s", err, answer)
	}
	if strings.Count(answer, "m=video") != 1 {
		t.Errorf("answer has %d video sections, want 1", strings.Count(answer, "m=video"))
	}
	if _, err := p.Answer(offer); !errors.Is(err, ErrAnswered) {
		t.Errorf("second Answer: %v, want ErrAnswered", err)
	}
	t.Logf("answer candidates: %v\n%s", addrs, answer)
}

func TestAnswerRefuses(t *testing.T) {
	p := newPeer(t, Config{MaxOfferBytes: 1000})
	if _, err := p.Answer(strings.Repeat("a", 1001)); !errors.Is(err, ErrOfferTooLarge) {
		t.Errorf("large offer: %v, want ErrOfferTooLarge", err)
	}
	if _, err := p.Answer("not sdp"); err == nil || errors.Is(err, ErrOfferTooLarge) {
		t.Errorf("garbage offer: %v, want a parse error", err)
	}

	// A browser that receives VP8 only gets no answer it could not play.
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	b := newGoBrowser(t, vp8)
	if _, err := newPeer(t, Config{}).Answer(b.offer(t)); !errors.Is(err, ErrNoH264) {
		t.Errorf("VP8-only offer: %v, want ErrNoH264", err)
	}
}

// TestBrowserGetsClip plays the fixture clip in real time through Feed to a
// pion client that stands in for the browser: at least 90 % of the frames
// arrive, byte for byte, the first a key frame, each with the RTP timestamp
// step its PTS gives; the selected pair is loopback at both ends; the delay
// from writing a frame into Feed's stream to its last packet arriving is
// logged.
func TestBrowserGetsClip(t *testing.T) {
	p := newPeer(t, Config{})
	b := newGoBrowser(t)
	b.connect(t, p)

	pair, err := b.tr.Receiver().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v %v", pair, err)
	}
	if !isLoopbackAddr(pair.Local.Address) || !isLoopbackAddr(pair.Remote.Address) {
		t.Errorf("selected pair %v, want loopback at both ends", pair)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(ctx, pr) }()
	out := camera(ctx, t, "pace=real", clip.Frames, pw)
	time.Sleep(300 * time.Millisecond) // the last frames in flight
	pw.Close()
	if err := <-fed; err != nil {
		t.Fatalf("Feed: %v", err)
	}

	got := b.frames()
	st := p.Stats()
	t.Logf("sent %d frames, stats %+v; received %d, %d incomplete", len(out), st, len(got), b.lost)
	if len(got) < len(out)*9/10 {
		t.Fatalf("received %d of %d frames, want at least 90 %%", len(got), len(out))
	}
	if !h264.IsKey(got[0].data) {
		t.Errorf("the first frame received is not a key frame")
	}
	var delays []time.Duration
	step := uint32(90000 / clip.FPS)
	for _, r := range got {
		d := r.ts - got[0].ts
		if d%step != 0 || int(d/step) >= len(out) {
			t.Fatalf("RTP timestamp %d steps %d from the first, not a multiple of %d", r.ts, d, step)
		}
		i := int(d / step) // the first frame is frame 0: the browser was connected
		s := out[i]
		if !slicesEqual(nals(r.data), nals(s.f.Data)) {
			t.Errorf("frame %d differs from what was sent", i)
		}
		delays = append(delays, r.at.Sub(s.at))
		if d := r.at.Sub(s.at); d > 100*time.Millisecond {
			t.Logf("frame %d (key %v, %d bytes) took %v", i, s.f.Key, len(s.f.Data), d)
		}
	}
	if st.Frames != uint64(len(out)) || st.Dropped != 0 || st.Skipped != 0 || st.Refused != 0 {
		t.Errorf("stats %+v, want %d frames sent, none dropped, skipped or refused", st, len(out))
	}
	// The last pair maps RTP time back to the camera's: the last frame.
	if last := out[len(out)-1]; st.LastPTS != ts.PTS(last.f.Time) || st.LastRTP != got[0].ts+uint32(len(out)-1)*step {
		t.Errorf("last sent PTS %d RTP %d, want %d and %d", st.LastPTS, st.LastRTP, ts.PTS(last.f.Time), got[0].ts+uint32(len(out)-1)*step)
	}
	t.Logf("delay Feed write -> client receipt over %d frames: p50 %v, p99 %v, max %v",
		len(delays), percentile(delays, 50), percentile(delays, 99), percentile(delays, 100))
}

func slicesEqual(a, b [][]byte) bool {
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

// TestSlowPeerDrops: when sending falls behind the stream, Feed drops whole
// frames up to the next key frame instead of queueing them, and every run
// of frames the browser gets starts with a key frame.
func TestSlowPeerDrops(t *testing.T) {
	p := newPeer(t, Config{})
	p.beforeSend = func(uint64, uint32) { time.Sleep(15 * time.Millisecond) }
	b := newGoBrowser(t)
	b.connect(t, p)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(ctx, pr) }()
	// Unpaced: the camera writes as fast as Feed reads, far faster than
	// 15 ms a frame.
	out := camera(ctx, t, "pace=none", 2*clip.Frames, pw)
	time.Sleep(2 * time.Second) // the queue drains
	pw.Close()
	if err := <-fed; err != nil {
		t.Fatalf("Feed: %v", err)
	}
	st := p.Stats()
	got := b.frames()
	t.Logf("wrote %d frames; stats %+v; received %d", len(out), st, len(got))
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped: stats %+v", st)
	}
	if st.Frames+st.Dropped+st.Skipped != uint64(len(out)) {
		t.Errorf("sent %d + dropped %d + skipped %d != %d written", st.Frames, st.Dropped, st.Skipped, len(out))
	}
	if len(got) == 0 || !h264.IsKey(got[0].data) {
		t.Fatalf("first frame received is not a key frame")
	}
	step := uint32(90000 / clip.FPS)
	for k := 1; k < len(got); k++ {
		if got[k].ts-got[k-1].ts != step && !h264.IsKey(got[k].data) {
			t.Fatalf("frame %d follows a gap of %d ticks but is no key frame", k, got[k].ts-got[k-1].ts)
		}
	}
}

// TestFeedEndsWithPeer: Feed returns when the browser goes away, and at
// once when ctx ends.
func TestFeedEndsWithPeer(t *testing.T) {
	p := newPeer(t, Config{})
	b := newGoBrowser(t)
	b.connect(t, p)
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(context.Background(), pr) }()
	ctx, cancel := context.WithCancel(context.Background())
	cameraDone := make(chan struct{})
	go func() { camera(ctx, t, "pace=real", 0, pw); close(cameraDone) }()
	defer func() { cancel(); pr.CloseWithError(context.Canceled); <-cameraDone }()
	time.Sleep(500 * time.Millisecond)
	b.pc.Close()
	select {
	case err := <-fed:
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrFailed) {
			t.Errorf("Feed: %v, want ErrClosed or ErrFailed", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Feed still running 15 s after the browser closed")
	}
	if p.Stats().Frames == 0 {
		t.Errorf("no frame was sent before the browser closed")
	}

	// A Feed whose ctx ends returns nil without waiting for the stream.
	p2 := newPeer(t, Config{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if err := p2.Feed(ctx2, pr2); err != nil {
		t.Errorf("Feed after ctx ended: %v", err)
	}
}

// TestNotPlayable: the PMT decides; Feed says why before any connection.
func TestNotPlayable(t *testing.T) {
	for _, tc := range []struct {
		streamType uint8
		want       string
	}{
		{streamTypeH265, "H.265 is not playable in the browser; watch it with custos live"},
		{streamTypeMPEG2Video, "MPEG-2 video is not playable in the browser; watch it with custos live"},
		{0x0f, "the camera's stream has no H.264 video to play in the browser; watch it with custos live"},
	} {
		p := newPeer(t, Config{})
		err := p.Feed(context.Background(), bytes.NewReader(tsWithStream(t, tc.streamType)))
		if !errors.Is(err, ErrNotPlayable) || err.Error() != tc.want {
			t.Errorf("stream type %#x: Feed: %v, want %q", tc.streamType, err, tc.want)
		}
	}
}

// TestH265FromFfmpeg: a real H.265 stream in MPEG-TS (stream type 0x24),
// as ffmpeg with libx265 writes it.
func TestH265FromFfmpeg(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg is not installed")
	}
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-t", "1", "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "mpegts", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stream, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "Unknown encoder") {
			t.Skipf("ffmpeg has no libx265: %s", stderr.String())
		}
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	p := newPeer(t, Config{})
	err = p.Feed(context.Background(), bytes.NewReader(stream))
	if !errors.Is(err, ErrNotPlayable) || err.Error() != "H.265 is not playable in the browser; watch it with custos live" {
		t.Fatalf("Feed of H.265: %v", err)
	}
}

// tsWithStream is a PAT and a PMT whose one stream has the given type,
// then a video PES.
func tsWithStream(t *testing.T, streamType uint8) []byte {
	t.Helper()
	var m ts.Muxer
	b := m.AppendTables(nil)
	// Rewrite the PMT's stream type (its one ES entry follows the 12-byte
	// header and empty program info) and its CRC.
	pmt := b[ts.PacketSize:]
	sec := pmt[5:] // after the TS header and pointer_field
	n := 3 + (int(sec[1]&0x0f)<<8 | int(sec[2]))
	if sec[12] != streamTypeH264 {
		t.Fatalf("unexpected PMT layout: stream type %#x", sec[12])
	}
	sec[12] = streamType
	crc := ts.CRC32MPEG(sec[:n-4])
	sec[n-4], sec[n-3], sec[n-2], sec[n-1] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	if ts.CRC32MPEG(sec[:n]) != 0 {
		t.Fatal("CRC rewrite failed")
	}
	f := h264.Frame{Time: time.Now(), Key: true, Data: h264.JoinNALs([]byte{0x67, 1, 2}, []byte{0x68, 3}, []byte{0x65, 4, 5})}
	b, err := m.AppendFrame(b, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJoinMidStream: a stream that runs before the browser connects is
// skipped until then, and the browser's first frame is a key frame.
func TestJoinMidStream(t *testing.T) {
	p := newPeer(t, Config{})
	b := newGoBrowser(t)
	answer, err := p.Answer(b.offer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(ctx, pr) }()
	cam := make(chan []sent, 1)
	go func() { cam <- camera(ctx, t, "pace=real", 3*clip.GOP, pw) }()

	time.Sleep(500 * time.Millisecond) // frames 0..12 go by unseen
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	out := <-cam
	time.Sleep(300 * time.Millisecond)
	pw.Close()
	if err := <-fed; err != nil {
		t.Fatalf("Feed: %v", err)
	}
	st, got := p.Stats(), b.frames()
	t.Logf("stats %+v; received %d", st, len(got))
	if st.Skipped < clip.GOP/2 || st.Frames+st.Skipped != uint64(len(out)) || len(got) != int(st.Frames) {
		t.Fatalf("stats %+v, received %d of %d", st, len(got), len(out))
	}
	if !h264.IsKey(got[0].data) {
		t.Errorf("the first frame received is not a key frame")
	}
}

// TestConnectTimeout: Feed gives up on a browser that never connects.
func TestConnectTimeout(t *testing.T) {
	p := newPeer(t, Config{ConnectTimeout: 300 * time.Millisecond})
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cameraDone := make(chan struct{})
	go func() { camera(ctx, t, "pace=real", 0, pw); close(cameraDone) }()
	defer func() { cancel(); pr.CloseWithError(context.Canceled); <-cameraDone }()
	start := time.Now()
	err := p.Feed(context.Background(), pr)
	if err == nil || !strings.Contains(err.Error(), "did not connect") || time.Since(start) > 5*time.Second {
		t.Errorf("Feed: %v after %v, want a connect timeout after 300 ms", err, time.Since(start))
	}
}
