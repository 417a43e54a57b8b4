package onvif

import (
	"strings"
	"testing"

	"github.com/custos-cctv/custos/media/onvif/onviftest"
)

// The fuzz targets feed device bytes to the parsers: they must return a
// value or an error, never panic, and keep their bounds.

func FuzzProbeMatch(f *testing.F) {
	id := "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	f.Add(onviftest.ProbeMatches(id, testEndpoint, testXAddr))
	f.Add(onviftest.ProbeMatches(id, testEndpoint, "ftp://x"))
	f.Add(probeMessage(id, "tds:Device"))
	f.Add([]byte(`<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, err := ParseProbeMatches(b, map[string]bool{id: true})
		if err == nil && len(devs) == 0 {
			t.Fatal("no devices and no error")
		}
		for _, d := range devs {
			if d.Endpoint == "" || len(d.XAddrs) == 0 || len(d.XAddrs) > MaxXAddrs || len(d.Scopes) > maxScopes {
				t.Fatalf("device out of bounds: %+v", d)
			}
			for _, x := range d.XAddrs {
				if !strings.HasPrefix(x, "http://") && !strings.HasPrefix(x, "https://") {
					t.Fatalf("XAddr %q", x)
				}
			}
		}
	})
}

func FuzzGetProfiles(f *testing.F) {
	f.Add(onviftest.Doc("getprofiles.xml", nil))
	f.Add(onviftest.Doc("fault-notauthorized.xml", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r profilesResponse
		if decodeSOAP(b, &r) != nil {
			return
		}
		ps, err := r.profiles()
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > maxProfiles {
			t.Fatalf("%d profiles", len(ps))
		}
		for _, p := range ps {
			if p.Token == "" || len(p.Token) > maxToken || p.Width > 16384 || p.Height > 16384 || p.FPS > 1000 {
				t.Fatalf("profile out of bounds: %+v", p)
			}
		}
		ChooseProfile(ps, "")
	})
}

func FuzzGetStreamUri(f *testing.F) {
	f.Add(onviftest.Doc("getstreamuri.xml", map[string]string{"RTSP_URL": testRTSP}))
	f.Add(onviftest.Doc("fault-noprofile.xml", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r streamURIResponse
		if decodeSOAP(b, &r) != nil {
			return
		}
		u, err := r.uri()
		if err == nil && (len(u) > maxURI || !strings.HasPrefix(strings.ToLower(u), "rtsp://")) {
			t.Fatalf("uri %q", u)
		}
	})
}
