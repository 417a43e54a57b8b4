package source

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRTPClock(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := rtpClock{rate: 90000}
	steps := []struct {
		ts   uint32
		wall time.Duration // wall clock since start
		want time.Duration // expected Frame.Time since start
	}{
		{0xffff_f000, 0, 0},
		{0xffff_f000 + 3600, 40 * time.Millisecond, 40 * time.Millisecond},
		{7200 - 0x1000, 80 * time.Millisecond, 80 * time.Millisecond}, // wraps past 2^32
		{10800 - 0x1000, 90 * time.Millisecond, 120 * time.Millisecond},
		{0x1000_0000, 200 * time.Millisecond, 200 * time.Millisecond}, // camera clock jumped: re-anchor
		{0x1000_0000 + 900, 210 * time.Millisecond, 210 * time.Millisecond},
	}
	for i, s := range steps {
		if got := c.at(s.ts, now.Add(s.wall)).Sub(now); got != s.want {
			t.Errorf("step %d: Time = start+%v, want start+%v", i, got, s.want)
		}
	}
}

func TestResolveControl(t *testing.T) {
	for _, tc := range []struct{ base, control, want string }{
		{"rtsp://cam/s/", "trackID=1", "rtsp://cam/s/trackID=1"},
		{"rtsp://cam/s", "trackID=1", "rtsp://cam/s/trackID=1"},
		{"rtsp://cam/rm?channel=1", "trackID=0", "rtsp://cam/rm?channel=1/trackID=0"},
		{"rtsp://cam/s/", "*", "rtsp://cam/s/"},
		{"rtsp://cam/s/", "", "rtsp://cam/s/"},
		{"rtsp://cam/s/", "rtsp://other:8554/x/track1", "rtsp://other:8554/x/track1"},
		{"rtsp://cam/s/", "rtsp://u:leak@cam/x", "rtsp://cam/x"},
		{"rtsp://cam/s/", "/abs/track", "rtsp://cam/abs/track"},
	} {
		if got := resolveControl(tc.base, tc.control); got != tc.want {
			t.Errorf("resolveControl(%q, %q) = %q, want %q", tc.base, tc.control, got, tc.want)
		}
	}
}

func TestParseSDP(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=x\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name, sdp string
		wantErr   error
		wantText  string
	}{
		{"h264", head + "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHg==,aM48gA==\r\na=control:t1\r\n", nil, ""},
		{"h264 second format", head + "m=video 0 RTP/AVP 98 97\r\na=rtpmap:98 H265/90000\r\na=rtpmap:97 h264/90000\r\n", nil, ""},
		{"mjpeg static", head + "m=video 0 RTP/AVP 26\r\n", ErrUnsupportedCodec, "payload type 26"},
		{"audio only", head + "m=audio 0 RTP/AVP 0\r\n", ErrUnsupportedCodec, "no video"},
		{"interleaved mode", head + "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n", ErrUnsupportedCodec, "packetization-mode 2"},
		{"garbage", "hello", errMessage, "SDP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := parseSDP([]byte(tc.sdp), "rtsp://cam/s/")
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tr.clockRate != 90000 || tr.control == "" {
					t.Errorf("track = %+v", tr)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.wantErr, tc.wantText)
			}
		})
	}
	tr, _ := parseSDP([]byte(head+"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=Z0LAHg==,aM48gA==\r\na=control:t1\r\n"), "rtsp://cam/s/")
	if tr.control != "rtsp://cam/s/t1" || len(tr.sps) != 4 || len(tr.pps) != 4 || tr.payloadType != 96 {
		t.Errorf("track = %+v", tr)
	}
}

func TestAuthChallenge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		challenges []string
		wantScheme string
		wantErr    bool
	}{
		{"digest over basic", []string{`Basic realm="r"`, `Digest realm="r", nonce="n"`}, "digest", false},
		{"basic only", []string{`Basic realm="r"`}, "basic", false},
		{"sha-256 only", []string{`Digest realm="r", nonce="n", algorithm=SHA-256`}, "digest", false},
		{"sha-512-256 only", []string{`Digest realm="r", nonce="n", algorithm=SHA-512-256`}, "", true},
		{"auth-int only", []string{`Digest realm="r", nonce="n", qop="auth-int"`}, "", true},
		{"nothing", nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &auth{user: "u", pass: "p"}
			err := a.challenge(tc.challenges)
			if (err != nil) != tc.wantErr || a.scheme != tc.wantScheme {
				t.Fatalf("challenge: err %v, scheme %q; want err %v, scheme %q", err, a.scheme, tc.wantErr, tc.wantScheme)
			}
		})
	}
	// SHA-256 is preferred to MD5 wherever it is offered.
	for _, order := range [][]string{
		{`Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"`, `Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"`},
		{`Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"`, `Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"`},
	} {
		a := &auth{user: "u", pass: "p"}
		if err := a.challenge(order); err != nil || a.algorithm != "SHA-256" || a.nonce != "n2" {
			t.Errorf("challenge %v: %v, algorithm %q nonce %q; want SHA-256", order, err, a.algorithm, a.nonce)
		}
	}
	// RFC 7616 3.9.1's SHA-256 example, with its cnonce.
	ha1 := sha256hex("Mufasa:http-auth@example.org:Circle of Life")
	ha2 := sha256hex("GET:/dir/index.html")
	if got := sha256hex(ha1 + ":7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:" + ha2); got != "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1" {
		t.Errorf("RFC 7616 example response = %s", got)
	}
	// RFC 2617 3.5's worked example (its URI and method, no qop variant
	// computed independently: MD5 of the same strings).
	a := &auth{user: "Mufasa", pass: "Circle Of Life"}
	if err := a.challenge([]string{`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`}); err != nil {
		t.Fatal(err)
	}
	p := parseAuthParams(strings.TrimPrefix(a.header("GET", "/dir/index.html"), "Digest "))
	ha1, ha2 = md5hex("Mufasa:testrealm@host.com:Circle Of Life"), md5hex("GET:/dir/index.html")
	if p["nc"] != "00000001" || p["qop"] != "auth" || p["opaque"] != "5ccc069c403ebaf9f0171e9517f40e41" ||
		p["response"] != md5hex(ha1+":dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:"+p["cnonce"]+":auth:"+ha2) {
		t.Errorf("digest header params %v", p)
	}
	// With the RFC's cnonce the RFC's response comes out.
	if got := md5hex(ha1 + ":dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:" + ha2); got != "6629fae49393a05397450978507c4ef1" {
		t.Errorf("RFC 2617 example response = %s", got)
	}
}

func TestCleanRTSPURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"rtsp://cam/live/", "rtsp://cam/live/"},
		{"RTSPS://cam:322/a?x=1", "rtsps://cam:322/a?x=1"},
		{"rtsp://admin:pw@cam/live", "rtsp://cam/live"}, // a camera's idea of credentials is never echoed
		{"http://cam/live", ""},
		{"/live/", ""},
		{"rtsp:///nohost", ""},
		{"", ""},
	} {
		got, ok := cleanRTSPURL(tc.in)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("cleanRTSPURL(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}
