package source

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// Source is one camera's frame stream.
//
// Run delivers frames to emit, in order, from the calling goroutine, until
// ctx ends; then it releases everything it holds (connections, goroutines)
// and returns ctx.Err(). Transient failures (refused connection, dead
// camera, rejected credentials) are retried with backoff and only reported
// through Stats. Run returns any other error only when retrying cannot
// help (ErrUnsupportedCodec, ErrBadURL), or when emit returns an error,
// which Run returns unchanged. Frame.Data is owned by the receiver.
// Run must not be called concurrently with itself.
//
// Stats is safe to call at any time from any goroutine.
type Source interface {
	Run(ctx context.Context, emit func(h264.Frame) error) error
	Stats() Stats
}

// Errors callers may branch on with errors.Is.
var (
	// ErrBadURL: the camera URL cannot be used; fix the configuration.
	ErrBadURL = errors.New("bad camera URL")
	// ErrUnsupportedCodec: the camera offers neither H.264 nor H.265
	// in a form Custos records.
	ErrUnsupportedCodec = errors.New("unsupported codec")
	// ErrUnauthorized: the camera rejected (or demanded) credentials.
	ErrUnauthorized = errors.New("camera rejected the credentials")
	// ErrTimeout: the camera stopped answering or sending video.
	ErrTimeout = errors.New("camera timed out")
	// ErrCertChanged: an rtsps camera presented a certificate other than
	// the pinned one. Recording stops until an operator re-pins; it is
	// never retried, so a man in the middle gets no second chance.
	ErrCertChanged = errors.New("camera certificate changed")
	// ErrTLS: the TLS handshake with an rtsps camera failed.
	ErrTLS = errors.New("TLS handshake with the camera failed")
)

// Transport is how RTP travels from an rtsp camera.
type Transport string

const (
	// TransportTCP interleaves RTP on the RTSP connection (the default:
	// it crosses NAT and firewalls like the control channel does).
	TransportTCP Transport = "tcp"
	// TransportUDP receives RTP and RTCP on a pair of UDP ports.
	TransportUDP Transport = "udp"
	// TransportAuto tries UDP and falls back to TCP when the camera
	// refuses it or no packet arrives within Options.UDPFallback.
	TransportAuto Transport = "auto"
)

// ParseTransport checks a transport name; "" means TransportTCP.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(strings.ToLower(s)); t {
	case "":
		return TransportTCP, nil
	case TransportTCP, TransportUDP, TransportAuto:
		return t, nil
	}
	return "", fmt.Errorf("transport %.20q: want udp, tcp or auto", s)
}

// TLSOptions secure an rtsps camera. With RootCAs set the camera's chain
// is verified against them (and its name against the URL's host);
// otherwise the certificate is pinned: Pin is the fingerprint it must
// have, and when Pin is empty the first certificate seen is trusted and
// handed to OnPin to keep (trust on first use).
type TLSOptions struct {
	RootCAs *x509.CertPool
	// Pin is a Fingerprint value ("sha256:" and 64 hex digits).
	Pin string
	// OnPin is called (from Run's goroutine) with the fingerprint a
	// camera without a Pin presented on first use. An error is logged;
	// the source still holds the pin in memory for its lifetime.
	OnPin func(fingerprint string) error
}

// Options tune a source. The zero value is usable: every field documents
// its default.
type Options struct {
	// Logger receives connection events; nil discards them. No line ever
	// carries a password.
	Logger *slog.Logger
	// DialTimeout bounds connecting and each request/response exchange
	// before PLAY. Default 5 s.
	DialTimeout time.Duration
	// ReadTimeout: a camera that sends nothing for this long is dead and is
	// reconnected. Default 10 s.
	ReadTimeout time.Duration
	// Backoff paces reconnection.
	Backoff Backoff
	// Credentials log in to an rtsp camera. They may instead be in the
	// URL's userinfo, which Open then takes out of the parsed URL; giving
	// both is an error. Either way they go only into Authorization
	// headers: no URL that carries them is ever formatted, so no message
	// can contain them.
	Credentials Credentials
	// Transport for RTP; default TransportTCP. rtsps always interleaves
	// over the TLS connection (SRTP is not supported).
	Transport Transport
	// UDPFallback: with TransportAuto, a UDP session that delivers no
	// packet for this long is torn down and set up again over TCP, for
	// the rest of the source's life. Default 5 s.
	UDPFallback time.Duration
	// TLS secures rtsps cameras.
	TLS TLSOptions

	clock   clock         // tests fake time; nil means the real clock
	rrEvery time.Duration // RTCP receiver report interval; default 5 s
}

// Credentials are a camera's login. Formatting them never shows the
// password.
type Credentials struct {
	User, Password string
}

// String never shows the password.
func (c Credentials) String() string {
	if c.User == "" && c.Password == "" {
		return ""
	}
	return c.User + ":[redacted]"
}

// GoString, so that %#v does not show it either.
func (c Credentials) GoString() string { return c.String() }

func (c Credentials) set() bool { return c.User != "" || c.Password != "" }

// Backoff is capped exponential backoff: wait Initial after the first
// failure, double each further failure up to Max, and start again from
// Initial once a connection has stayed healthy for Healthy.
type Backoff struct {
	Initial time.Duration // default 1 s
	Max     time.Duration // default 30 s
	Healthy time.Duration // default 30 s
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = time.Second
	}
	if o.Backoff.Max < o.Backoff.Initial {
		o.Backoff.Max = max(30*time.Second, o.Backoff.Initial)
	}
	if o.Backoff.Healthy <= 0 {
		o.Backoff.Healthy = 30 * time.Second
	}
	if o.UDPFallback <= 0 {
		o.UDPFallback = 5 * time.Second
	}
	if o.Transport == "" {
		o.Transport = TransportTCP
	}
	if o.rrEvery <= 0 {
		o.rrEvery = rrEvery
	}
	if o.clock == nil {
		o.clock = realClock{}
	}
	return o
}

// Open returns the source for rawURL without connecting: errors here are
// configuration errors (wrapping ErrBadURL) and never contain a password.
func Open(rawURL string, opt Options) (Source, error) {
	opt = opt.withDefaults()
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the input, password included: say only what is wrong.
		return nil, fmt.Errorf("source: open %s: %w: cannot parse it", Redact(rawURL), ErrBadURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "synthetic":
		return newSynthetic(u, opt)
	case "rtsp", "rtsps":
		return newRTSP(u, opt)
	case "":
		return nil, fmt.Errorf("source: open %s: %w: no scheme; want an rtsp://, rtsps:// or synthetic: URL", Redact(rawURL), ErrBadURL)
	default:
		return nil, fmt.Errorf("source: open %s: %w: unsupported scheme %q; want an rtsp://, rtsps:// or synthetic: URL",
			Redact(rawURL), ErrBadURL, u.Scheme)
	}
}

// Redact returns rawURL fit for a log line: any password is replaced by
// "xxxxx". An unparsable URL loses everything between "//" and the last
// "@" of its authority, so a password cannot slip through that way either.
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	i := strings.Index(rawURL, "//")
	if i < 0 {
		return rawURL
	}
	rest := rawURL[i+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return rawURL[:i+2] + "xxxxx@" + rest[at+1:]
	}
	return rawURL
}
