package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/custos-cctv/custos/media/h264"
)

// rtspConn is one TCP connection to a camera, from OPTIONS to TEARDOWN.
// The read side belongs to the goroutine running session; the write side
// is shared with the keep-alive goroutine.
type rtspConn struct {
	src  *rtspSource
	conn net.Conn
	br   *bufio.Reader
	rbuf []byte

	mu      sync.Mutex // guards the fields below and writes on conn
	cseq    int
	auth    *auth // nil when the URL has no credentials
	session string

	keepMethod, keepURI string // set before play, read-only after
}

// statusError is a non-2xx answer.
type statusError struct {
	method string
	code   int
	reason string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("rtsp: %s: camera answered %d %s", e.method, e.code, e.reason)
}

var aLongTimeAgo = time.Unix(1, 0)

// errFallbackTCP ends a TransportAuto UDP session that received nothing.
var errFallbackTCP = errors.New("rtsp: no RTP over UDP; falling back to TCP")

// dial opens the control connection: TCP, or TLS for rtsps.
func (s *rtspSource) dial(ctx context.Context) (net.Conn, error) {
	if s.tls {
		return s.dialTLS(ctx)
	}
	d := net.Dialer{Timeout: s.opt.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", s.hostport)
	if err != nil {
		return nil, fmt.Errorf("rtsp: dial %s: %w", s.hostport, err)
	}
	return conn, nil
}

// wantUDP reports whether this session should ask for RTP over UDP.
func (s *rtspSource) wantUDP() bool {
	return !s.tls && !s.udpFailed && (s.opt.Transport == TransportUDP || s.opt.Transport == TransportAuto)
}

// session runs one connection: dial, negotiate, play until an error or
// ctx ends. played is how long frames flowed, for the backoff's reset.
func (s *rtspSource) session(ctx context.Context, emit func(h264.Frame) error) (played time.Duration, err error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	// Unblock any read when ctx ends; readDeadline re-checks ctx after
	// every deadline it sets, so this cannot be overwritten unseen.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(aLongTimeAgo) })
	defer stop()

	c := &rtspConn{src: s, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	if s.hasCreds {
		c.auth = &auth{user: s.user, pass: s.pass}
	}
	tr, keepMethod, keepEvery, rtpCh, udp, err := c.handshake(ctx)
	if udp != nil {
		defer udp.close()
	}
	if err != nil {
		return 0, err
	}
	transport := "tcp"
	switch {
	case s.tls:
		transport = "tls"
	case udp != nil:
		transport = "udp"
	}
	s.stats.setTransport(transport, false)
	s.stats.setState(StatePlaying)
	s.log.Info("camera playing", "transport", transport, "keepalive", keepMethod, "every", keepEvery)
	start := s.opt.clock.Now()

	c.keepMethod, c.keepURI = keepMethod, tr.aggregate
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.keepAlive(done, keepMethod, tr.aggregate, keepEvery) })
	if udp != nil {
		err = c.playUDP(ctx, tr, udp, emit)
	} else {
		err = c.play(ctx, tr, rtpCh, emit)
	}
	close(done)
	wg.Wait()

	if _, isEmit := err.(errEmit); isEmit || ctx.Err() != nil || errors.Is(err, errFallbackTCP) {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.send("TEARDOWN", tr.aggregate, nil) // best effort; we close anyway
	}
	return s.opt.clock.Now().Sub(start), err
}

