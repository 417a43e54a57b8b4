package onvif

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/onvif/onviftest"
)

const (
	testUser     = "admin"
	testPassword = "s3cret-Pässword"
	testRTSP     = "rtsp://192.0.2.7:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1"
)

func fakeDevice(t *testing.T, d *onviftest.Device) (*onviftest.Device, string) {
	t.Helper()
	if d.User == "" {
		d.User, d.Password = testUser, testPassword
	}
	d.RTSPURL = testRTSP
	return d, onviftest.Start(t, d)
}

func resolve(t *testing.T, xaddr, user, password, profile string) (Stream, error) {
	t.Helper()
	c, err := NewClient(xaddr, user, password)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Resolve(ctx, profile)
}

// The default profile is the H.264 one of the most pixels: not the larger
// JPEG snapshot, not the sub stream. The media service is reached on the
// device's host although the device reports a private address (192.0.2.1).
func TestResolveWithUsernameToken(t *testing.T) {
	d, xaddr := fakeDevice(t, &onviftest.Device{})
	s, err := resolve(t, xaddr, testUser, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.URI != testRTSP {
		t.Errorf("URI = %q, want %q", s.URI, testRTSP)
	}
	want := Profile{Token: "Profile_1", Name: "mainStream", Encoding: "H264", Width: 2560, Height: 1440, FPS: 25}
	if s.Profile != want {
		t.Errorf("profile = %+v, want %+v", s.Profile, want)
	}
	if got := d.LastStreamProfile.Load(); got != "Profile_1" {
		t.Errorf("GetStreamUri asked for %v, want Profile_1", got)
	}
	if s.Device.Manufacturer != "HIKVISION" || s.Device.Model != "DS-2CD2143G2-I" {
		t.Errorf("device information = %+v", s.Device)
	}
	if n := d.Refused.Load(); n != 0 {
		t.Errorf("the device refused %d requests", n)
	}
}

func TestResolveProfileByNameOrToken(t *testing.T) {
	_, xaddr := fakeDevice(t, &onviftest.Device{})
	for _, want := range []string{"subStream", "Profile_2"} {
		s, err := resolve(t, xaddr, testUser, testPassword, want)
		if err != nil {
			t.Fatal(err)
		}
		if s.Profile.Token != "Profile_2" || s.Profile.Width != 640 {
			t.Errorf("profile %q chose %+v", want, s.Profile)
		}
	}
	_, err := resolve(t, xaddr, testUser, testPassword, "thirdStream")
	if err == nil || !strings.Contains(err.Error(), `no profile "thirdStream"`) ||
		!strings.Contains(err.Error(), "Profile_1 (mainStream) H264 2560x1440@25") || !strings.Contains(err.Error(), "Profile_3 (snapshot) JPEG") {
		t.Errorf("unknown profile: %v", err)
	}
}

// A camera whose clock is two hours ahead refuses tokens stamped with our
// time; the client stamps them with the device's.
func TestResolveWithSkewedDeviceClock(t *testing.T) {
	d, xaddr := fakeDevice(t, &onviftest.Device{Skew: 2 * time.Hour})
	if _, err := resolve(t, xaddr, testUser, testPassword, ""); err != nil {
		t.Fatal(err)
	}
	// Without the clock read, the same device refuses: the skew matters.
	c, _ := NewClient(xaddr, testUser, testPassword)
	_, err := c.DeviceInformation(context.Background())
	if !errors.Is(err, ErrNotAuthorized) || d.Refused.Load() == 0 {
		t.Errorf("a token two hours off: %v", err)
	}
}

func TestResolveWithHTTPDigest(t *testing.T) {
	d, xaddr := fakeDevice(t, &onviftest.Device{HTTPDigest: true})
	s, err := resolve(t, xaddr, testUser, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.URI != testRTSP {
		t.Errorf("URI = %q", s.URI)
	}
	if d.Refused.Load() == 0 {
		t.Error("the device never challenged: HTTP Digest was not exercised")
	}
}

func TestResolveFallsBackToGetServices(t *testing.T) {
	_, xaddr := fakeDevice(t, &onviftest.Device{NoCapabilities: true})
	s, err := resolve(t, xaddr, testUser, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Profile.Token != "Profile_1" {
		t.Errorf("profile %+v", s.Profile)
	}
}

// A wrong password is ErrNotAuthorized, says so, and the password appears
// in no error.
func TestWrongPassword(t *testing.T) {
	for _, digest := range []bool{false, true} {
		_, xaddr := fakeDevice(t, &onviftest.Device{HTTPDigest: digest})
		_, err := resolve(t, xaddr, testUser, "wrong-"+testPassword, "")
		if !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("digest %v: err = %v, want ErrNotAuthorized", digest, err)
			continue
		}
		if !strings.Contains(err.Error(), "wrong user or password") || strings.Contains(err.Error(), testPassword) {
			t.Errorf("digest %v: %v", digest, err)
		}
		if !digest && !strings.Contains(err.Error(), "ter:NotAuthorized") {
			t.Errorf("the SOAP fault's subcode is not named: %v", err)
		}
	}
}

// serve answers every request with status and body.
func serve(t *testing.T, status int, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status == http.StatusFound {
			http.Redirect(w, r, "http://192.0.2.9/elsewhere", status)
			return
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/onvif/device_service"
}

func TestHostileResponses(t *testing.T) {
	big := append([]byte(`<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><x>`),
		make([]byte, MaxResponse)...)
	for _, tc := range []struct {
		name   string
		status int
		body   []byte
		want   string
	}{
		{"oversized", 200, big, "larger than 1048576 bytes"},
		{"malformed", 200, []byte(`<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><a></b>`), "malformed XML"},
		{"no envelope", 200, []byte(`<html><body>login</body></html>`), "no SOAP envelope"},
		{"empty body", 200, []byte(`<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body></env:Body></env:Envelope>`), "body is empty"},
		{"not SOAP 500", 500, []byte(`Internal error`), "HTTP status 500"},
		{"redirect", http.StatusFound, nil, "HTTP status 302"},
		{"fault", 400, onviftest.Doc("fault-noprofile.xml", nil), "ter:NoProfile (The requested profile token ProfileToken does not exist.)"},
		{"401 without digest", 401, nil, "HTTP 401 and no HTTP Digest challenge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := NewClient(serve(t, tc.status, tc.body), testUser, testPassword)
			_, err := c.DeviceInformation(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestFaultParsing(t *testing.T) {
	err := decodeSOAP(onviftest.Doc("fault-notauthorized.xml", nil), nil)
	var f *Fault
	if !errors.As(err, &f) || f.Code != "env:Sender" || f.Subcode != "ter:NotAuthorized" || f.Reason != "Sender not Authorized" {
		t.Fatalf("fault = %#v (%v)", f, err)
	}
	if !errors.Is(err, ErrNotAuthorized) || !errors.Is(err, ErrFault) {
		t.Error("a NotAuthorized fault is not ErrNotAuthorized and ErrFault")
	}
	err = decodeSOAP(onviftest.Doc("fault-noprofile.xml", nil), nil)
	if !errors.As(err, &f) || f.Subcode != "ter:NoProfile" || errors.Is(err, ErrNotAuthorized) {
		t.Errorf("nested subcode fault = %#v", f)
	}
	// SOAP 1.1, and a reason with control characters.
	err = decodeSOAP([]byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>bad`+"\u202e"+`[31m</faultstring></s:Fault></s:Body></s:Envelope>`), nil)
	if !errors.As(err, &f) || f.Code != "s:Client" || f.Reason != "bad?[31m" {
		t.Errorf("SOAP 1.1 fault = %#v", f)
	}
}

func TestParseProfilesDocument(t *testing.T) {
	var r profilesResponse
	if err := decodeSOAP(onviftest.Doc("getprofiles.xml", nil), &r); err != nil {
		t.Fatal(err)
	}
	ps, err := r.profiles()
	if err != nil {
		t.Fatal(err)
	}
	want := []Profile{
		{"Profile_1", "mainStream", "H264", 2560, 1440, 25},
		{"Profile_2", "subStream", "H264", 640, 360, 25},
		{"Profile_3", "snapshot", "JPEG", 3840, 2160, 1},
	}
	if len(ps) != len(want) {
		t.Fatalf("profiles = %+v", ps)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("profile %d = %+v, want %+v", i, ps[i], want[i])
		}
	}
	if _, err := ChooseProfile(ps[2:], ""); err == nil || !strings.Contains(err.Error(), "no H.264 or H.265 profile") {
		t.Errorf("only JPEG: %v", err)
	}
}

func TestProfileBounds(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`<trt:Profiles token=""><tt:Name>x</tt:Name></trt:Profiles>`, "no valid token"},
		{`<trt:Profiles token="a"><tt:VideoEncoderConfiguration><tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>99999</tt:Width><tt:Height>1</tt:Height></tt:Resolution></tt:VideoEncoderConfiguration></trt:Profiles>`, "no number from 0 to 16384"},
		{`<trt:Profiles token="a"><tt:VideoEncoderConfiguration><tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>1</tt:Width><tt:Height>1</tt:Height></tt:Resolution><tt:RateControl><tt:FrameRateLimit>NaN</tt:FrameRateLimit></tt:RateControl></tt:VideoEncoderConfiguration></trt:Profiles>`, "frame rate"},
		{strings.Repeat(`<trt:Profiles token="a"/>`, maxProfiles+1), "more than 64"},
		{``, "no media profile"},
	} {
		doc := `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"><env:Body><trt:GetProfilesResponse>` +
			tc.body + `</trt:GetProfilesResponse></env:Body></env:Envelope>`
		var r profilesResponse
		err := decodeSOAP([]byte(doc), &r)
		if err == nil {
			_, err = r.profiles()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.60s…: err = %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestStreamURIValidation(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{testRTSP, ""},
		{"", "no MediaUri"},
		{"http://192.0.2.7/stream", "no rtsp:// URL"},
		{"rtsp:///nohost", "no rtsp:// URL"},
		{"ftp://root:hunter2@192.0.2.7/x", "no rtsp:// URL"},
		{"rtsp://192.0.2.7/" + strings.Repeat("a", maxURI), "longer than"},
	} {
		var r streamURIResponse
		if err := decodeSOAP(onviftest.Doc("getstreamuri.xml", map[string]string{"RTSP_URL": tc.uri}), &r); err != nil {
			t.Fatal(err)
		}
		got, err := r.uri()
		switch {
		case tc.want == "" && (err != nil || got != tc.uri):
			t.Errorf("%q: %q, %v", tc.uri, got, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err = %v, want %q", tc.uri, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("the device's password reached an error: %v", err)
		}
	}
}

func TestNewClientRefusesBadXAddrs(t *testing.T) {
	for _, x := range []string{"rtsp://192.0.2.1/", "192.0.2.1", "http://admin:pw@192.0.2.1/onvif/device_service", "http:///x"} {
		if _, err := NewClient(x, "u", "p"); err == nil {
			t.Errorf("NewClient(%q) accepted it", x)
		} else if strings.Contains(err.Error(), ":pw@") {
			t.Errorf("NewClient(%q): the error shows the password: %v", x, err)
		}
	}
}

func TestDigestChallenge(t *testing.T) {
	if _, err := parseDigestChallenge([]string{`Basic realm="x"`}); err == nil || !strings.Contains(err.Error(), "never Basic") {
		t.Errorf("Basic only: %v", err)
	}
	if _, err := parseDigestChallenge([]string{`Digest realm="x", nonce="n", algorithm=SHA-512-256`}); err == nil {
		t.Error("an unsupported algorithm was accepted")
	}
	ch, err := parseDigestChallenge([]string{`Basic realm="x"`, `Digest realm="IP, Camera", nonce="abc", qop="auth,auth-int", opaque="o"`})
	if err != nil || ch.realm != "IP, Camera" || ch.nonce != "abc" || !ch.qopAuth || ch.opaque != "o" {
		t.Fatalf("challenge = %+v, %v", ch, err)
	}
	// RFC 2617 §3.5's example (no qop): the response is fixed.
	ch = &digestChallenge{realm: "testrealm@host.com", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093"}
	got := ch.authorization("Mufasa", "Circle Of Life", "GET", "/dir/index.html")
	if !strings.Contains(got, `response="670fd8c2df070c60b045671b8b24ff02"`) {
		t.Errorf("authorization = %s", got)
	}
}
