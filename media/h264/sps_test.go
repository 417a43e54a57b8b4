package h264_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
)

// firstSPS is the first SPS NAL unit of an Annex-B stream.
func firstSPS(t testing.TB, es []byte) []byte {
	t.Helper()
	for _, n := range h264.SplitNALs(es) {
		if len(n) > 0 && n[0]&0x1f == h264.NALSPS {
			return n
		}
	}
	t.Fatal("no SPS in the stream")
	return nil
}

func TestParseSPSOfTheFixture(t *testing.T) {
	s, err := h264.ParseSPS(firstSPS(t, clip.H264))
	if err != nil || s.Width != 640 || s.Height != 360 {
		t.Fatalf("the fixture's SPS: %+v %v, want 640x360", s, err)
	}
}

// Streams x264 writes: high profile with scaling matrices, a size that is
// no multiple of 16 (cropped), interlaced (field macroblocks), 4:4:4.
func TestParseSPSOfEncoders(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("needs ffmpeg with libx264 (apt install ffmpeg)")
	}
	for _, c := range []struct {
		name, size string
		args       []string
		w, h       int
	}{
		{"baseline cropped", "1920x1080", []string{"-profile:v", "baseline"}, 1920, 1080},
		{"high with scaling lists", "1280x720", []string{"-profile:v", "high", "-x264-params", "cqm=jvt"}, 1280, 720},
		{"interlaced", "720x576", []string{"-flags", "+ildct+ilme", "-x264-params", "interlaced=1"}, 720, 576},
		{"odd crop", "642x362", nil, 642, 362},
		{"4:4:4 high", "320x240", []string{"-pix_fmt", "yuv444p", "-profile:v", "high444"}, 320, 240},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"-v", "error", "-f", "lavfi", "-i", "testsrc=size=" + c.size + ":rate=5", "-frames:v", "1", "-c:v", "libx264"}
			if !strings.Contains(strings.Join(c.args, " "), "pix_fmt") {
				args = append(args, "-pix_fmt", "yuv420p")
			}
			cmd := exec.Command(ffmpeg, append(append(args, c.args...), "-f", "h264", "-")...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
			}
			s, err := h264.ParseSPS(firstSPS(t, out))
			if err != nil || s.Width != c.w || s.Height != c.h {
				t.Fatalf("ParseSPS = %+v, %v; want %dx%d", s, err, c.w, c.h)
			}
		})
	}
}

func TestParseSPSRefusesGarbage(t *testing.T) {
	sps := firstSPS(t, clip.H264)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"a PPS":     {0x68, 0xce, 0x3c, 0x80},
		"truncated": sps[:4],
		"huge":      {0x67, 0x42, 0x00, 0x1e, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x80},
	} {
		if s, err := h264.ParseSPS(b); err == nil {
			t.Errorf("%s: parsed as %+v", name, s)
		} else if strings.Contains(err.Error(), "%!") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseSPS(f *testing.F) {
	f.Add(firstSPS(f, clip.H264))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := h264.ParseSPS(b)
		if err == nil && (s.Width <= 0 || s.Height <= 0 || s.Width > 16384 || s.Height > 16384) {
			t.Fatalf("ParseSPS accepted %+v", s)
		}
	})
}
