package source

import (
	"encoding/binary"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the parsers that RTP over UDP, rtsps and the quirks
// brought: none may panic or let camera bytes exceed their bounds.

func FuzzParseTransport(f *testing.F) {
	f.Add("RTP/AVP/TCP;unicast;interleaved=0-1")
	f.Add("RTP/AVP;unicast;client_port=4000-4001;server_port=6970-6971;ssrc=1F2E")
	f.Add("RTP/AVP/UDP;unicast;server_port=65535,RTP/AVP/TCP;interleaved=4")
	f.Fuzz(func(t *testing.T, v string) {
		r, err := parseTransport(v)
		if err != nil {
			return
		}
		for _, p := range r.serverPort {
			if p < 0 || p > 65535 {
				t.Fatalf("server port %d", p)
			}
		}
		if r.serverPort[0] != 0 && r.serverPort[1] == 0 {
			t.Fatalf("RTP port %d without an RTCP port", r.serverPort[0])
		}
	})
}

func FuzzParseSession(f *testing.F) {
	f.Add("4711;timeout=60")
	f.Add("abc")
	f.Add("x;timeout=99999999999999999999")
	f.Fuzz(func(t *testing.T, v string) {
		id, timeout, err := parseSession(v)
		if err != nil {
			return
		}
		if id == "" || len(id) > 256 || strings.ContainsAny(id, " \r\n;") {
			t.Fatalf("session id %q", id)
		}
		if timeout <= 0 || timeout > time.Hour {
			t.Fatalf("timeout %v", timeout)
		}
	})
}

func FuzzParseRTCP(f *testing.F) {
	sr := make([]byte, 28)
	sr[0], sr[1], sr[3] = 0x80, rtcpSR, 6
	bye := []byte{0x81, rtcpBYE, 0, 1, 0, 0, 0, 1}
	f.Add(append(sr, bye...))
	f.Add([]byte{0x80, rtcpRR, 0, 0})
	f.Add([]byte{0x80, rtcpSR, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseRTCP(b)
	})
}

// FuzzReorder pushes datagrams (2-byte sequence numbers, each with a
// 1-byte arrival delay in ms) and checks what comes out: every packet
// handed on was pushed, none twice in a row, and nothing is held past
// the window.
func FuzzReorder(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 3, 0, 0, 2, 60, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r reorder
		now := time.Unix(0, 0)
		pushed := map[uint16]bool{}
		var last uint16
		var have bool
		out := func(p []byte) {
			s := binary.BigEndian.Uint16(p)
			if !pushed[s] {
				t.Fatalf("handed on %d, never pushed", s)
			}
			if have && s == last {
				t.Fatalf("handed on %d twice in a row", s)
			}
			last, have = s, true
		}
		for ; len(b) >= 3; b = b[3:] {
			s := binary.BigEndian.Uint16(b)
			now = now.Add(time.Duration(b[2]) * time.Millisecond)
			pushed[s] = true
			r.push(s, b[:2], now, out)
			r.flush(now, out)
			if r.held > reorderWindow {
				t.Fatalf("%d packets held", r.held)
			}
		}
		r.flush(now.Add(time.Hour), out)
		if r.held != 0 {
			t.Fatalf("%d packets held after the wait", r.held)
		}
	})
}

// FuzzBaseURL checks the camera-supplied Content-Base handling and control
// URL resolution: results are absolute rtsp(s) URLs without userinfo.
func FuzzBaseURL(f *testing.F) {
	f.Add("rtsp://cam:554/live/", "trackID=1")
	f.Add("rtsp://user:pw@cam/x?channel=1", "rtsp://evil:pw@other/track")
	f.Add("rtsps://cam/a/b", "/abs/path")
	f.Add("", "*")
	f.Fuzz(func(t *testing.T, base, control string) {
		b, ok := cleanRTSPURL(base)
		if !ok {
			b = "rtsp://cam/stream"
		}
		for _, s := range []string{b, resolveControl(b, control)} {
			u, err := url.Parse(s)
			if err != nil {
				continue // resolveControl appends text it cannot vouch for; SETUP will fail
			}
			if u.User != nil {
				t.Fatalf("%q keeps userinfo", s)
			}
		}
	})
}
