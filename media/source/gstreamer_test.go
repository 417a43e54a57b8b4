package source

import (
	"context"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/source/gsttest"
)

// TestGStreamer records from a real RTSP server and checks every frame
// against the fixture byte for byte.
func TestGStreamer(t *testing.T) {
	url := gsttest.Start(t)
	fx := loadFixture(t)
	src, err := Open(url, Options{Backoff: Backoff{Initial: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cancel, result := run(t, src, c)
	// Three seconds of video (75 frames) at 25 fps, read as it is paced.
	const want = 3 * clip.FPS
	waitFor(t, 20*time.Second, "75 frames from GStreamer", func() bool { return c.len() >= want+1 })
	cancel()
	if err := result(); err != context.Canceled {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
	frames, arrived := c.snapshot()

	first := fx.index(t, frames[0])
	if first%clip.GOP != 0 {
		t.Fatalf("first frame is fixture frame %d, want a keyframe", first)
	}
	for i, f := range frames {
		fx.checkFrame(t, f, (first+i)%clip.Frames)
		if i == 0 {
			continue
		}
		if d := f.Time.Sub(frames[i-1].Time); d < 39*time.Millisecond || d > 41*time.Millisecond {
			t.Fatalf("frame %d: Time step %v, want 40ms (from RTP timestamps)", i, d)
		}
	}
	// Paced at about 25 fps: 75 frames must take most of 3 s to arrive.
	if span := arrived[want].Sub(arrived[0]); span < 2*time.Second || span > 6*time.Second {
		t.Errorf("%d frames arrived over %v, want about 3s at 25 fps", want, span)
	}
	if d := time.Since(frames[0].Time); d < 0 || d > time.Minute {
		t.Errorf("first frame Time is %v ago, want anchored to now", d)
	}
	if st := src.Stats(); st.Frames < want || st.Reconnects != 0 || st.LastError != "" {
		t.Errorf("Stats = %+v, want ≥%d frames, no reconnects or errors", st, want)
	}
}
