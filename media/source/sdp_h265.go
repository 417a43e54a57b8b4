package source

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/h265"
)

// preferH264 lists a video description's formats with any H.264 ones
// first: a camera offering both in one stream gets recorded in the codec
// every browser can play, and otherwise the camera's order stands.
func preferH264(md *sdp.MediaDescription) []string {
	fs := slices.Clone(md.MediaName.Formats)
	slices.SortStableFunc(fs, func(a, b string) int {
		ha, _ := rtpmap(md, a)
		hb, _ := rtpmap(md, b)
		switch ia, ib := strings.EqualFold(ha, "H264"), strings.EqualFold(hb, "H264"); {
		case ia && !ib:
			return -1
		case ib && !ia:
			return 1
		}
		return 0
	})
	return fs
}

// parseFmtpH265 reads the RFC 7798 parameters Custos cares about. Custos
// depacketizes only without decoding order numbers (DONL/DOND absent,
// which sprop-max-don-diff 0 says) in a single RTP stream: anything else
// needs reordering buffers it does not keep, so it is refused rather than
// recorded out of order.
func (tr *track) parseFmtpH265(s string) error {
	for _, kv := range strings.Split(s, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "sprop-max-don-diff", "sprop-depack-buf-nalus":
			if n, err := strconv.ParseUint(v, 10, 32); err != nil || n != 0 {
				return fmt.Errorf("%w: H.265 %s=%.10s (decoding order numbers, interleaved packets) is not supported; want 0 — turn off interleaving on the camera",
					ErrUnsupportedCodec, strings.ToLower(k), v)
			}
		case "tx-mode":
			if !strings.EqualFold(v, "SRST") {
				return fmt.Errorf("%w: H.265 tx-mode=%.10s (several RTP streams) is not supported; want SRST",
					ErrUnsupportedCodec, v)
			}
		case "sprop-vps":
			tr.vps = firstParamSet(v, h265.NALVPS)
		case "sprop-sps":
			tr.sps = firstParamSet(v, h265.NALSPS)
		case "sprop-pps":
			tr.pps = firstParamSet(v, h265.NALPPS)
		}
	}
	return nil
}

// firstParamSet decodes the first base64 NAL unit of type t in a
// comma-separated list. Bad ones are skipped, not fatal: in-band parameter
// sets may follow, and without any the depacketizer waits for them.
func firstParamSet(list string, t int) []byte {
	for _, ps := range strings.Split(list, ",") {
		nal, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ps))
		if err == nil && h265.Type(nal) == t && validNAL(nal) {
			return nal
		}
	}
	return nil
}

// depacketizer returns the track's depacketizer, for its codec.
func (tr track) depacketizer() *depacketizer {
	if tr.codec == h264.CodecH265 {
		return newDepacketizer265(tr.vps, tr.sps, tr.pps)
	}
	return newDepacketizer(tr.sps, tr.pps)
}
