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

func lineOf(s, prefix string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
