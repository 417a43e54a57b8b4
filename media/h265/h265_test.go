package h265

import (
	"testing"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
)

// clipNALs is the H.265 clip's NAL units.
func clipNALs(t testing.TB) [][]byte {
	nals := h264.SplitNALs(clip.H265)
	if len(nals) < clip.Frames {
		t.Fatalf("H.265 clip: %d NAL units", len(nals))
	}
	return nals
}

func TestClipTypes(t *testing.T) {
	var irap, vcl, vps, sps, pps int
	for _, n := range clipNALs(t) {
		switch ty := Type(n); {
		case IsIRAP(ty):
			irap++
			vcl++
		case IsVCL(ty):
			vcl++
		case ty == NALVPS:
			vps++
		case ty == NALSPS:
			sps++
		case ty == NALPPS:
			pps++
		}
	}
	keys := clip.Frames / clip.GOP
	if irap != keys || vcl != clip.Frames || vps != keys || sps != keys || pps != keys {
		t.Fatalf("clip: %d IRAP, %d VCL, %d VPS, %d SPS, %d PPS; want %d pictures, %d keyframes with parameter sets",
			irap, vcl, vps, sps, pps, clip.Frames, keys)
	}
}

func TestTypeAndKey(t *testing.T) {
	idr := []byte{NALIDRNLP << 1, 1, 0xaf}
	trail := []byte{1 << 1, 1, 0xaf}
	cra := []byte{NALCRA << 1, 1, 0xaf}
	for _, tc := range []struct {
		au   []byte
		want bool
	}{
		{h264.JoinNALs(idr), true},
		{h264.JoinNALs(cra), true},
		{h264.JoinNALs([]byte{NALVPS << 1, 1, 0xaa}, trail), false},
		{h264.JoinNALs([]byte{24 << 1, 1, 0xaa}), false}, // reserved non-IRAP VCL
		{nil, false},
	} {
		if got := IsKey(tc.au); got != tc.want {
			t.Errorf("IsKey(% x) = %v, want %v", tc.au, got, tc.want)
		}
	}
	if Type([]byte{0x40}) != -1 || Type(nil) != -1 {
		t.Errorf("Type of a unit shorter than its header is not -1")
	}
	if !IsKeyFrame(h264.CodecH265, h264.JoinNALs(idr)) || IsKeyFrame(h264.CodecH264, h264.JoinNALs(idr)) {
		t.Errorf("IsKeyFrame does not follow the codec")
	}
	if Type(AUD) != NALAUD {
		t.Errorf("AUD has type %d", Type(AUD))
	}
}

func TestParseSPS(t *testing.T) {
	var sps []byte
	for _, n := range clipNALs(t) {
		if Type(n) == NALSPS {
			sps = n
			break
		}
	}
	got, err := ParseSPS(sps)
	if err != nil || got != (SPS{Width: clip.Width, Height: clip.Height}) {
		t.Fatalf("ParseSPS(clip) = %+v, %v; want %dx%d", got, err, clip.Width, clip.Height)
	}
	for i := range len(sps) - 1 {
		if _, err := ParseSPS(sps[:i]); err == nil && i < 8 {
			t.Errorf("ParseSPS of the first %d bytes succeeded", i)
		}
	}
	if _, err := ParseSPS([]byte{NALPPS << 1, 1, 0xff}); err == nil {
		t.Errorf("ParseSPS accepted a PPS")
	}
	// An Exp-Golomb code of 40 zero bits is refused, not wrapped.
	long := append([]byte{NALSPS << 1, 1, 0x01}, make([]byte, 12)...)
	long = append(long, 0, 0, 0, 0, 0, 0x80)
	if _, err := ParseSPS(long); err == nil {
		t.Errorf("ParseSPS accepted an over-long Exp-Golomb code")
	}
}

func FuzzParseSPS(f *testing.F) {
	for _, n := range h264.SplitNALs(clip.H265) {
		if Type(n) == NALSPS {
			f.Add(n)
			break
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSPS(b)
		if err == nil && (s.Width <= 0 || s.Height <= 0 || s.Width > maxDim || s.Height > maxDim) {
			t.Fatalf("accepted size %dx%d", s.Width, s.Height)
		}
		_ = IsKey(b)
	})
}
