package source

import (
	"encoding/binary"
	"testing"
	"time"
)

// RTP over UDP through the fake camera: packets it sends out of order
// come out in order, packets from a port that is not the camera's are
// dropped and counted, and receiver reports reach the camera.
func TestRTSPOverUDP(t *testing.T) {
	fx := loadFixture(t)
	cam := &testCamera{t: t, fx: fx, udp: "ok", reorderEvery: 10, foreign: true, frameEvery: 10 * time.Millisecond,
		auth: "digest", user: "admin", pass: testPass, sessionTimeout: 1}
	src, err := Open(cam.url("admin", testPass), Options{Transport: TransportUDP, rrEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	run(t, src, c)
	// Session timeout 1 s: keep-alives every 500 ms on the control
	// connection, their answers read while RTP comes over UDP.
	waitFor(t, 20*time.Second, "120 frames, 2 receiver reports, 2 keep-alives", func() bool {
		return c.len() >= 120 && cam.receiverReports.Load() >= 2 && cam.keepAlives.Load() >= 2
	})
	frames, _ := c.snapshot()
	checkStream(t, fx, frames[:120], [2]int{})
	waitFor(t, 5*time.Second, "loss counters in Stats", func() bool { return src.Stats().PacketsReordered > 0 })
	st := src.Stats()
	if st.Transport != "udp" || st.FellBack || st.PacketsLost != 0 || st.PacketsReordered == 0 || st.PacketsForeign == 0 || st.Reconnects != 0 {
		t.Errorf("Stats = %+v, want udp, reordered and foreign packets counted, none lost", st)
	}
	if n := cam.udpSetups.Load(); n != 1 || cam.badAuth.Load() != 0 {
		t.Errorf("camera saw %d UDP SETUPs (want 1), %d bad logins", n, cam.badAuth.Load())
	}
}

func TestRTSPOverUDPLoss(t *testing.T) {
	fx := loadFixture(t)
	cam := &testCamera{t: t, fx: fx, udp: "ok", frameEvery: 10 * time.Millisecond,
		drop: func(f, k, n int) bool { return f == 30 && k == 0 }}
	src, err := Open(cam.url("", ""), Options{Transport: TransportUDP})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	run(t, src, c)
	want := 120 - 20
	waitFor(t, 20*time.Second, "frames past the loss", func() bool { return c.len() >= want })
	frames, _ := c.snapshot()
	checkStream(t, fx, frames[:want], [2]int{30, 50})
	waitFor(t, 5*time.Second, "the loss in Stats", func() bool { return src.Stats().PacketsLost == 1 })
}

// TransportAuto: a camera that accepts UDP but never sends a datagram is
// set up again over TCP after UDPFallback; one that refuses UDP outright
// is asked for TCP on the same connection.
func TestRTSPUDPFallback(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		name, udp string
		conns     int32
	}{
		{"silent over UDP", "silent", 2},
		{"refuses UDP", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := &testCamera{t: t, fx: fx, udp: tc.udp}
			src, err := Open(cam.url("", ""), Options{Transport: TransportAuto, UDPFallback: 300 * time.Millisecond,
				Backoff: Backoff{Initial: time.Minute}})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			run(t, src, c)
			waitFor(t, 20*time.Second, "60 frames over TCP", func() bool { return c.len() >= 60 })
			frames, _ := c.snapshot()
			checkStream(t, fx, frames, [2]int{})
			if st := src.Stats(); st.Transport != "tcp" || !st.FellBack {
				t.Errorf("Stats = %+v, want tcp after falling back", st)
			}
			if n := cam.conns.Load(); n != tc.conns {
				t.Errorf("%d connections, want %d", n, tc.conns)
			}
		})
	}
}

func TestReorder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name            string
		seqs            []uint16
		flushAfter      time.Duration
		want            []uint16
		lost, reordered uint64
	}{
		{"in order", []uint16{1, 2, 3}, 0, []uint16{1, 2, 3}, 0, 0},
		{"wraps", []uint16{65534, 65535, 0, 1}, 0, []uint16{65534, 65535, 0, 1}, 0, 0},
		{"swap", []uint16{1, 3, 2, 4}, 0, []uint16{1, 2, 3, 4}, 0, 1},
		{"duplicate", []uint16{1, 2, 2, 3}, 0, []uint16{1, 2, 3}, 0, 1},
		{"hole held", []uint16{1, 3, 4}, 0, []uint16{1}, 0, 0},
		{"hole expires", []uint16{1, 3, 4, 5}, reorderWait, []uint16{1, 3, 4, 5}, 1, 0},
		{"late after expiry", []uint16{1, 3, 4, 5, 2}, reorderWait, []uint16{1, 3, 4, 5}, 1, 1},
		{"far ahead", []uint16{1, 2, 200}, 0, []uint16{1, 2, 200}, 197, 0},
		{"window overrun", []uint16{1, 3, 70}, 0, []uint16{1, 3, 70}, 67, 0},
		{"restart", []uint16{30000, 30001, 5, 6}, 0, []uint16{30000, 30001, 5, 6}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r reorder
			var got []uint16
			out := func(b []byte) { got = append(got, binary.BigEndian.Uint16(b)) }
			for i, s := range tc.seqs {
				now := t0
				if i >= 3 { // the hole, if any, has waited from then on
					now = now.Add(tc.flushAfter)
				}
				r.push(s, binary.BigEndian.AppendUint16(nil, s), t0, out)
				r.flush(now, out)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("handed on %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("handed on %v, want %v", got, tc.want)
				}
			}
			if r.lost != tc.lost || r.reordered != tc.reordered {
				t.Errorf("lost %d reordered %d, want %d and %d", r.lost, r.reordered, tc.lost, tc.reordered)
			}
		})
	}
}

