package source

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/custos-cctv/custos/media/h264"
)

// testCamera is a small RTSP camera for tests: it demands the configured
// authentication, checks every Digest response itself, and streams the
// fixture over interleaved TCP, packetized by pion (SPS+PPS in STAP-A,
// large slices in FU-A).
type testCamera struct {
	t    testing.TB
	ln   net.Listener
	fx   *fixture
	user string
	pass string
	auth string // "", "basic", "digest" (SHA-256 and MD5, qop=auth), "digest-md5" (qop=auth) or "digest-noqop"
	sdp  string // overrides the H.264 SDP when set
	// sessionTimeout is what the Session header advertises (seconds).
	sessionTimeout int
	// frameEvery paces the stream.
	frameEvery time.Duration
	// silentAfter: on the first connection, stop sending after this many
	// frames but keep the connection open (a hung camera). 0 = never.
	silentAfter int
	// drop: on the first connection, skip packet k of the n packets that
	// carry the frame-th frame sent.
	drop func(frame, k, n int) bool
	// endlessFU: on the first connection, after this many frames, send
	// only middle FU-A fragments of one frame that never ends. 0 = never.
	endlessFU int
	// udp: "" refuses RTP over UDP (461), "ok" streams over UDP when
	// asked, "silent" accepts UDP but never sends a datagram.
	udp string
	// reorderEvery: over UDP, in every frame i with i%reorderEvery == 3
	// that has three packets or more, send the third before the second.
	reorderEvery int
	// foreign: over UDP, also send each packet, with a wild sequence
	// number, from a socket that is not the camera's RTP port.
	foreign bool

	// staleEvery: every staleEvery-th GET_PARAMETER gets a 401 with a new
	// nonce and stale=true, as cameras that rotate nonces answer.
	staleEvery int
	getParams  atomic.Int32
	// tlsCert makes it an rtsps camera.
	tlsCert *tls.Certificate

	receiverReports atomic.Int32 // RTCP RRs received
	udpSetups       atomic.Int32

	conns      atomic.Int32
	badAuth    atomic.Int32 // requests with a wrong Authorization
	keepAlives atomic.Int32
	teardowns  atomic.Int32
	wg         sync.WaitGroup
	nonce      string
}

const testRealm = "custos-test"

func (c *testCamera) start() string {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	scheme := "rtsp://"
	if c.tlsCert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*c.tlsCert}})
		scheme = "rtsps://"
	}
	c.ln = ln
	if c.frameEvery == 0 {
		c.frameEvery = 5 * time.Millisecond
	}
	if c.sessionTimeout == 0 {
		c.sessionTimeout = 60
	}
	c.nonce = randHex(8)
	done := make(chan struct{})
	var open sync.Map
	c.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			open.Store(conn, true)
			n := int(c.conns.Add(1))
			c.wg.Go(func() { c.serve(conn, n, done); open.Delete(conn) })
		}
	})
	c.t.Cleanup(func() {
		close(done)
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		c.wg.Wait()
	})
	return scheme + ln.Addr().String() + "/stream"
}

func (c *testCamera) url(user, pass string) string {
	u := c.start()
	if user == "" {
		return u
	}
	scheme, rest, _ := strings.Cut(u, "://")
	return scheme + "://" + user + ":" + pass + "@" + rest
}

