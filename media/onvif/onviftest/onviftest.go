// Package onviftest is a fake ONVIF camera for tests: the other side of a
// standard protocol, answering with the documents of the ONVIF Core and
// Media specifications' examples (testdata/*.xml, as a Hikvision camera
// sends them). It serves the device and media services over HTTP with
// WS-Security UsernameToken (PasswordDigest) or HTTP Digest authentication,
// and answers WS-Discovery probes. It is imported only by tests.
package onviftest

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

//go:embed testdata/*.xml
var testdata embed.FS

// Doc is testdata/name with each {{KEY}} replaced by vars[KEY], XML-escaped.
func Doc(name string, vars map[string]string) []byte {
	b, err := testdata.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	for k, v := range vars {
		var esc bytes.Buffer
		xml.EscapeText(&esc, []byte(v))
		b = bytes.ReplaceAll(b, []byte("{{"+k+"}}"), esc.Bytes())
	}
	return b
}

// Device is one fake camera. Set its fields before serving.
type Device struct {
	User, Password string
	// RTSPURL is what GetStreamUri answers.
	RTSPURL string
	// Endpoint is its WS-Discovery endpoint reference (urn:uuid:…).
	Endpoint string
	// HTTPDigest makes it authenticate with HTTP Digest only (a request
	// without a valid Authorization gets 401) instead of UsernameToken.
	HTTPDigest bool
	// NoCapabilities makes GetCapabilities fail, as on devices that
	// dropped it: the client must use GetServices.
	NoCapabilities bool
	// Skew is how far the device's clock is ahead of ours.
	Skew time.Duration

	// Refused counts requests refused for their authentication.
	Refused atomic.Int32
	// LastStreamProfile is the profile token of the last GetStreamUri.
	LastStreamProfile atomic.Value
}

// Start serves d on 127.0.0.1 until the test ends and returns its device
// service's URL.
func Start(t testing.TB, d *Device) string {
	t.Helper()
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv.URL + "/onvif/device_service"
}

// request is the part of a SOAP request the fake reads.
type request struct {
	Security struct {
		Username string `xml:"UsernameToken>Username"`
		Password string `xml:"UsernameToken>Password"`
		Nonce    string `xml:"UsernameToken>Nonce"`
		Created  string `xml:"UsernameToken>Created"`
	} `xml:"Header>Security"`
	Body struct {
		Inner []byte `xml:",innerxml"`
	} `xml:"Body"`
}