func TestReceiverReport(t *testing.T) {
	r := rtpReceiver{ssrc: 7, clockRate: 90000}
	t0 := time.Unix(1000, 0)
	// 10 packets expected (65530…65539 across the wrap), 8 received.
	for i, seq := range []uint16{65530, 65531, 65533, 65534, 65535, 0, 1, 3} {
		r.packet(seq, uint32(i*3000), 0xabc, t0.Add(time.Duration(i)*33*time.Millisecond))
	}
	r.senderReport(0x0001_2345_6789_0000, t0)
	b := r.report(t0.Add(time.Second))
	if len(b) != 32 || b[0] != 0x81 || b[1] != rtcpRR {
		t.Fatalf("RR header % x", b[:4])
	}
	u := func(off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
	if u(4) != 7 || u(8) != 0xabc {
		t.Errorf("SSRCs %#x %#x", u(4), u(8))
	}
	if fraction, lost := u(12)>>24, u(12)&0xffffff; fraction != 2*256/10 || lost != 2 {
		t.Errorf("fraction %d lost %d, want %d and 2", fraction, lost, 2*256/10)
	}
	if ext := u(16); ext != 1<<16|3 {
		t.Errorf("extended highest sequence %#x, want 0x10003", ext)
	}
	if u(24) != 0x2345_6789 || u(28) != 65536 {
		t.Errorf("LSR %#x DLSR %d, want 0x23456789 and 65536", u(24), u(28))
	}
	// Packets 33 ms apart stamped 3000 ticks (33.3 ms) apart: each
	// transit differs by 30 ticks, so jitter creeps up towards 30.
	if j := u(20); j == 0 || j > 30 {
		t.Errorf("jitter %d, want between 1 and 30", j)
	}
	// The next interval: nothing new, nothing lost.
	if b := r.report(t0.Add(2 * time.Second)); b[12] != 0 {
		t.Errorf("fraction lost %d in an empty interval", b[12])
	}
}

func TestParseTransport(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want transportReply
		err  bool
	}{
		{"RTP/AVP/TCP;unicast;interleaved=2-3", transportReply{tcp: true, interleaved: 2}, false},
		{"RTP/AVP;unicast;client_port=4000-4001;server_port=6970-6971;ssrc=1234", transportReply{serverPort: [2]int{6970, 6971}}, false},
		{"RTP/AVP/UDP;unicast;server_port=6970", transportReply{serverPort: [2]int{6970, 6971}}, false},
		{"RTP/AVP;unicast", transportReply{}, false},
		{"RTP/AVP;server_port=0-1", transportReply{}, true},
		{"RTP/AVP;server_port=70000-70001", transportReply{}, true},
		{"RTP/AVP/TCP;interleaved=300", transportReply{}, true},
		{"RAW/RAW/UDP;unicast", transportReply{}, true},
		{"", transportReply{}, true},
	} {
		got, err := parseTransport(tc.in)
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("parseTransport(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// A camera that rotates its Digest nonce answers a keep-alive with 401
// stale=true: the source adopts the new nonce and keeps its session, over
// TCP and over UDP alike.
func TestRTSPStaleNonceKeepAlive(t *testing.T) {
	fx := loadFixture(t)
	for _, tr := range []Transport{TransportTCP, TransportUDP} {
		t.Run(string(tr), func(t *testing.T) {
			cam := &testCamera{t: t, fx: fx, udp: "ok", auth: "digest", user: "admin", pass: testPass, sessionTimeout: 1, staleEvery: 2}
			src, err := Open(cam.url("admin", testPass), Options{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			run(t, src, c)
			waitFor(t, 20*time.Second, "3 accepted keep-alives after stale nonces", func() bool { return cam.keepAlives.Load() >= 3 })
			if st := src.Stats(); st.Reconnects != 0 || st.LastError != "" || cam.conns.Load() != 1 || cam.badAuth.Load() != 0 {
				t.Errorf("Stats = %+v, %d connections, %d bad logins; want one session throughout", st, cam.conns.Load(), cam.badAuth.Load())
			}
		})
	}
}
