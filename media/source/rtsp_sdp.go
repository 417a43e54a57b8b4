package source

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/custos-cctv/custos/media/h264"
)

// track is the H.264 or H.265 stream a camera's SDP offers.
type track struct {
	control     string // absolute URL for SETUP
	aggregate   string // absolute URL for PLAY and TEARDOWN
	payloadType uint8
	clockRate   uint32
	sps, pps    []byte // from sprop-parameter-sets (H.265: sprop-sps, sprop-pps); nil if absent
	codec       h264.Codec
	vps         []byte // H.265 only: from sprop-vps; nil if absent
}

// parseSDP finds the H.264 or H.265 video track in a DESCRIBE body (H.264
// if a stream offers both). base is the URL control attributes are
// relative to (Content-Base, else the request).
func parseSDP(body []byte, base string) (tr track, err error) {
	var sd sdp.SessionDescription
	// The SDP parser is not ours; a camera's bytes must not crash us.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: SDP parser failed", errMessage)
		}
	}()
	if err := sd.Unmarshal(body); err != nil {
		return track{}, fmt.Errorf("%w: SDP: %v", errMessage, err)
	}
	tr.aggregate = base
	if c, ok := sd.Attribute("control"); ok {
		tr.aggregate = resolveControl(base, c)
	}
	var offered []string
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		for _, f := range preferH264(md) {
			name, rate := rtpmap(md, f)
			if !strings.EqualFold(name, "H264") && !strings.EqualFold(name, "H265") {
				offered = append(offered, name)
				continue
			}
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				return track{}, fmt.Errorf("%w: SDP: bad payload type %.10q", errMessage, f)
			}
			tr.payloadType, tr.clockRate = uint8(pt), rate
			ctl, _ := md.Attribute("control")
			tr.control = resolveControl(tr.aggregate, ctl)
			parse := tr.parseFmtp
			if strings.EqualFold(name, "H265") {
				tr.codec, parse = h264.CodecH265, tr.parseFmtpH265
			}
			if err := parse(fmtp(md, f)); err != nil {
				return track{}, err
			}
			return tr, nil
		}
	}
	if len(offered) == 0 {
		return track{}, fmt.Errorf("%w: camera offers no video stream; Custos records H.264 and H.265", ErrUnsupportedCodec)
	}
	slices.Sort(offered)
	return track{}, fmt.Errorf("%w: camera offers only %s; Custos records H.264 and H.265 — set the camera's stream to one of them",
		ErrUnsupportedCodec, strings.Join(slices.Compact(offered), "/"))
}

// rtpmap returns a format's encoding name and clock rate, falling back to
// a description for static payload types that carry no rtpmap.
func rtpmap(md *sdp.MediaDescription, format string) (string, uint32) {
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, rest, _ := strings.Cut(a.Value, " ")
		if pt != format {
			continue
		}
		name, rate, _ := strings.Cut(rest, "/")
		rate, _, _ = strings.Cut(rate, "/")
		r, err := strconv.ParseUint(rate, 10, 32)
		if err != nil || r == 0 {
			r = 90000
		}
		return limit(strings.TrimSpace(name), 32), uint32(r)
	}
	return "payload type " + limit(format, 10), 90000
}

func fmtp(md *sdp.MediaDescription, format string) string {
	for _, a := range md.Attributes {
		if pt, rest, _ := strings.Cut(a.Value, " "); a.Key == "fmtp" && pt == format {
			return rest
		}
	}
	return ""
}

// parseFmtp reads the RFC 6184 parameters Custos cares about.
func (tr *track) parseFmtp(s string) error {
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch strings.ToLower(k) {
		case "packetization-mode":
			if v != "0" && v != "1" {
				return fmt.Errorf("%w: H.264 packetization-mode %.10s (interleaved) is not supported; want 0 or 1",
					ErrUnsupportedCodec, v)
			}
		case "sprop-parameter-sets":
			// Bad parameter sets here are not fatal: in-band ones may follow.
			for _, ps := range strings.Split(v, ",") {
				nal, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ps))
				if err != nil || len(nal) == 0 {
					continue
				}
				switch nal[0] & 0x1f {
				case 7:
					tr.sps = nal
				case 8:
					tr.pps = nal
				}
			}
		}
	}
	return nil
}

// resolveControl makes a control attribute absolute. Like ffmpeg and most
// clients, a relative control is appended to the base with a "/" between:
// cameras write Content-Base both with and without the trailing slash and
// mean the same thing, and some put a query in the base (Dahua's
// ".../realmonitor?channel=1/trackID=0") which URL resolution would lose.
func resolveControl(base, control string) string {
	control = strings.TrimSpace(control)
	switch {
	case control == "" || control == "*":
		return base
	case hasPrefixFold(control, "rtsp://") || hasPrefixFold(control, "rtsps://"):
		if u, err := url.Parse(control); err == nil {
			u.User = nil // never echo a camera's idea of credentials
			return u.String()
		}
		return base
	case strings.HasPrefix(control, "/"):
		if u, err := url.Parse(base); err == nil {
			if r, err := url.Parse(control); err == nil {
				return u.ResolveReference(r).String()
			}
		}
		return base
	}
	if strings.HasSuffix(base, "/") {
		return base + control
	}
	return base + "/" + control
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// limit truncates camera-supplied text before it reaches an error message.
func limit(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