// serve handles one connection.
func (c *testCamera) serve(conn net.Conn, n int, done <-chan struct{}) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := conn.Write(b)
		return err
	}
	base := "rtsp://" + c.ln.Addr().String() + "/stream"
	if c.tlsCert != nil {
		base = "rtsps://" + c.ln.Addr().String() + "/stream"
	}
	var streaming sync.WaitGroup
	defer streaming.Wait()
	stop := make(chan struct{})
	defer close(stop)
	var udpSend *testUDP
	for {
		req, err := readMessage(br)
		if err != nil || !req.request {
			return
		}
		method, uri, _ := strings.Cut(req.reason, " ")
		uri = strings.TrimSuffix(uri, " RTSP/1.0")
		hdr := "CSeq: " + req.get("CSeq") + "\r\n"
		if method == "GET_PARAMETER" && c.staleEvery > 0 && int(c.getParams.Add(1))%c.staleEvery == 0 {
			c.nonce = randHex(8)
			stale := strings.ReplaceAll(c.challenge(), "\r\n", ", stale=true\r\n")
			_ = write([]byte("RTSP/1.0 401 Unauthorized\r\n" + hdr + stale + "\r\n"))
			continue
		}
		if !c.authorized(method, uri, req.get("Authorization")) {
			hdr += c.challenge()
			_ = write([]byte("RTSP/1.0 401 Unauthorized\r\n" + hdr + "\r\n"))
			continue
		}
		switch method {
		case "OPTIONS":
			hdr += "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
		case "DESCRIBE":
			body := c.sdp
			if body == "" {
				body = c.h264SDP()
			}
			hdr += fmt.Sprintf("Content-Base: %s/\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", base, len(body), body)
			_ = write([]byte("RTSP/1.0 200 OK\r\n" + hdr))
			continue
		case "SETUP":
			if uri != base+"/trackID=1" {
				_ = write([]byte("RTSP/1.0 404 Not Found\r\n" + hdr + "\r\n"))
				continue
			}
			if tr := req.get("Transport"); strings.Contains(tr, "client_port=") {
				if c.udp == "" {
					_ = write([]byte("RTSP/1.0 461 Unsupported Transport\r\n" + hdr + "\r\n"))
					continue
				}
				c.udpSetups.Add(1)
				_, ports, _ := strings.Cut(tr, "client_port=")
				first, _, _ := strings.Cut(ports, "-")
				var port int
				fmt.Sscan(first, &port)
				udpSend = c.udpServer(port, stop)
				hdr += fmt.Sprintf("Transport: RTP/AVP;unicast;client_port=%d-%d;server_port=%d-%d\r\nSession: 4711;timeout=%d\r\n",
					port, port+1, udpSend.rtpPort, udpSend.rtcpPort, c.sessionTimeout)
				break
			}
			hdr += fmt.Sprintf("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4711;timeout=%d\r\n", c.sessionTimeout)
		case "PLAY":
			if req.get("Session") != "4711" {
				_ = write([]byte("RTSP/1.0 454 Session Not Found\r\n" + hdr + "\r\n"))
				continue
			}
			hdr += "Session: 4711\r\n"
			_ = write([]byte("RTSP/1.0 200 OK\r\n" + hdr + "\r\n"))
			send := func(b []byte) error { return write(append([]byte{'$', 0, byte(len(b) >> 8), byte(len(b))}, b...)) }
			if udpSend != nil {
				send = udpSend.send
			}
			streaming.Go(func() { c.stream(send, n, stop, done) })
			continue
		case "GET_PARAMETER":
			c.keepAlives.Add(1)
		case "TEARDOWN":
			c.teardowns.Add(1)
			_ = write([]byte("RTSP/1.0 200 OK\r\n" + hdr + "\r\n"))
			return
		}
		_ = write([]byte("RTSP/1.0 200 OK\r\n" + hdr + "\r\n"))
	}
}

func (c *testCamera) h264SDP() string {
	sps := base64.StdEncoding.EncodeToString(c.fx.aus[0][0])
	pps := base64.StdEncoding.EncodeToString(c.fx.aus[0][1])
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
		"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
		"a=fmtp:96 packetization-mode=1;profile-level-id=42c01e;sprop-parameter-sets=" + sps + "," + pps + "\r\n" +
		"a=control:trackID=1\r\n"
}

// stream sends the fixture in a loop until stop or done.
func (c *testCamera) stream(send func([]byte) error, conn int, stop, done <-chan struct{}) {
	p := rtp.NewPacketizer(1200, 96, 0x1234, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	tick := time.NewTicker(c.frameEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-done:
			return
		case <-tick.C:
		}
		if conn == 1 && c.silentAfter > 0 && i >= c.silentAfter {
			continue // hung: connection open, nothing sent
		}
		if conn == 1 && c.endlessFU > 0 && i >= c.endlessFU {
			// FU indicator (type 28) and a header with neither start nor
			// end: a fragment of a frame whose end never comes.
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: 1 << 20, SSRC: 0x1234},
				Payload: append([]byte{0x7c, 0x05}, bytes.Repeat([]byte{0xaa}, 1000)...)}
			b, _ := pkt.Marshal()
			if send(b) != nil {
				return
			}
			continue
		}
		pkts := p.Packetize(h264.JoinNALs(c.fx.aus[i%len(c.fx.aus)]...), 3600)
		if c.reorderEvery > 0 && i%c.reorderEvery == 3 && len(pkts) >= 3 {
			pkts[1], pkts[2] = pkts[2], pkts[1]
		}
		for k, pkt := range pkts {
			if conn == 1 && c.drop != nil && c.drop(i, k, len(pkts)) {
				continue
			}
			b, _ := pkt.Marshal()
			if send(b) != nil {
				return
			}
		}
	}
}

