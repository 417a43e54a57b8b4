package source

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
	"github.com/custos-cctv/custos/media/source/gsttest"
)

// TestGStreamerH265 records the H.265 clip from GStreamer's RTSP server
// (rtph265pay: RFC 7798 as a real server writes it, over interleaved TCP)
// and checks every frame against the clip byte for byte.
func TestGStreamerH265(t *testing.T) {
	testGStreamerH265(t, TransportTCP)
}

// Over UDP the same depacketizer takes the packets after the reorder
// window: every frame is a frame of the clip, H.265, keyed as its NAL
// types say (loopback may drop a datagram, so gaps are allowed).
func TestGStreamerH265OverUDP(t *testing.T) {
	testGStreamerH265(t, TransportUDP)
}

func testGStreamerH265(t *testing.T, tr Transport) {
	for _, el := range []string{"rtph265pay", "h265parse"} {
		if exec.Command("gst-inspect-1.0", el).Run() != nil {
			t.Skipf("GStreamer element %s missing (apt install gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)", el)
		}
	}
	url := gsttest.StartWith(t, gsttest.Config{Codec: "h265", Protocols: string(tr)}).URL
	_, want := clip265(t)
	bySlice := map[string]int{}
	for i, w := range want {
		nals := h264.SplitNALs(w)
		bySlice[string(nals[len(nals)-1])] = i
	}
	src, err := Open(url, Options{Transport: tr, Backoff: Backoff{Initial: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cancel, result := run(t, src, c)
	const n = 3 * clip.FPS
	waitFor(t, 20*time.Second, "75 frames from GStreamer", func() bool { return c.len() >= n+1 })
	cancel()
	if err := result(); err != context.Canceled {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
	frames, _ := c.snapshot()
	first := -1
	for i, f := range frames {
		nals := h264.SplitNALs(f.Data)
		j, ok := bySlice[string(nals[len(nals)-1])]
		if !ok || f.Codec != h264.CodecH265 {
			t.Fatalf("frame %d (%v) is no frame of the clip", i, f.Codec)
		}
		if tr == TransportUDP {
			if f.Key != h265.IsKey(f.Data) || string(f.Data) != string(want[j]) {
				t.Fatalf("frame %d (clip frame %d) differs from the clip (key %v)", i, j, f.Key)
			}
			continue
		}
		if i == 0 {
			if first = j; first%clip.GOP != 0 || !f.Key {
				t.Fatalf("first frame is clip frame %d (key %v), want a keyframe", first, f.Key)
			}
		}
		if j != (first+i)%clip.Frames {
			t.Fatalf("frame %d is clip frame %d, want %d", i, j, (first+i)%clip.Frames)
		}
		if f.Key != h265.IsKey(f.Data) || string(f.Data) != string(want[j]) {
			t.Fatalf("frame %d (clip frame %d) differs from the clip (key %v)", i, j, f.Key)
		}
		if i > 0 {
			if d := f.Time.Sub(frames[i-1].Time); d < 39*time.Millisecond || d > 41*time.Millisecond {
				t.Fatalf("frame %d: Time step %v, want 40ms (from RTP timestamps)", i, d)
			}
		}
	}
	if tr == TransportUDP {
		if st := src.Stats(); st.Frames < n || st.Transport != "udp" {
			t.Errorf("Stats = %+v, want ≥%d frames over udp", st, n)
		}
		return
	}
	if st := src.Stats(); st.Frames < n || st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("Stats = %+v, want ≥%d frames, no reconnects or errors", st, n)
	}
}
