package redact

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Clip is what ffprobe says about an MPEG-TS file's first video stream.
type Clip struct {
	Codec         string // "h264" or "hevc" (H.265)
	Width, Height int
	FrameRate     float64 // frames per second; 0 if ffprobe cannot tell
	Frames        int     // video packets (one per frame in an export)
	Duration      time.Duration
}

// Probe asks ffprobe (at the path given, or on PATH if "") about the
// MPEG-TS file at path, reading it as a local MPEG-TS file and nothing
// else (no format guessing, no protocol but file). It refuses a file
// without an H.264 or H.265 video stream, the codecs Custos records.
func Probe(ctx context.Context, ffprobe, path string) (Clip, error) {
	ffprobe, err := lookTool(ffprobe, "ffprobe")
	if err != nil {
		return Clip{}, err
	}
	var out strings.Builder
	args := []string{"-v", "error", "-protocol_whitelist", "file", "-f", "mpegts", "-count_packets",
		"-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,r_frame_rate,nb_read_packets:format=duration",
		"-of", "json", fileURL(path)}
	if err := run(ctx, ffprobe, args, nil, &limitWriter{w: &out, n: 1 << 16}); err != nil {
		return Clip{}, fmt.Errorf("probing %s: %w", path, err)
	}
	clip, err := parseProbe([]byte(out.String()))
	if err != nil {
		return Clip{}, fmt.Errorf("probing %s: %w", path, err)
	}
	return clip, nil
}

func parseProbe(b []byte) (Clip, error) {
	var p struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
			FrameRate string `json:"r_frame_rate"`
			NbPackets string `json:"nb_read_packets"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Clip{}, fmt.Errorf("ffprobe's answer: %v", err)
	}
	if len(p.Streams) == 0 {
		return Clip{}, fmt.Errorf("no video stream (is it an MPEG-TS export?)")
	}
	s := p.Streams[0]
	c := Clip{Codec: s.CodecName, Width: s.Width, Height: s.Height}
	if c.Codec != "h264" && c.Codec != "hevc" {
		return Clip{}, fmt.Errorf("the video is %q, not H.264 or H.265", c.Codec)
	}
	if c.Width <= 0 || c.Height <= 0 {
		return Clip{}, fmt.Errorf("ffprobe gives no frame size (%dx%d)", c.Width, c.Height)
	}
	if num, den, ok := strings.Cut(s.FrameRate, "/"); ok {
		n, err1 := strconv.ParseFloat(num, 64)
		d, err2 := strconv.ParseFloat(den, 64)
		if err1 == nil && err2 == nil && d > 0 && n > 0 && n/d <= 1000 {
			c.FrameRate = n / d
		}
	}
	frames, err := strconv.Atoi(s.NbPackets)
	if err != nil || frames <= 0 {
		return Clip{}, fmt.Errorf("no video frames (ffprobe counted %q)", s.NbPackets)
	}
	c.Frames = frames
	sec, err := strconv.ParseFloat(p.Format.Duration, 64)
	if err != nil || sec <= 0 || math.IsInf(sec, 0) || sec > 1e7 {
		return Clip{}, fmt.Errorf("cannot tell the clip's duration (ffprobe says %q)", p.Format.Duration)
	}
	c.Duration = time.Duration(sec * float64(time.Second))
	return c, nil
}
