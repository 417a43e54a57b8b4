package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// rtspSource is one RTSP camera. It holds the URL without its userinfo;
// the credentials live only in user and pass and go only into
// Authorization headers. Since no string that reaches an error or a log
// line is ever built from them, messages need no scrubbing (replacing the
// password's text would mangle any message that happens to contain it,
// and show the password as the gaps).
type rtspSource struct {
	url        string // rtsp://host:port/path?query, no userinfo
	hostport   string
	user, pass string
	hasCreds   bool
	tls        bool   // rtsps: TLS, RTP interleaved on it
	pin        string // certificate fingerprint an rtsps camera must show; "" until learned
	udpFailed  bool   // TransportAuto gave up on UDP: TCP from now on
	opt        Options
	log        *slog.Logger
	stats      *tracker
}

var _ Source = (*rtspSource)(nil)

func newRTSP(u *url.URL, opt Options) (*rtspSource, error) {
	bad := func(why string) error {
		return fmt.Errorf("source: open %s: %w: %s", u.Redacted(), ErrBadURL, why)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, bad("want rtsp://[user:pass@]host[:port]/path")
	}
	if u.Fragment != "" {
		return nil, bad("a fragment (#…) means nothing to a camera")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, bad("no host")
	}
	tlsOn := strings.EqualFold(u.Scheme, "rtsps")
	if port == "" {
		port = "554"
		if tlsOn {
			port = "322"
		}
	}
	if _, err := ParseTransport(string(opt.Transport)); err != nil {
		return nil, bad(err.Error())
	}
	if opt.TLS.Pin != "" && !ValidFingerprint(opt.TLS.Pin) {
		return nil, bad("the certificate pin is not a sha256:HEX fingerprint")
	}
	if u.User != nil && opt.Credentials.set() {
		return nil, bad("credentials both in the URL and in Options; give them once")
	}
	s := &rtspSource{hostport: net.JoinHostPort(host, port), opt: opt, tls: tlsOn, pin: opt.TLS.Pin}
	s.user, s.pass, s.hasCreds = opt.Credentials.User, opt.Credentials.Password, opt.Credentials.set()
	s.opt.Credentials = Credentials{} // kept once, in user and pass
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
		s.hasCreds = true
	}
	clean := *u
	clean.User = nil
	s.url = clean.String()
	s.log = opt.Logger.With("camera", s.url)
	s.stats = &tracker{clock: opt.clock}
	return s, nil
}

// Stats reports the source's health.
func (s *rtspSource) Stats() Stats { return s.stats.snapshot() }

// errEmit carries the caller's own error out of Run unchanged.
type errEmit struct{ err error }

func (e errEmit) Error() string { return e.err.Error() }

// Run connects, plays and reconnects until ctx ends.
func (s *rtspSource) Run(ctx context.Context, emit func(h264.Frame) error) error {
	defer func() {
		if ctx.Err() != nil {
			s.stats.setState(StateIdle)
		}
	}()
	wait := s.opt.Backoff.Initial
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.stats.reconnected()
		}
		s.stats.setState(StateConnecting)
		played, err := s.session(ctx, emit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e, ok := errors.AsType[errEmit](err); ok {
			return e.err
		}
		s.stats.setError(err)
		if errors.Is(err, errFallbackTCP) {
			// Not a failure of the camera's: set up again at once, over TCP.
			s.udpFailed = true
			s.stats.setTransport("tcp", true)
			s.log.Warn("no RTP over UDP from the camera; falling back to TCP interleaved", "after", s.opt.UDPFallback)
			continue
		}
		if errors.Is(err, ErrCertChanged) {
			s.stats.setState(StateFailed)
			s.log.Error("ALARM: camera certificate changed; recording stopped until an operator re-pins", "err", err)
			return fmt.Errorf("source: %s: %w", s.url, err)
		}
		if errors.Is(err, ErrUnsupportedCodec) || errors.Is(err, ErrBadURL) {
			s.stats.setState(StateFailed)
			s.log.Error("camera unusable", "err", err)
			return fmt.Errorf("source: %s: %w", s.url, err)
		}
		if played >= s.opt.Backoff.Healthy {
			wait = s.opt.Backoff.Initial
		}
		// Jitter (±20%) keeps cameras behind one failed switch from
		// reconnecting in lockstep.
		d := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		s.log.Warn("camera connection failed; retrying", "err", err, "in", d.Round(time.Millisecond))
		s.stats.setState(StateBackoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.opt.clock.After(d):
		}
		wait = min(2*wait, s.opt.Backoff.Max)
	}
}