func (d *Device) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req request
	if err := xml.Unmarshal(b, &req); err != nil {
		http.Error(w, "bad SOAP", http.StatusBadRequest)
		return
	}
	op := firstElement(req.Body.Inner)
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	if op == "GetSystemDateAndTime" { // needs no authentication
		now := time.Now().Add(d.Skew).UTC()
		w.Write(Doc("getsystemdateandtime.xml", map[string]string{
			"YEAR": strconv.Itoa(now.Year()), "MONTH": strconv.Itoa(int(now.Month())), "DAY": strconv.Itoa(now.Day()),
			"HOUR": strconv.Itoa(now.Hour()), "MINUTE": strconv.Itoa(now.Minute()), "SECOND": strconv.Itoa(now.Second())}))
		return
	}
	if d.HTTPDigest {
		if !d.digestOK(r) {
			d.Refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Digest realm="IP Camera", nonce="4e4a7a5a4d7a6b314d6a41364d4751784d6a633d", qop="auth", opaque="7a1b"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="IP Camera"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
	} else if !d.tokenOK(req) {
		d.Refused.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write(Doc("fault-notauthorized.xml", nil))
		return
	}
	host := "http://" + r.Host
	switch op {
	case "GetDeviceInformation":
		w.Write(Doc("getdeviceinformation.xml", nil))
	case "GetCapabilities":
		if d.NoCapabilities {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>ter:ActionNotSupported</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">Optional Action Not Implemented</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>`))
			return
		}
		// A camera behind NAT reports its own address: the client must
		// keep the host it reached.
		w.Write(Doc("getcapabilities.xml", map[string]string{"MEDIA_XADDR": "http://192.0.2.1:" + port(r.Host) + "/onvif/media_service"}))
	case "GetServices":
		w.Write(Doc("getservices.xml", map[string]string{"DEVICE_XADDR": host + "/onvif/device_service", "MEDIA_XADDR": host + "/onvif/media_service"}))
	case "GetProfiles":
		w.Write(Doc("getprofiles.xml", nil))
	case "GetStreamUri":
		var q struct {
			Token string `xml:"ProfileToken"`
		}
		xml.Unmarshal(req.Body.Inner, &q)
		if q.Token != "Profile_1" && q.Token != "Profile_2" && q.Token != "Profile_3" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write(Doc("fault-noprofile.xml", nil))
			return
		}
		d.LastStreamProfile.Store(q.Token)
		w.Write(Doc("getstreamuri.xml", map[string]string{"RTSP_URL": d.RTSPURL}))
	default:
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>ter:ActionNotSupported</env:Value></env:Subcode></env:Code><env:Reason><env:Text>unknown action</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>`))
	}
}

func port(hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "80"
	}
	return p
}

// firstElement is the local name of the first element in b.
func firstElement(b []byte) string {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s.Name.Local
		}
	}
}

// tokenOK checks a UsernameToken's PasswordDigest and that its time is
// within five minutes of the device's clock.
func (d *Device) tokenOK(req request) bool {
	s := req.Security
	if s.Username != d.User {
		return false
	}
	nonce, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s.Nonce))
	if err != nil {
		return false
	}
	created, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s.Created))
	if err != nil {
		return false
	}
	if diff := created.Sub(time.Now().Add(d.Skew)); diff > 5*time.Minute || diff < -5*time.Minute {
		return false
	}
	h := sha1.New()
	h.Write(nonce)
	h.Write([]byte(strings.TrimSpace(s.Created)))
	h.Write([]byte(d.Password))
	return strings.TrimSpace(s.Password) == base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// digestOK checks an HTTP Digest (MD5, qop auth) Authorization.
func (d *Device) digestOK(r *http.Request) bool {
	a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Digest ")
	if !ok {
		return false
	}
	p := map[string]string{}
	for f := range strings.SplitSeq(a, ", ") {
		k, v, _ := strings.Cut(f, "=")
		p[k] = strings.Trim(v, `"`)
	}
	hx := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	ha1 := hx(d.User + ":IP Camera:" + d.Password)
	ha2 := hx(r.Method + ":" + p["uri"])
	want := hx(ha1 + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":" + p["qop"] + ":" + ha2)
	return p["username"] == d.User && p["qop"] == "auth" && p["uri"] == r.URL.RequestURI() && p["response"] == want
}

// ServeDiscovery answers the WS-Discovery probes arriving on conn for
// NetworkVideoTransmitter or Device (or any type) with a ProbeMatches
// naming xaddr, until conn is closed.
func (d *Device) ServeDiscovery(conn *net.UDPConn, xaddr string) {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		var p struct {
			MessageID string `xml:"Header>MessageID"`
			Types     string `xml:"Body>Probe>Types"`
		}
		if xml.Unmarshal(buf[:n], &p) != nil || p.MessageID == "" {
			continue
		}
		if t := p.Types; t != "" && !strings.Contains(t, "NetworkVideoTransmitter") && !strings.Contains(t, "Device") {
			continue
		}
		conn.WriteToUDP(ProbeMatches(strings.TrimSpace(p.MessageID), d.Endpoint, xaddr), from)
	}
}

// ProbeMatches is the reply to probe id from endpoint at xaddrs.
func ProbeMatches(id, endpoint, xaddrs string) []byte {
	return Doc("probematches.xml", map[string]string{"RELATES_TO": id, "ENDPOINT": endpoint, "XADDRS": xaddrs})
}

// String never shows the password.
func (d *Device) String() string {
	return fmt.Sprintf("fake ONVIF device %s (user %s)", d.Endpoint, d.User)
}
