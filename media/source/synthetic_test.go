package source

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

func TestFixtureHasInBandParameterSets(t *testing.T) {
	fx := loadFixture(t)
	for i, au := range fx.aus {
		ty := types(au)
		idr := false
		for _, x := range ty {
			idr = idr || x == h264.NALIDR
		}
		if idr != (i%clip.GOP == 0) {
			t.Fatalf("frame %d: IDR = %v, want IDR exactly every %d frames", i, idr, clip.GOP)
		}
		if idr && (ty[0] != h264.NALSPS || ty[1] != h264.NALPPS) {
			t.Fatalf("IDR frame %d starts with NAL types %v, want SPS, PPS", i, ty)
		}
	}
}

func TestSyntheticPacing(t *testing.T) {
	fc := newFakeClock()
	src, err := Open("synthetic:", Options{clock: fc})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	start := fc.Now()
	run(t, src, c)
	const period = 40 * time.Millisecond
	for n := 1; n <= 60; n++ {
		// The source has emitted n frames and is blocked on the clock:
		// without an Advance it emits nothing more.
		waitFor(t, 5*time.Second, "source blocked on the clock", func() bool { return c.len() == n && fc.Waiters() == 1 })
		if got := c.len(); got != n {
			t.Fatalf("after %d periods: %d frames, want %d", n-1, got, n)
		}
		fc.Advance(period)
	}
	// Let the frame the last Advance released be counted too: the source
	// updates its stats after emit returns and only then waits again.
	waitFor(t, 5*time.Second, "source blocked on the clock again", func() bool { return c.len() == 61 && fc.Waiters() == 1 })
	frames, _ := c.snapshot()
	for i, f := range frames {
		if want := start.Add(time.Duration(i) * period); !f.Time.Equal(want) {
			t.Fatalf("frame %d Time = %v, want %v", i, f.Time, want)
		}
	}
	st := src.Stats()
	if st.State != StatePlaying || st.Frames != uint64(len(frames)) {
		t.Errorf("Stats = %+v, want playing with %d frames", st, len(frames))
	}
	if st.FPS < 20 || st.FPS > 30 {
		t.Errorf("Stats.FPS = %.1f, want about 25", st.FPS)
	}
	if st.Bitrate <= 0 {
		t.Errorf("Stats.Bitrate = %v, want > 0", st.Bitrate)
	}
}

func TestSyntheticLoopsWithFreshTimes(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		url    string
		period time.Duration
	}{
		{"synthetic:?pace=none", 40 * time.Millisecond},
		{"synthetic:?pace=none&fps=50", 20 * time.Millisecond},
		{"synthetic:?fps=30&pace=none", time.Second / 30},
	} {
		t.Run(tc.url, func(t *testing.T) {
			src, err := Open(tc.url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			const n = 2*clip.Frames + 30
			c := &collector{limit: n}
			_, result := run(t, src, c)
			if err := result(); !errors.Is(err, errEnough) {
				t.Fatalf("Run = %v, want the emit error returned unchanged", err)
			}
			frames, _ := c.snapshot()
			if len(frames) != n {
				t.Fatalf("got %d frames, want %d", len(frames), n)
			}
			for i, f := range frames {
				fx.checkFrame(t, f, i%clip.Frames)
				if i > 0 {
					if d := f.Time.Sub(frames[i-1].Time); d != tc.period {
						t.Fatalf("frame %d: Time step %v, want exactly %v", i, d, tc.period)
					}
				}
			}
			if d := time.Since(frames[0].Time); d < 0 || d > time.Minute {
				t.Errorf("first frame Time is %v from now, want a fresh wall-clock time", d)
			}
		})
	}
}