// handshake runs OPTIONS, DESCRIBE, SETUP and PLAY. udp is non-nil when
// RTP comes over UDP; the caller closes it.
func (c *rtspConn) handshake(ctx context.Context) (tr track, keepMethod string, keepEvery time.Duration, rtpCh byte, udp *udpPair, err error) {
	u := c.src.url
	keepMethod = "OPTIONS"
	opts, err := c.roundTrip(ctx, "OPTIONS", u, nil)
	var se *statusError
	switch {
	case errors.As(err, &se): // some cameras refuse OPTIONS; DESCRIBE will tell
	case err != nil:
		return tr, "", 0, 0, nil, err
	case strings.Contains(strings.ToUpper(opts.get("Public")), "GET_PARAMETER"):
		keepMethod = "GET_PARAMETER"
	}

	desc, err := c.roundTrip(ctx, "DESCRIBE", u, [][2]string{{"Accept", "application/sdp"}})
	if err != nil {
		return tr, "", 0, 0, nil, err
	}
	base := u
	for _, h := range []string{"Content-Base", "Content-Location"} {
		if b, ok := cleanRTSPURL(desc.get(h)); ok {
			base = b
			break
		}
	}
	if tr, err = parseSDP(desc.body, base); err != nil {
		return tr, "", 0, 0, nil, fmt.Errorf("rtsp: DESCRIBE: %w", err)
	}

	setup, udp, err := c.setup(ctx, tr.control)
	if err != nil {
		return tr, "", 0, 0, nil, err
	}
	reply, err := parseTransport(setup.get("Transport"))
	if err != nil {
		return tr, "", 0, 0, udp, fmt.Errorf("rtsp: SETUP: %w", err)
	}
	switch {
	case udp == nil && !reply.tcp:
		return tr, "", 0, 0, nil, fmt.Errorf("rtsp: SETUP: camera refused RTP over TCP (Transport %.60q); enable RTSP-over-TCP on the camera, or choose --transport udp", setup.get("Transport"))
	case udp != nil && reply.tcp:
		udp.close() // the camera chose interleaved after all
		udp = nil
	case udp != nil:
		udp.rtpPort, udp.rtcpPort = reply.serverPort[0], reply.serverPort[1]
	}
	rtpCh = reply.interleaved
	id, timeout, err := parseSession(setup.get("Session"))
	if err != nil {
		return tr, "", 0, 0, udp, fmt.Errorf("rtsp: SETUP: %w", err)
	}
	c.mu.Lock()
	c.session = id
	c.mu.Unlock()

	if _, err := c.roundTrip(ctx, "PLAY", tr.aggregate, [][2]string{{"Range", "npt=0.000-"}}); err != nil {
		return tr, "", 0, 0, udp, err
	}
	return tr, keepMethod, max(timeout/2, 500*time.Millisecond), rtpCh, udp, nil
}

// setup sends SETUP for the transport the source wants. With
// TransportAuto a camera that refuses UDP is asked again for TCP.
func (c *rtspConn) setup(ctx context.Context, control string) (*message, *udpPair, error) {
	tcp := [][2]string{{"Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"}}
	if !c.src.wantUDP() {
		m, err := c.roundTrip(ctx, "SETUP", control, tcp)
		return m, nil, err
	}
	udp, err := listenUDPPair(c.conn)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.roundTrip(ctx, "SETUP", control,
		[][2]string{{"Transport", fmt.Sprintf("RTP/AVP;unicast;client_port=%d-%d", udp.localPort, udp.localPort+1)}})
	if err == nil {
		return m, udp, nil
	}
	udp.close()
	var se *statusError
	if c.src.opt.Transport != TransportAuto || !errors.As(err, &se) {
		return nil, nil, err
	}
	c.src.udpFailed = true
	c.src.stats.setTransport("tcp", true)
	c.src.log.Warn("camera refused RTP over UDP; falling back to TCP interleaved", "err", err)
	m, err = c.roundTrip(ctx, "SETUP", control, tcp)
	return m, nil, err
}

// cleanRTSPURL accepts a camera-supplied base URL only if it is an
// absolute rtsp or rtsps URL, and drops any userinfo from it.
func cleanRTSPURL(s string) (string, bool) {
	if s == "" || len(s) > maxLineLen {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || !(strings.EqualFold(u.Scheme, "rtsp") || strings.EqualFold(u.Scheme, "rtsps")) || u.Host == "" {
		return "", false
	}
	u.User = nil
	return u.String(), true
}

// transportReply is what a camera's SETUP answer says about transport.
type transportReply struct {
	tcp         bool   // RTP/AVP/TCP: interleaved on the control connection
	interleaved byte   // its RTP channel
	serverPort  [2]int // the camera's RTP and RTCP ports over UDP; 0 if not given
}

// maxTransportParams bounds the parameters read from a Transport header.
const maxTransportParams = 32

// parseTransport reads the Transport header of a SETUP answer. Only the
// first transport spec counts (a server answers with the one it chose).
func parseTransport(v string) (transportReply, error) {
	var r transportReply
	spec, _, _ := strings.Cut(v, ",")
	params := strings.SplitN(spec, ";", maxTransportParams+1)
	if len(params) > maxTransportParams {
		return r, fmt.Errorf("%w: Transport header with more than %d parameters", errMessage, maxTransportParams)
	}
	proto := strings.ToUpper(strings.TrimSpace(params[0]))
	if !strings.HasPrefix(proto, "RTP/AVP") {
		return r, fmt.Errorf("%w: Transport %.60q is not RTP/AVP", errMessage, v)
	}
	r.tcp = strings.HasSuffix(proto, "/TCP")
	for _, p := range params[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "interleaved":
			first, _, _ := strings.Cut(val, "-")
			n, err := strconv.ParseUint(first, 10, 8)
			if err != nil {
				return r, fmt.Errorf("%w: bad interleaved channel in Transport %.60q", errMessage, v)
			}
			r.interleaved = byte(n)
		case "server_port":
			a, b, found := strings.Cut(val, "-")
			pa, err := strconv.ParseUint(a, 10, 16)
			if err != nil || pa == 0 {
				return r, fmt.Errorf("%w: bad server_port in Transport %.60q", errMessage, v)
			}
			pb := pa + 1 // RTCP on the next port, unless named
			if !found && pa == 65535 {
				return r, fmt.Errorf("%w: bad server_port in Transport %.60q", errMessage, v)
			}
			if found {
				if pb, err = strconv.ParseUint(b, 10, 16); err != nil || pb == 0 {
					return r, fmt.Errorf("%w: bad server_port in Transport %.60q", errMessage, v)
				}
			}
			r.serverPort = [2]int{int(pa), int(pb)}
		}
	}
	return r, nil // RFC 2326: the server may omit what we asked for
}

