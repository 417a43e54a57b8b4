package onvif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds on what a device describes.
const (
	maxProfiles = 64
	maxToken    = 256 // ReferenceToken is at most 64 in the schema; some devices run longer
	maxURI      = 1024
)

// Client talks to one device's services. Its zero value has no device;
// make one with NewClient. It is not for concurrent use.
type Client struct {
	// XAddr is the device service's URL (http or https).
	XAddr string
	// User and Password authenticate every request (no user: none). The
	// password only enters digests.
	User, Password string
	// HTTP makes the requests; nil means one with a 10 s timeout that
	// follows no redirect.
	HTTP *http.Client

	offset time.Duration // the device's clock minus ours
}

// NewClient checks xaddr (an http(s) URL without credentials) and returns
// a client for it.
func NewClient(xaddr, user, password string) (*Client, error) {
	if _, err := checkXAddr(xaddr); err != nil {
		return nil, fmt.Errorf("onvif: device service %w", err)
	}
	return &Client{XAddr: xaddr, User: user, Password: password}, nil
}

// checkXAddr parses an XAddr: http or https, a host, no credentials, at
// most maxURI bytes.
func checkXAddr(s string) (*url.URL, error) {
	if len(s) > maxURI {
		return nil, fmt.Errorf("URL longer than %d bytes", maxURI)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is no http(s) URL (want http://HOST/onvif/device_service)", clean(s))
	}
	if u.User != nil {
		return nil, errors.New("URL must not carry credentials (give --user; the password is asked for)")
	}
	return u, nil
}

// DeviceInfo is GetDeviceInformation's answer.
type DeviceInfo struct {
	Manufacturer    string `xml:"Manufacturer" json:"manufacturer"`
	Model           string `xml:"Model" json:"model"`
	FirmwareVersion string `xml:"FirmwareVersion" json:"firmware_version"`
	SerialNumber    string `xml:"SerialNumber" json:"serial_number"`
	HardwareID      string `xml:"HardwareId" json:"hardware_id"`
}

// SyncClock reads the device's UTC clock (GetSystemDateAndTime, which
// needs no authentication) so that UsernameTokens carry the device's time:
// cameras refuse a token whose time is far from theirs, and many cameras'
// clocks are wrong. A device that does not answer leaves the offset 0.
func (c *Client) SyncClock(ctx context.Context) error {
	var r struct {
		UTC struct {
			Date struct {
				Year, Month, Day int
			}
			Time struct {
				Hour, Minute, Second int
			}
		} `xml:"SystemDateAndTime>UTCDateTime"`
	}
	user := c.User
	c.User = "" // unauthenticated, as the specification allows
	before := time.Now()
	err := c.call(ctx, c.XAddr, "GetSystemDateAndTime", nsDevice+"/GetSystemDateAndTime", `<tds:GetSystemDateAndTime/>`, &r)
	c.User = user
	if err != nil {
		return err
	}
	d, t := r.UTC.Date, r.UTC.Time
	if d.Year < 2000 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 || d.Day > 31 ||
		t.Hour > 23 || t.Minute > 59 || t.Second > 60 || t.Hour < 0 || t.Minute < 0 || t.Second < 0 {
		return errors.New("onvif: GetSystemDateAndTime: no valid UTC date and time")
	}
	dev := time.Date(d.Year, time.Month(d.Month), d.Day, t.Hour, t.Minute, t.Second, 0, time.UTC)
	c.offset = dev.Sub(before)
	return nil
}

// DeviceInformation is GetDeviceInformation: manufacturer, model, firmware.
func (c *Client) DeviceInformation(ctx context.Context) (DeviceInfo, error) {
	var r DeviceInfo
	err := c.call(ctx, c.XAddr, "GetDeviceInformation", nsDevice+"/GetDeviceInformation", `<tds:GetDeviceInformation/>`, &r)
	r = DeviceInfo{clean(r.Manufacturer), clean(r.Model), clean(r.FirmwareVersion), clean(r.SerialNumber), clean(r.HardwareID)}
	return r, err
}

// MediaXAddr finds the media service with GetCapabilities, or GetServices
// where GetCapabilities fails (it is deprecated; some devices dropped it).
// The address returned has the device service's host.
func (c *Client) MediaXAddr(ctx context.Context) (string, error) {
	var caps struct {
		XAddr string `xml:"Capabilities>Media>XAddr"`
	}
	err := c.call(ctx, c.XAddr, "GetCapabilities", nsDevice+"/GetCapabilities",
		`<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>`, &caps)
	if errors.Is(err, ErrNotAuthorized) {
		return "", err
	}
	found := strings.TrimSpace(caps.XAddr)
	if err != nil || found == "" {
		var svcs struct {
			Service []struct {
				Namespace string `xml:"Namespace"`
				XAddr     string `xml:"XAddr"`
			} `xml:"Service"`
		}
		serr := c.call(ctx, c.XAddr, "GetServices", nsDevice+"/GetServices",
			`<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>`, &svcs)
		if serr != nil {
			return "", errors.Join(err, serr)
		}
		for i, s := range svcs.Service {
			if i == maxProfiles {
				break
			}
			if strings.TrimSpace(s.Namespace) == nsMedia {
				found = strings.TrimSpace(s.XAddr)
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("onvif: %s offers no media service (Profile S)", c.XAddr)
		}
	}
	return c.sameHost(found)
}

// sameHost is xaddr with the device service's host (keeping its scheme,
// port and path): credentials go nowhere else.
func (c *Client) sameHost(xaddr string) (string, error) {
	u, err := checkXAddr(xaddr)
	if err != nil {
		return "", fmt.Errorf("onvif: the device's media service: %w", err)
	}
	dev, err := url.Parse(c.XAddr)
	if err != nil {
		return "", err
	}
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(dev.Hostname(), port)
	} else {
		u.Host = dev.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	}
	return u.String(), nil
}

// Profile is one media profile of a device.
type Profile struct {
	Token    string  `json:"token"`
	Name     string  `json:"name"`
	Encoding string  `json:"encoding"` // H264, H265, JPEG, MPEG4; "" without a video encoder
	Width    int     `json:"width"`
	Height   int     `json:"height"`
	FPS      float64 `json:"fps"`
}

func (p Profile) String() string {
	s := p.Token
	if p.Name != "" && p.Name != p.Token {
		s += " (" + p.Name + ")"
	}
	if p.Encoding == "" {
		return s + " no video"
	}
	return fmt.Sprintf("%s %s %dx%d@%g", s, p.Encoding, p.Width, p.Height, p.FPS)
}

// Profiles is media GetProfiles on the media service at mediaXAddr.
func (c *Client) Profiles(ctx context.Context, mediaXAddr string) ([]Profile, error) {
	var r profilesResponse
	if err := c.call(ctx, mediaXAddr, "GetProfiles", nsMedia+"/GetProfiles", `<trt:GetProfiles/>`, &r); err != nil {
		return nil, err
	}
	ps, err := r.profiles()
	if err != nil {
		return nil, fmt.Errorf("onvif: GetProfiles at %s: %w", mediaXAddr, err)
	}
	return ps, nil
}

type profilesResponse struct {
	Profiles []struct {
		Token string `xml:"token,attr"`
		Name  string `xml:"Name"`
		Video *struct {
			Encoding   string `xml:"Encoding"`
			Resolution struct {
				Width  string `xml:"Width"`
				Height string `xml:"Height"`
			} `xml:"Resolution"`
			FrameRate string `xml:"RateControl>FrameRateLimit"`
		} `xml:"VideoEncoderConfiguration"`
	} `xml:"Profiles"`
}

func (r *profilesResponse) profiles() ([]Profile, error) {
	if len(r.Profiles) == 0 {
		return nil, errors.New("the device has no media profile")
	}
	if len(r.Profiles) > maxProfiles {
		return nil, fmt.Errorf("the device lists %d profiles, more than %d", len(r.Profiles), maxProfiles)
	}
	var out []Profile
	for i, p := range r.Profiles {
		tok := strings.TrimSpace(p.Token)
		if tok == "" || len(tok) > maxToken || clean(tok) != tok {
			return nil, fmt.Errorf("profile %d has no valid token: %q", i+1, clean(tok))
		}
		q := Profile{Token: tok, Name: clean(p.Name)}
		if v := p.Video; v != nil {
			q.Encoding = strings.ToUpper(clean(v.Encoding))
			if q.Encoding == "HEVC" {
				q.Encoding = "H265"
			}
			var err error
			if q.Width, err = dimension(v.Resolution.Width); err == nil {
				q.Height, err = dimension(v.Resolution.Height)
			}
			if err != nil {
				return nil, fmt.Errorf("profile %s: resolution: %w", tok, err)
			}
			if s := strings.TrimSpace(v.FrameRate); s != "" {
				f, err := strconv.ParseFloat(s, 64)
				if err != nil || !(f >= 0 && f <= 1000) { // NaN too
					return nil, fmt.Errorf("profile %s: frame rate %q is no number from 0 to 1000", tok, clean(s))
				}
				q.FPS = f
			}
		}
		out = append(out, q)
	}
	return out, nil
}

func dimension(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 16384 {
		return 0, fmt.Errorf("%q is no number from 0 to 16384", clean(s))
	}
	return n, nil
}

// ChooseProfile picks want (a token, else a name) from ps, or with want
// empty the H.264 or H.265 profile of the most pixels (the first of equals).
// The error lists the profiles.
func ChooseProfile(ps []Profile, want string) (Profile, error) {
	if want != "" {
		for _, p := range ps {
			if p.Token == want {
				return p, nil
			}
		}
		for _, p := range ps {
			if p.Name == want {
				return p, nil
			}
		}
		return Profile{}, fmt.Errorf("onvif: no profile %q; the device has: %s", clean(want), listProfiles(ps))
	}
	best := -1
	for i, p := range ps {
		if (p.Encoding == "H264" || p.Encoding == "H265") && (best < 0 || p.Width*p.Height > ps[best].Width*ps[best].Height) {
			best = i
		}
	}
	if best < 0 {
		return Profile{}, fmt.Errorf("onvif: no H.264 or H.265 profile; the device has: %s", listProfiles(ps))
	}
	return ps[best], nil
}

func listProfiles(ps []Profile) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

// StreamURI is media GetStreamUri for profile token: RTP unicast over RTSP.
func (c *Client) StreamURI(ctx context.Context, mediaXAddr, token string) (string, error) {
	var r streamURIResponse
	body := `<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>` +
		`<trt:ProfileToken>` + xmlText(token) + `</trt:ProfileToken></trt:GetStreamUri>`
	if err := c.call(ctx, mediaXAddr, "GetStreamUri", nsMedia+"/GetStreamUri", body, &r); err != nil {
		return "", err
	}
	u, err := r.uri()
	if err != nil {
		return "", fmt.Errorf("onvif: GetStreamUri at %s: %w", mediaXAddr, err)
	}
	return u, nil
}

type streamURIResponse struct {
	URI string `xml:"MediaUri>Uri"`
}

func (r *streamURIResponse) uri() (string, error) {
	s := strings.TrimSpace(r.URI)
	if s == "" {
		return "", errors.New("the response has no MediaUri/Uri")
	}
	if len(s) > maxURI {
		return "", fmt.Errorf("the stream URI is longer than %d bytes", maxURI)
	}
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, "rtsp") || u.Host == "" || clean(s) != s {
		shown := "(unparsable)"
		if err == nil {
			u.User = nil // the device's own credentials, if any, stay out of errors
			shown = clean(u.String())
		}
		return "", fmt.Errorf("the stream URI %q is no rtsp:// URL", shown)
	}
	return s, nil
}

// Stream is what Resolve found.
type Stream struct {
	Device  DeviceInfo `json:"device"`
	Profile Profile    `json:"profile"`
	// URI is the profile's rtsp:// URL as the device gave it (it may carry
	// credentials of its own).
	URI string `json:"-"`
}

// Resolve asks the device for the RTSP URL of profile (a token or name;
// "" chooses as ChooseProfile does).
func (c *Client) Resolve(ctx context.Context, profile string) (Stream, error) {
	var s Stream
	_ = c.SyncClock(ctx) // a device that does not say its time may still accept ours
	info, err := c.DeviceInformation(ctx)
	if errors.Is(err, ErrNotAuthorized) {
		return s, err
	}
	s.Device = info // optional: some devices refuse it and still stream
	media, err := c.MediaXAddr(ctx)
	if err != nil {
		return s, err
	}
	ps, err := c.Profiles(ctx, media)
	if err != nil {
		return s, err
	}
	if s.Profile, err = ChooseProfile(ps, profile); err != nil {
		return s, err
	}
	s.URI, err = c.StreamURI(ctx, media, s.Profile.Token)
	return s, err
}
