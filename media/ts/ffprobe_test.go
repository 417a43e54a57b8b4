package ts

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// probe is the part of ffprobe's JSON the tests read.
type probe struct {
	Streams []struct {
		CodecName    string `json:"codec_name"`
		Width        int    `json:"width"`
		Height       int    `json:"height"`
		NbReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
	Frames []struct {
		PTS      int64 `json:"pts"`
		KeyFrame int   `json:"key_frame"`
	} `json:"frames"`
}

// ffprobe decodes path and fails the test on any message at -v warning
// (stricter than error: PES size mismatches, for one, are warnings).
func ffprobe(tb testing.TB, path string) probe {
	tb.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		tb.Skip("ffprobe not installed (apt-get install ffmpeg); the pure-Go checks in mux_test.go still run")
	}
	cmd := exec.Command(bin, "-v", "warning", "-count_frames", "-select_streams", "v",
		"-show_entries", "stream=nb_read_frames,codec_name,width,height:frame=pts,key_frame",
		"-of", "json", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("ffprobe %s: %v\n%s", filepath.Base(path), err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		tb.Errorf("ffprobe %s reported errors:\n%s", filepath.Base(path), stderr.Bytes())
	}
	var p probe
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		tb.Fatalf("ffprobe %s: parse output: %v", filepath.Base(path), err)
	}
	if len(p.Streams) != 1 {
		tb.Fatalf("ffprobe %s: %d video streams, want 1", filepath.Base(path), len(p.Streams))
	}
	return p
}

// checkProbe checks codec, size and that frames decoded in order.
func checkProbe(tb testing.TB, name string, p probe, frames int) {
	tb.Helper()
	checkProbeCodec(tb, name, p, frames, "h264")
}

func checkProbeCodec(tb testing.TB, name string, p probe, frames int, codec string) {
	tb.Helper()
	st := p.Streams[0]
	if st.CodecName != codec || st.Width != 640 || st.Height != 360 {
		tb.Errorf("%s: %s %dx%d, want %s 640x360", name, st.CodecName, st.Width, st.Height, codec)
	}
	if n, _ := strconv.Atoi(st.NbReadFrames); n != frames || len(p.Frames) != frames {
		tb.Errorf("%s: decoded %s frames (%d listed), want %d", name, st.NbReadFrames, len(p.Frames), frames)
	}
	if len(p.Frames) > 0 && p.Frames[0].KeyFrame != 1 {
		tb.Errorf("%s: first frame is not a keyframe", name)
	}
	for i := 1; i < len(p.Frames); i++ {
		if p.Frames[i].PTS <= p.Frames[i-1].PTS {
			tb.Errorf("%s: frame %d pts %d after %d", name, i, p.Frames[i].PTS, p.Frames[i-1].PTS)
			break
		}
	}
}

// TestFFprobe: each 4 s segment of the clip decodes alone, and their
// concatenation decodes to all 250 frames, PTS rising from the wall clock.
func TestFFprobe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start time.Time
	}{
		{"wall clock", recordingStart},
		// 2^33 ticks after the epoch, minus 5 s: the PTS wraps mid-clip.
		{"across PTS wrap", time.Unix(95443, 717688889).Add(-5 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := fixtureFrames(t, tc.start)
			segs := segmentAll(t, NewSegmenter(Config{}), frames)
			dir := t.TempDir()
			var all []byte
			for i, seg := range segs {
				path := filepath.Join(dir, "seg"+strconv.Itoa(i)+".ts")
				if err := os.WriteFile(path, seg.Data, 0o600); err != nil {
					t.Fatal(err)
				}
				checkProbe(t, filepath.Base(path), ffprobe(t, path), seg.Frames)
				all = append(all, seg.Data...)
			}
			path := filepath.Join(dir, "all.ts")
			if err := os.WriteFile(path, all, 0o600); err != nil {
				t.Fatal(err)
			}
			p := ffprobe(t, path)
			checkProbe(t, "concatenation", p, len(frames))
			if len(p.Frames) > 0 {
				// ffprobe unwraps a wrapping PTS by going negative first
				got := (p.Frames[0].PTS%ptsWrap + ptsWrap) % ptsWrap
				if want := int64(PTS(tc.start)); got != want {
					t.Errorf("first pts %d, want %d from the wall clock", got, want)
				}
				for _, i := range []int{100, 200} {
					if i < len(p.Frames) && p.Frames[i].KeyFrame != 1 {
						t.Errorf("frame %d, first of a segment, is not a keyframe", i)
					}
				}
			}
		})
	}
}