// parseSession splits "id;timeout=60". The timeout defaults to 60 s.
func parseSession(v string) (id string, timeout time.Duration, err error) {
	id, params, _ := strings.Cut(v, ";")
	id = strings.TrimSpace(id)
	if id == "" || len(id) > 256 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", 0, fmt.Errorf("missing or bad Session header %.60q", v)
	}
	timeout = 60 * time.Second
	for _, p := range strings.Split(params, ";") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(p), "timeout="); ok {
			if n, err := strconv.Atoi(t); err == nil && n > 0 && n <= 3600 {
				timeout = time.Duration(n) * time.Second
			}
		}
	}
	return id, timeout, nil
}

// send writes one request and returns its CSeq.
func (c *rtspConn) send(method, uri string, extra [][2]string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cseq++
	hdr := extra
	if c.session != "" {
		hdr = append(hdr[:len(hdr):len(hdr)], [2]string{"Session", c.session})
	}
	if c.auth != nil {
		if h := c.auth.header(method, uri); h != "" {
			hdr = append(hdr[:len(hdr):len(hdr)], [2]string{"Authorization", h})
		}
	}
	b, err := formatRequest(method, uri, c.cseq, hdr)
	if err != nil {
		return 0, fmt.Errorf("rtsp: %s: %w", method, err)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.src.opt.DialTimeout))
	if _, err := c.conn.Write(b); err != nil {
		return 0, fmt.Errorf("rtsp: %s: write: %w", method, err)
	}
	return c.cseq, nil
}

// roundTrip sends a request and waits for its response, answering one
// authentication challenge (two if the camera says the nonce was stale).
func (c *rtspConn) roundTrip(ctx context.Context, method, uri string, extra [][2]string) (*message, error) {
	for tries := 0; ; tries++ {
		cseq, err := c.send(method, uri, extra)
		if err != nil {
			return nil, err
		}
		resp, err := c.response(ctx, method, cseq)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.status == 401:
			if c.auth == nil {
				return nil, fmt.Errorf("rtsp: %s: %w: the camera requires a user name and password; put them in the URL (rtsp://user:pass@host/…)",
					method, ErrUnauthorized)
			}
			challenges := resp.header[textproto.CanonicalMIMEHeaderKey("WWW-Authenticate")]
			stale := strings.Contains(strings.ToLower(strings.Join(challenges, " ")), "stale=true")
			if tries >= 2 || (tries == 1 && !stale) {
				return nil, fmt.Errorf("rtsp: %s: %w (401); check the user name and password", method, ErrUnauthorized)
			}
			c.mu.Lock()
			err := c.auth.challenge(challenges)
			c.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("rtsp: %s: %w", method, err)
			}
		case resp.status < 200 || resp.status > 299:
			return nil, &statusError{method, resp.status, limit(resp.reason, 80)}
		default:
			return resp, nil
		}
	}
}

// response reads until the answer to cseq, skipping interleaved data and
// requests from the camera.
func (c *rtspConn) response(ctx context.Context, method string, cseq int) (*message, error) {
	if err := c.readDeadline(ctx, c.src.opt.DialTimeout); err != nil {
		return nil, err
	}
	for {
		b, err := c.br.Peek(1)
		if err != nil {
			return nil, c.readErr(ctx, method, c.src.opt.DialTimeout, err)
		}
		if b[0] == '$' {
			if _, c.rbuf, err = readInterleaved(c.br, c.rbuf); err != nil {
				return nil, c.readErr(ctx, method, c.src.opt.DialTimeout, err)
			}
			continue
		}
		m, err := readMessage(c.br)
		if err != nil {
			return nil, c.readErr(ctx, method, c.src.opt.DialTimeout, err)
		}
		if got := m.get("CSeq"); !m.request && (got == "" || got == strconv.Itoa(cseq)) {
			return m, nil
		}
	}
}

// readDeadline arms the read deadline, then reports whether ctx ended,
// so a cancellation that raced with the arming is not lost.
func (c *rtspConn) readDeadline(ctx context.Context, d time.Duration) error {
	var t time.Time // none, for d == 0
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = c.conn.SetReadDeadline(t)
	return ctx.Err()
}

