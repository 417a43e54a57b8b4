package source

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// synthetic plays the embedded clip in a loop. Its query parameters:
//
//	fps=N      frames per second, 1..1000 (default 25, the clip's own rate);
//	           Frame.Time advances by exactly 1/N per frame
//	pace=none  emit as fast as emit returns (benchmarks); Frame.Time still
//	           advances by 1/N, so downstream sees a normal-looking stream
//	pace=real  wait for each frame's time on the clock (default)
//	scale=K    1..64: append a filler-data NAL (which decoders skip) so
//	           each frame is about K times its size, to load the recording
//	           path with a higher bitrate
//	codec=C    h264 (default) or h265: which of the clip's two encodings
type synthetic struct {
	frames []h264.Frame // Time unset; Data shared, copied on emit
	period time.Duration
	paced  bool
	clock  clock
	stats  *tracker
}

var _ Source = (*synthetic)(nil)

func newSynthetic(u *url.URL, opt Options) (*synthetic, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("source: open %s: %w: %s", u.Redacted(), ErrBadURL, fmt.Sprintf(format, args...))
	}
	if u.Opaque != "" || u.Host != "" || u.Path != "" || u.User != nil || u.Fragment != "" {
		return nil, bad("synthetic: takes only query parameters, e.g. synthetic:?fps=25")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, bad("cannot parse the query")
	}
	fps, scale, paced, codec := clip.FPS, 1, true, h264.CodecH264
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, bad("parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "fps":
			if fps, err = strconv.Atoi(v); err != nil || fps < 1 || fps > 1000 {
				return nil, bad("fps=%q: want an integer from 1 to 1000", v)
			}
		case "scale":
			if scale, err = strconv.Atoi(v); err != nil || scale < 1 || scale > 64 {
				return nil, bad("scale=%q: want an integer from 1 to 64", v)
			}
		case "codec":
			switch v {
			case "h264":
				codec = h264.CodecH264
			case "h265":
				codec = h264.CodecH265
			default:
				return nil, bad("codec=%q: want h264 or h265", v)
			}
		case "pace":
			switch v {
			case "none":
				paced = false
			case "real":
				paced = true
			default:
				return nil, bad("pace=%q: want none or real", v)
			}
		default:
			return nil, bad("unknown parameter %q; known: codec, fps, pace, scale", k)
		}
	}
	frames, err := clipFrames(codec, scale)
	if err != nil {
		return nil, fmt.Errorf("source: open synthetic: %w", err)
	}
	return &synthetic{
		frames: frames,
		period: time.Second / time.Duration(fps),
		paced:  paced,
		clock:  opt.clock,
		stats:  &tracker{clock: opt.clock},
	}, nil
}

// clipFrames splits the embedded clip of codec into frames, each keyframe
// led by its parameter sets, each frame padded to scale times its size.
func clipFrames(codec h264.Codec, scale int) ([]h264.Frame, error) {
	var ps paramSets
	var ps265 paramSets265
	aus := splitAccessUnits(clip.H264)
	if codec == h264.CodecH265 {
		aus = splitAccessUnits265(clip.H265)
	}
	var frames []h264.Frame
	for i, au := range aus {
		var data []byte
		var key, ok bool
		if codec == h264.CodecH265 {
			data, key, ok = buildFrame265(au, &ps265)
		} else {
			data, key, ok = buildFrame(au, &ps)
		}
		if !ok {
			return nil, fmt.Errorf("%s clip frame %d: keyframe without parameter sets", codec, i)
		}
		if scale > 1 {
			data = slices.Concat(data, h264.JoinNALs(filler(codec, (scale-1)*len(data))))
		}
		frames = append(frames, h264.Frame{Key: key, Data: data, Codec: codec})
	}
	if len(frames) == 0 || !frames[0].Key {
		return nil, fmt.Errorf("clip does not start with a keyframe")
	}
	return frames, nil
}

// filler returns a filler-data NAL unit (H.264 and H.265 7.3.2.7) of
// about n bytes.
func filler(codec h264.Codec, n int) []byte {
	b := make([]byte, max(n, 3))
	hl := 1
	b[0] = 12 // nal_ref_idc 0, type 12
	if codec == h264.CodecH265 {
		hl = h265.HeaderLen
		b[0], b[1] = h265.NALFD<<1, 1 // type 38, layer 0, temporal id 0
	}
	for i := hl; i < len(b)-1; i++ {
		b[i] = 0xff
	}
	b[len(b)-1] = 0x80 // rbsp_trailing_bits
	return b
}

// Run emits frames until ctx ends. Frame n of the run is stamped
// start+n*period, where start is the clock's time when Run began.
func (s *synthetic) Run(ctx context.Context, emit func(h264.Frame) error) error {
	s.stats.setState(StatePlaying)
	defer s.stats.setState(StateIdle)
	start := s.clock.Now()
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n) * s.period)
		if s.paced {
			if d := at.Sub(s.clock.Now()); d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-s.clock.After(d):
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f := s.frames[n%len(s.frames)]
		f.Time = at
		f.Data = slices.Clone(f.Data)
		if err := emit(f); err != nil {
			return err
		}
		s.stats.frame(len(f.Data))
	}
}

// Stats reports the source's counters.
func (s *synthetic) Stats() Stats { return s.stats.snapshot() }
