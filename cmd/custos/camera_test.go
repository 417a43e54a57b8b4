package main

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/node/recording"
)

// A camera whose segments the full disk refuses is not shown as recording.
func TestCamerasShowsADiskThatStoresNothing(t *testing.T) {
	var b strings.Builder
	writeCameras(&b, &recording.Status{Cameras: []recording.CameraStatus{
		{Camera: "praha-1/door", State: media.StateRecording, DiskFull: true, DiskFullSince: time.Now(), SegmentsLost: 7},
		{Camera: "praha-1/yard", State: media.StateRecording},
	}})
	out := b.String()
	door, yard := lineOf(out, "praha-1/door"), lineOf(out, "praha-1/yard")
	if !strings.Contains(door, "NOT STORING (disk full)") || strings.Contains(door, " recording ") || !strings.Contains(door, "7 segments lost") {
		t.Errorf("a camera losing every segment shows as:\n%s", door)
	}
	if !strings.Contains(yard, "recording") {
		t.Errorf("a healthy camera shows as:\n%s", yard)
	}
}

// The table says what each camera sends and how: codec and size,
// transport (and a fallback), UDP loss, an rtsps camera's pinned key.
func TestCamerasShowsVideoAndTransport(t *testing.T) {
	var b strings.Builder
	writeCameras(&b, &recording.Status{Cameras: []recording.CameraStatus{
		{Camera: "praha-1/door", State: media.StateRecording, Codec: "hevc", Width: 2560, Height: 1440, Transport: "udp", PacketsLost: 12, PacketsReordered: 3},
		{Camera: "praha-1/yard", State: media.StateRecording, Codec: "h264", Width: 1920, Height: 1080, Transport: "tls", CertFingerprint: "sha256:ab12"},
		{Camera: "praha-1/till", State: media.StateRecording, Codec: "h264", Width: 640, Height: 360, Transport: "tcp", FellBack: true},
	}})
	out := b.String()
	for prefix, want := range map[string][]string{
		"praha-1/door":              {"hevc 2560x1440", "udp", "12 lost, 3 reordered"},
		"praha-1/yard":              {"h264 1920x1080", "tls"},
		"praha-1/till":              {"h264 640x360", "tcp (fell back from udp)"},
		"certificate  praha-1/yard": {"sha256:ab12"},
	} {
		line := lineOf(out, prefix)
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q\n%s", prefix, line, w, out)
			}
		}
	}
}

func lineOf(s, prefix string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
