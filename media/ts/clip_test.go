package ts

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

const (
	clipPath     = "../clip/clip-640x360-25fps-10s.h264"
	clipFrames   = 250
	clipGOP      = 25
	clipInterval = 40 * time.Millisecond
)

var clipAUs = sync.OnceValues(func() ([][]byte, error) {
	b, err := os.ReadFile(clipPath)
	if err != nil {
		return nil, err
	}
	return splitAUs(b), nil
})

// splitAUs groups an Annex-B stream into access units: AUD, SPS, PPS and SEI
// after a slice start a new one, and so does a slice whose first_mb_in_slice
// is 0 (ue(v) 0 is a single 1 bit) after a slice.
func splitAUs(b []byte) [][]byte {
	var aus [][]byte
	var cur [][]byte
	seenSlice := false
	for _, n := range h264.SplitNALs(b) {
		t := h264.Type(n)
		isSlice := t == h264.NALSlice || t == h264.NALIDR
		newAU := false
		switch t {
		case h264.NALAUD, h264.NALSPS, h264.NALPPS, h264.NALSEI:
			newAU = seenSlice
		case h264.NALSlice, h264.NALIDR:
			newAU = seenSlice && len(n) > 1 && n[1]&0x80 != 0
		}
		if newAU {
			aus = append(aus, h264.JoinNALs(cur...))
			cur, seenSlice = nil, false
		}
		cur = append(cur, n)
		seenSlice = seenSlice || isSlice
	}
	if len(cur) > 0 {
		aus = append(aus, h264.JoinNALs(cur...))
	}
	return aus
}

// fixtureFrames returns the clip's 250 frames stamped from t0 at 25 fps.
func fixtureFrames(tb testing.TB, t0 time.Time) []h264.Frame {
	tb.Helper()
	aus, err := clipAUs()
	if err != nil {
		tb.Fatalf("read fixture clip: %v", err)
	}
	if len(aus) != clipFrames {
		tb.Fatalf("fixture clip: got %d access units, want %d", len(aus), clipFrames)
	}
	frames := make([]h264.Frame, len(aus))
	for i, au := range aus {
		frames[i] = h264.Frame{Time: t0.Add(time.Duration(i) * clipInterval), Key: h264.IsKey(au), Data: au}
		if want := i%clipGOP == 0; frames[i].Key != want {
			tb.Fatalf("fixture frame %d: key %v, want %v", i, frames[i].Key, want)
		}
	}
	return frames
}

// segmentAll pushes frames through a Segmenter and returns every segment,
// the flushed one last.
func segmentAll(tb testing.TB, s *Segmenter, frames []h264.Frame) []*Segment {
	tb.Helper()
	var segs []*Segment
	for i, f := range frames {
		seg, err := s.Push(f)
		if err != nil {
			tb.Fatalf("push frame %d: %v", i, err)
		}
		if seg != nil {
			segs = append(segs, seg)
		}
	}
	if seg := s.Flush(); seg != nil {
		segs = append(segs, seg)
	}
	return segs
}

// recordingStart is a wall-clock start for the fixture whose 10 s of PTS do
// not wrap (checked in TestFixtureStartNoWrap).
var recordingStart = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