func (c *testCamera) challenge() string {
	switch c.auth {
	case "basic":
		return `WWW-Authenticate: Basic realm="` + testRealm + "\"\r\n"
	case "digest-noqop":
		return fmt.Sprintf("WWW-Authenticate: Digest realm=%q, nonce=%q\r\n", testRealm, c.nonce)
	case "digest-md5":
		// Offer a scheme we must skip first, as some cameras do.
		return fmt.Sprintf("WWW-Authenticate: Digest realm=%q, nonce=%q, algorithm=MD5-sess, qop=\"auth\"\r\n"+
			"WWW-Authenticate: Digest realm=%q, nonce=%q, algorithm=MD5, qop=\"auth,auth-int\", opaque=\"op4\"\r\n",
			testRealm, c.nonce, testRealm, c.nonce)
	}
	// Offer a scheme we must skip first, as some cameras do.
	return fmt.Sprintf("WWW-Authenticate: Digest realm=%q, nonce=%q, algorithm=SHA-256, qop=\"auth\"\r\n"+
		"WWW-Authenticate: Digest realm=%q, nonce=%q, algorithm=MD5, qop=\"auth,auth-int\", opaque=\"op4\"\r\n",
		testRealm, c.nonce, testRealm, c.nonce)
}

// authorized checks a request's credentials the way a camera would.
func (c *testCamera) authorized(method, uri, got string) bool {
	if c.auth == "" {
		return true
	}
	if got == "" {
		return false
	}
	ok := c.checkAuth(method, uri, got)
	if !ok {
		c.badAuth.Add(1)
	}
	return ok
}

func (c *testCamera) checkAuth(method, uri, got string) bool {
	scheme, rest, _ := strings.Cut(got, " ")
	if c.auth == "basic" {
		return scheme == "Basic" && rest == base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.pass))
	}
	if scheme != "Digest" {
		return false
	}
	p := parseAuthParams(rest)
	if p["username"] != c.user || p["realm"] != testRealm || p["nonce"] != c.nonce || p["uri"] != uri {
		return false
	}
	h, opaque := md5hex, "op4"
	if c.auth == "digest" { // it offered SHA-256 first: that is the one to use
		if p["algorithm"] != "SHA-256" {
			return false
		}
		h, opaque = sha256hex, ""
	}
	ha1 := h(c.user + ":" + testRealm + ":" + c.pass)
	ha2 := h(method + ":" + uri)
	if c.auth == "digest-noqop" {
		return p["qop"] == "" && p["response"] == h(ha1+":"+c.nonce+":"+ha2)
	}
	return p["qop"] == "auth" && p["opaque"] == opaque && len(p["nc"]) == 8 && p["cnonce"] != "" &&
		p["response"] == h(ha1+":"+c.nonce+":"+p["nc"]+":"+p["cnonce"]+":auth:"+ha2)
}

// testUDP is the camera's side of one RTP-over-UDP session.
type testUDP struct {
	c                 *testCamera
	rtp, rtcp, other  *net.UDPConn
	to                *net.UDPAddr
	rtpPort, rtcpPort int
	silent            bool
}

// udpServer opens the camera's RTP and RTCP ports for a client at
// 127.0.0.1:port, and counts the receiver reports that arrive.
func (c *testCamera) udpServer(port int, stop <-chan struct{}) *testUDP {
	listen := func() *net.UDPConn {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			c.t.Error(err)
		}
		return u
	}
	u := &testUDP{c: c, rtp: listen(), rtcp: listen(), other: listen(), silent: c.udp == "silent",
		to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	u.rtpPort, u.rtcpPort = u.rtp.LocalAddr().(*net.UDPAddr).Port, u.rtcp.LocalAddr().(*net.UDPAddr).Port
	c.wg.Go(func() {
		b := make([]byte, 1500)
		for {
			n, err := u.rtcp.Read(b)
			if err != nil {
				return
			}
			if n >= 32 && b[0]>>6 == 2 && b[1] == 201 {
				c.receiverReports.Add(1)
			}
		}
	})
	c.wg.Go(func() {
		<-stop
		u.rtp.Close()
		u.rtcp.Close()
		u.other.Close()
	})
	return u
}

func (u *testUDP) send(b []byte) error {
	if u.silent {
		return nil
	}
	if u.c.foreign {
		// The same packet from another port, ahead in sequence: accepted,
		// it would look like a burst of loss and damage the stream.
		f := append([]byte(nil), b...)
		f[2] ^= 0x40
		_, _ = u.other.WriteToUDP(f, u.to)
	}
	_, err := u.rtp.WriteToUDP(b, u.to)
	if err != nil && errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