func (c *rtspConn) readErr(ctx context.Context, op string, wait time.Duration, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("rtsp: %s: %w: nothing received for %s", op, ErrTimeout, wait)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("rtsp: %s: camera closed the connection", op)
	}
	return fmt.Errorf("rtsp: %s: %w", op, err)
}

// keepAlive pings the session at every interval until done is closed.
// Errors are left to the reader, which sees the connection fail.
func (c *rtspConn) keepAlive(done <-chan struct{}, method, uri string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if _, err := c.send(method, uri, nil); err != nil {
				return
			}
		}
	}
}

// keepAliveAnswer looks at a message read while playing. A refused
// keep-alive ends the session, unless the camera only said its nonce was
// stale: then the new one is adopted and the keep-alive sent again at once,
// as cameras that rotate nonces expect.
func (c *rtspConn) keepAliveAnswer(m *message) error {
	if m.status != 401 && m.status != 454 {
		return nil
	}
	if m.status == 401 && c.auth != nil {
		challenges := m.header[textproto.CanonicalMIMEHeaderKey("WWW-Authenticate")]
		if strings.Contains(strings.ToLower(strings.Join(challenges, " ")), "stale=true") {
			c.mu.Lock()
			err := c.auth.challenge(challenges)
			c.mu.Unlock()
			if err == nil {
				_, err = c.send(c.keepMethod, c.keepURI, nil)
			}
			return err
		}
	}
	return &statusError{"keep-alive", m.status, limit(m.reason, 80)}
}

// play reads RTP until an error or ctx ends, emitting whole frames.
func (c *rtspConn) play(ctx context.Context, tr track, rtpCh byte, emit func(h264.Frame) error) error {
	dp := tr.depacketizer()
	wall := rtpClock{rate: tr.clockRate}
	timeout := c.src.opt.ReadTimeout
	// Packets that never make a whole frame (a fragment that never ends, a
	// stream of damage) would show as "playing, 0 fps" forever: after
	// three read timeouts without a frame it is an error, and a reconnect.
	noFrame := 3 * timeout
	lastFrame := c.src.opt.clock.Now()
	var pkt rtp.Packet
	for {
		if err := c.readDeadline(ctx, timeout); err != nil {
			return err
		}
		b, err := c.br.Peek(1)
		if err != nil {
			return c.readErr(ctx, "read", timeout, err)
		}
		if b[0] != '$' {
			m, err := readMessage(c.br)
			if err != nil {
				return c.readErr(ctx, "read", timeout, err)
			}
			if err := c.keepAliveAnswer(m); err != nil {
				return err
			}
			continue
		}
		var ch byte
		var payload []byte
		if ch, payload, err = readInterleaved(c.br, c.rbuf); err != nil {
			return c.readErr(ctx, "read", timeout, err)
		}
		c.rbuf = payload
		if ch != rtpCh || pkt.Unmarshal(payload) != nil || pkt.PayloadType != tr.payloadType {
			continue // RTCP, another track, or garbage (the sequence gap shows as loss)
		}
		now := c.src.opt.clock.Now()
		for _, au := range dp.push(&pkt) {
			f := h264.Frame{Time: wall.at(au.ts, now), Key: au.key, Data: au.data, Codec: au.codec}
			if err := emit(f); err != nil {
				return errEmit{err}
			}
			c.src.stats.frame(len(f.Data))
			lastFrame = now
		}
		if now.Sub(lastFrame) > noFrame {
			return fmt.Errorf("rtsp: packets arrive but no whole frame for %v (a fragment that never ends, or only damaged frames): %w", noFrame, ErrTimeout)
		}
	}
}

// rtpClock maps RTP timestamps to wall-clock time: the first is anchored
// to now, later ones add their (wrap-aware) distance from it at the
// track's clock rate. If the result strays more than maxSkew from now —
// the camera restarted its clock, or drifted over a very long session —
// it re-anchors, accepting one jump instead of a growing error.
type rtpClock struct {
	rate     uint32
	anchored bool
	base     time.Time
	last     uint32
	ticks    int64 // since base, extended past 32-bit wrap
}

const maxSkew = 5 * time.Second

func (c *rtpClock) at(ts uint32, now time.Time) time.Time {
	if c.rate == 0 {
		c.rate = 90000
	}
	if !c.anchored {
		c.anchored, c.base, c.last, c.ticks = true, now, ts, 0
		return now
	}
	c.ticks += int64(int32(ts - c.last))
	c.last = ts
	r := int64(c.rate)
	t := c.base.Add(time.Duration(c.ticks/r)*time.Second + time.Duration(c.ticks%r*int64(time.Second)/r))
	if t.Sub(now) > maxSkew || now.Sub(t) > maxSkew {
		c.base, c.ticks = now, 0
		return now
	}
	return t
}