func TestSyntheticScale(t *testing.T) {
	src, err := Open("synthetic:?pace=none&scale=4", Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := clipFrames(h264.CodecH264, 1)
	c := &collector{limit: clip.GOP + 1}
	_, result := run(t, src, c)
	result()
	frames, _ := c.snapshot()
	for i, f := range frames {
		nals := h264.SplitNALs(f.Data)
		if got, want := len(f.Data), 4*len(plain[i].Data); got < want || got > want+16 {
			t.Fatalf("frame %d: %d bytes, want about %d", i, got, want)
		}
		if h264.Type(nals[len(nals)-1]) != 12 {
			t.Fatalf("frame %d: last NAL type %d, want filler (12)", i, h264.Type(nals[len(nals)-1]))
		}
		if f.Key && (h264.Type(nals[0]) != h264.NALSPS || h264.Type(nals[1]) != h264.NALPPS) {
			t.Fatalf("scaled keyframe %d starts with %v", i, types(nals))
		}
	}
}

// TestSyntheticH265: codec=h265 plays the H.265 clip: every frame says
// H.265, an IRAP led by VPS, SPS and PPS every GOP, 640x360 by its SPS,
// and scale pads with H.265 filler data.
func TestSyntheticH265(t *testing.T) {
	src, err := Open("synthetic:?codec=h265&pace=none&scale=2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{limit: clip.Frames + 1}
	_, result := run(t, src, c)
	result()
	frames, _ := c.snapshot()
	if len(frames) < clip.Frames+1 {
		t.Fatalf("%d frames, want %d", len(frames), clip.Frames+1)
	}
	for i, f := range frames {
		nals := h264.SplitNALs(f.Data)
		if f.Codec != h264.CodecH265 || f.Key != (i%clip.GOP == 0) || f.Key != h265.IsKey(f.Data) {
			t.Fatalf("frame %d: codec %v key %v; want hevc, a keyframe every %d", i, f.Codec, f.Key, clip.GOP)
		}
		if last := h265.Type(nals[len(nals)-1]); last != h265.NALFD {
			t.Fatalf("frame %d: last NAL type %d, want filler data (%d)", i, last, h265.NALFD)
		}
		if !f.Key {
			continue
		}
		if h265.Type(nals[0]) != h265.NALVPS || h265.Type(nals[1]) != h265.NALSPS || h265.Type(nals[2]) != h265.NALPPS {
			t.Fatalf("keyframe %d does not start with VPS, SPS, PPS", i)
		}
		sps, err := h265.ParseSPS(nals[1])
		if err != nil || sps.Width != clip.Width || sps.Height != clip.Height {
			t.Fatalf("keyframe %d: SPS %+v, %v; want %dx%d", i, sps, err, clip.Width, clip.Height)
		}
	}
	if !frames[clip.Frames].Key || !bytes.Equal(frames[clip.Frames].Data, frames[0].Data) {
		t.Errorf("the clip does not loop to its first frame")
	}
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"synthetic:?fsp=25", `unknown parameter "fsp"`},
		{"synthetic:?fps=0", "fps"},
		{"synthetic:?fps=abc", "fps"},
		{"synthetic:?fps=25&fps=30", "given 2 times"},
		{"synthetic:?pace=fast", "pace"},
		{"synthetic:?scale=1000", "scale"},
		{"synthetic:?codec=vp8", `codec="vp8": want h264 or h265`},
		{"synthetic:clip", "only query parameters"},
		{"synthetic://host", "only query parameters"},
		{"ftp://user:hunter22@cam/x", `unsupported scheme "ftp"`},
		{"cam.local/stream", "no scheme"},
		{"rtsp://", "want rtsp://"},
		{"rtsp://admin:hunter22@cam/x#frag", "fragment"},
		{"rtsp://admin:hunter22@cam:port/x", "cannot parse"},
		{"rtsp://admin:hunter22@[::1/x", "cannot parse"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Open(tc.url, Options{})
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("Open(%q) = %v, want ErrBadURL", tc.url, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rtsp://admin:hunter22@cam:554/s", "rtsp://admin:xxxxx@cam:554/s"},
		{"rtsp://cam/s", "rtsp://cam/s"},
		{"rtsp://admin@cam/s", "rtsp://admin@cam/s"},
		{"rtsp://admin:hunter22@cam:port/s", "rtsp://xxxxx@cam:port/s"},
		{"synthetic:?fps=5", "synthetic:?fps=5"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
