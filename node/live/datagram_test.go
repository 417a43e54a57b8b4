package live

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

// capturePC is a net.PacketConn that keeps what is written to it.
type capturePC struct {
	net.PacketConn
	sent [][]byte
}

func (c *capturePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.sent = append(c.sent, append([]byte(nil), b...))
	return len(b), nil
}

func (c *capturePC) take() [][]byte {
	s := c.sent
	c.sent = nil
	return s
}

// simFrame is one frame the simulated camera made.
type simFrame struct {
	at   time.Duration
	key  bool
	data []byte
}

// simResult is what the simulated viewer showed.
type simResult struct {
	shown    int
	worst    time.Duration
	resumed  []time.Duration // capture times of keyframes shown right after a gap
	outOfSeq bool
}

// simulate runs a camera of frames through a sender, a link with the given
// loss (per datagram, each way, by the time it is sent) and a one-way
// delay, and an assembler, on a virtual clock of 1 ms steps, with NACKs
// and resends as in Watch. Each frame shown must be byte for byte the one
// sent.
func simulate(t *testing.T, frames []simFrame, loss func(at time.Duration) float64, oneWay time.Duration, seed uint64) simResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	base := time.Unix(1_700_000_000, 0)
	pc := &capturePC{}
	var tok token
	tok[0] = 7
	snd := newSender(pc, netip.MustParseAddrPort("[fd00::1]:9"), tok)
	var clock time.Duration
	snd.now = func() time.Time { return base.Add(clock) }
	asm := newAssembler()
	asm.sample(2 * oneWay)
	type inFlight struct {
		due time.Duration
		b   []byte
	}
	var toViewer, toStore []inFlight
	ship := func(q *[]inFlight, now time.Duration, bs [][]byte) {
		for _, b := range bs {
			if rng.Float64() >= loss(now) {
				*q = append(*q, inFlight{now + oneWay, b})
			}
		}
	}
	sentAt := map[int64]int{} // capture time → index in frames
	var res simResult
	last := -1
	next := 0
	end := frames[len(frames)-1].at + 2*time.Second
	for now := time.Duration(0); now < end; now += time.Millisecond {
		clock = now
		for next < len(frames) && frames[next].at <= now {
			f := frames[next]
			at := base.Add(f.at)
			sentAt[at.UnixNano()] = next
			if err := snd.send(at, f.key, false, f.data, h264.CodecH264); err != nil {
				t.Fatal(err)
			}
			ship(&toViewer, now, pc.take())
			next++
		}
		for len(toStore) > 0 && toStore[0].due <= now {
			d, err := parseDatagram(toStore[0].b)
			toStore = toStore[1:]
			if err != nil || d.typ != dgNack {
				t.Fatalf("the store got %+v, %v", d, err)
			}
			snd.resend(d.nacks)
			ship(&toViewer, now, pc.take())
		}
		for len(toViewer) > 0 && toViewer[0].due <= now {
			d, err := parseDatagram(toViewer[0].b)
			toViewer = toViewer[1:]
			if err != nil {
				t.Fatal(err)
			}
			asm.add(d, base.Add(now))
		}
		for _, f := range asm.pop(base.Add(now)) {
			i, ok := sentAt[f.time]
			if !ok || !bytes.Equal(f.data, frames[i].data) || f.key != frames[i].key {
				t.Fatalf("frame shown at %v is not a frame sent", now)
			}
			if i <= last {
				res.outOfSeq = true
			}
			if i > last+1 && f.key {
				res.resumed = append(res.resumed, frames[i].at)
			}
			last = i
			res.shown++
			res.worst = max(res.worst, now-frames[i].at)
		}
		if now%dgTick == 0 {
			nacks := appendNacks(tok, asm.nacks(base.Add(now)))
			ship(&toStore, now, append(nacks, nacks...)) // twice, as Watch sends them
		}
	}
	return res
}

// camera makes n frames at 25 fps, a keyframe of 40 kB every 50, the rest
// 2–8 kB (about 1.4 Mbit/s), each with distinct bytes.
func camera(n int, seed uint64) []simFrame {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]simFrame, n)
	for i := range out {
		size := 2000 + rng.IntN(6000)
		key := i%50 == 0
		if key {
			size = 40000
		}
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out[i] = simFrame{at: time.Duration(i) * 40 * time.Millisecond, key: key, data: b}
	}
	return out
}

// On a link with 5 % loss each way and 100 ms RTT, NACKs and resends get
// (nearly) every frame through, none later than half a second, in order.
func TestDatagramsThroughLoss(t *testing.T) {
	frames := camera(1500, 1)
	for seed := uint64(1); seed <= 3; seed++ {
		res := simulate(t, frames, func(time.Duration) float64 { return 0.05 }, 50*time.Millisecond, seed)
		if res.outOfSeq {
			t.Fatal("frames shown out of order")
		}
		if res.shown < len(frames)*99/100 {
			t.Errorf("seed %d: %d of %d frames shown, want ≥ 99 %%", seed, res.shown, len(frames))
		}
		if res.worst > 500*time.Millisecond {
			t.Errorf("seed %d: a frame shown %v after its capture, want ≤ 500 ms", seed, res.worst)
		}
		t.Logf("seed %d: %d of %d frames shown, worst %v", seed, res.shown, len(frames), res.worst)
	}
	// Without loss every frame arrives one way's delay late.
	if res := simulate(t, frames, func(time.Duration) float64 { return 0 }, 50*time.Millisecond, 9); res.shown != len(frames) || res.worst > 51*time.Millisecond {
		t.Errorf("clean link: %d of %d frames, worst %v", res.shown, len(frames), res.worst)
	}
}

// A second of total loss stalls the view; it then resumes at the next
// keyframe, on time, instead of playing out what queued up.
func TestDatagramsStallRecoversAtKeyframe(t *testing.T) {
	frames := camera(500, 3)
	outage := func(at time.Duration) float64 {
		if at >= 5*time.Second && at < 6*time.Second {
			return 1
		}
		return 0.05
	}
	res := simulate(t, frames, outage, 50*time.Millisecond, 4)
	if res.outOfSeq {
		t.Fatal("frames shown out of order")
	}
	if res.worst > 500*time.Millisecond {
		t.Errorf("a frame shown %v after its capture: the view queued up", res.worst)
	}
	// Keyframes come every 2 s: frames 100 (4 s) and 150 (6 s). The outage
	// loses the rest of 100's GOP; the view resumes at 150, first frame
	// after the outage that can be decoded.
	if len(res.resumed) != 1 || res.resumed[0] != 6*time.Second {
		t.Errorf("resumed at %v, want once, at the keyframe of 6 s", res.resumed)
	}
	if lost := len(frames) - res.shown; lost < 25 || lost > 50 {
		t.Errorf("%d frames lost in a 1 s outage, want the rest of one GOP (25–50)", lost)
	}
}

func dataDatagram(tok token, seq, frame uint32, frag, frags uint16, at int64, key bool, payload []byte) []byte {
	var flags byte
	if key {
		flags = dgKey
	}
	b := appendCommon(nil, dgData, flags, tok)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, frame)
	b = binary.BigEndian.AppendUint16(b, frag)
	b = binary.BigEndian.AppendUint16(b, frags)
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	return append(b, payload...)
}

// Bad datagrams are refused with an error; an assembler fed nonsense keeps
// its bounds: a fragment that disagrees with its frame, a frame far ahead,
// a duplicate.
func TestDatagramParseAndBounds(t *testing.T) {
	var tok token
	good := dataDatagram(tok, 1, 1, 0, 1, 5, true, []byte{1})
	if _, err := parseDatagram(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":         nil,
		"not ours":      append([]byte{0x17}, good[1:]...),
		"version":       append([]byte{dgMagic, 9}, good[2:]...),
		"type":          append([]byte{dgMagic, dgVersion, 77}, good[3:]...),
		"flags":         append([]byte{dgMagic, dgVersion, dgData, 0x80}, good[4:]...),
		"frag ≥ frags":  dataDatagram(tok, 1, 1, 2, 2, 5, true, []byte{1}),
		"no frags":      dataDatagram(tok, 1, 1, 0, 0, 5, true, []byte{1}),
		"no payload":    dataDatagram(tok, 1, 1, 0, 1, 5, true, nil),
		"big payload":   dataDatagram(tok, 1, 1, 0, 1, 5, true, make([]byte, dgPayload+1)),
		"too many":      dataDatagram(tok, 1, 1, 0, dgMaxFrags+1, 5, true, []byte{1}),
		"short":         good[:dgDataHeader-1],
		"nack count":    append(appendCommon(nil, dgNack, 0, tok), 0, 2, 0, 0, 0, 1),
		"nack zero":     append(appendCommon(nil, dgNack, 0, tok), 0, 0),
		"ping length":   append(appendCommon(nil, dgPing, 0, tok), 1, 2, 3),
		"too many acks": appendNacks(tok, make([]uint32, dgMaxNacks+1))[0][:dgCommon+2],
	}
	for name, b := range bad {
		if _, err := parseDatagram(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if n := appendNacks(tok, make([]uint32, dgMaxNacks+1)); len(n) != 2 || len(n[0]) > dgMax {
		t.Errorf("%d NACK datagrams, first of %d bytes", len(n), len(n[0]))
	}

	a := newAssembler()
	now := time.Now()
	add := func(b []byte) {
		d, err := parseDatagram(b)
		if err != nil {
			t.Fatal(err)
		}
		a.add(d, now)
	}
	add(dataDatagram(tok, 0, 0, 0, 2, 5, true, []byte{1}))
	add(dataDatagram(tok, 1, 0, 1, 3, 5, true, []byte{2}))        // other fragment count
	add(dataDatagram(tok, 2, 0, 1, 2, 6, true, []byte{3}))        // other time
	add(dataDatagram(tok, 3, 0, 0, 2, 5, true, []byte{4}))        // duplicate
	add(dataDatagram(tok, 4, maxAhead, 0, 1, 9, true, []byte{5})) // too far ahead
	if out := a.pop(now); len(out) != 0 {
		t.Fatalf("a half frame came out: %+v", out)
	}
	add(dataDatagram(tok, 5, 0, 1, 2, 5, true, []byte{6}))
	out := a.pop(now)
	if len(out) != 1 || !bytes.Equal(out[0].data, []byte{1, 6}) || !out[0].key || out[0].time != 5 {
		t.Fatalf("got %+v, want the frame put together from its own fragments", out)
	}
	if a.held != 0 || len(a.frames) != 0 {
		t.Errorf("%d bytes in %d frames held after the only frame came out", a.held, len(a.frames))
	}
	// Frames that grow past the bound are given up, not held.
	big := make([]byte, dgPayload)
	seq := uint32(6)
	for f := uint32(1); f <= 4; f++ {
		for i := range uint16(dgMaxFrags - 1) {
			add(dataDatagram(tok, seq, f, i, dgMaxFrags, int64(f), false, big))
			seq++
			if a.held > assemblerHeld {
				t.Fatalf("%d bytes held, bound %d", a.held, assemblerHeld)
			}
		}
	}
	if a.held >= 3*(dgMaxFrags-1)*dgPayload {
		t.Errorf("%d bytes held after 4 frames of 16 MiB, none whole", a.held)
	}
}

// The store resends only to NACKs from the viewer's own address and port
// under the session's token, at most maxResend times each, and only what
// it still holds.
func TestSenderResendsOnlyWhatItShould(t *testing.T) {
	pc := &capturePC{}
	var tok token
	tok[3] = 1
	s := newSender(pc, netip.MustParseAddrPort("[fd00::2]:4000"), tok)
	clock := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return clock }
	if err := s.send(time.Now(), true, false, make([]byte, 3*dgPayload), h264.CodecH264); err != nil {
		t.Fatal(err)
	}
	if got := len(pc.take()); got != 3 {
		t.Fatalf("a frame of three payloads went as %d datagrams", got)
	}
	var sent [][]byte
	for i := range maxResend + 2 {
		s.resend([]uint32{1, 99})
		s.resend([]uint32{1}) // the NACK's second copy: no request of its own
		clock = clock.Add(3 * nackEcho)
		got := pc.take()
		if want := min(i+1, 2); i < maxResend && len(got) != want {
			t.Fatalf("request %d (and its copy) sent %d datagrams, want %d", i+1, len(got), want)
		}
		sent = append(sent, got...)
	}
	if len(sent) != 2*maxResend-1 {
		t.Fatalf("%d resends of one packet asked for %d times, want %d: once, then twice each time (and none of an unknown one)", len(sent), maxResend+2, 2*maxResend-1)
	}
	if d, err := parseDatagram(sent[0]); err != nil || d.seq != 1 || d.flags&dgResend == 0 || d.frag != 1 {
		t.Errorf("resent %+v, %v", d, err)
	}
}

// FuzzDatagrams: any datagrams from the network give an error or a
// datagram, never a panic, and an assembler fed them keeps its bounds and
// hands out frames in order.
func FuzzDatagrams(f *testing.F) {
	var tok token
	f.Add(dataDatagram(tok, 0, 0, 0, 1, 1, true, []byte{1}), dataDatagram(tok, 2, 1, 1, 2, 2, false, []byte{2}))
	f.Add(appendNacks(tok, []uint32{1, 2})[0], []byte{dgMagic, dgVersion, dgPing})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		asm := newAssembler()
		now := time.Unix(0, 0)
		var last uint32
		shown := false
		for i, raw := range [][]byte{a, b, a, b} {
			d, err := parseDatagram(raw)
			if err != nil {
				continue
			}
			if d.typ == dgData {
				asm.add(d, now)
			}
			now = now.Add(time.Duration(i) * giveUp)
			for _, f := range asm.pop(now) {
				if shown && !after(f.frame, last) {
					t.Fatalf("frame %d after frame %d", f.frame, last)
				}
				shown, last = true, f.frame
			}
			asm.nacks(now)
			if asm.held < 0 || asm.held > assemblerHeld {
				t.Fatalf("held %d", asm.held)
			}
		}
	})
}

// Over real sockets: the store answers NACKs and pings only from the
// viewer's own address and port under the session's token; another socket
// that knows the token, or the viewer under another token, gets nothing.
func TestSenderAnswersOnlyTheViewer(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	store, viewer, other := listen(), listen(), listen()
	tok := token{1, 2, 3, 4, 5, 6, 7, 8}
	s := newSender(store, udpAddrPort(viewer.LocalAddr()), tok)
	done := make(chan struct{})
	go func() { defer close(done); s.serve() }()
	defer func() { s.stop(); <-done }()
	if err := s.send(time.Now(), true, false, []byte("frame"), h264.CodecH264); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	viewer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := viewer.ReadFrom(buf); err != nil {
		t.Fatalf("the frame: %v", err)
	}
	nack := appendNacks(tok, []uint32{0})[0]
	var otherTok token
	other.WriteTo(nack, store.LocalAddr())
	viewer.WriteTo(appendNacks(otherTok, []uint32{0})[0], store.LocalAddr())
	ping := binary.BigEndian.AppendUint64(appendCommon(nil, dgPing, 0, tok), 42)
	other.WriteTo(ping, store.LocalAddr())
	// Then the viewer's own ping: its pong must be the first thing back.
	viewer.WriteTo(ping, store.LocalAddr())
	n, _, err := viewer.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := parseDatagram(buf[:n]); err != nil || d.typ != dgPong || d.time != 42 {
		t.Fatalf("the viewer got %+v (%v) first, want its pong", d, err)
	}
	other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := other.ReadFrom(buf); err == nil {
		t.Error("another socket got an answer")
	}
	if s.resends() != 0 {
		t.Errorf("%d resends for NACKs not from the viewer's session", s.resends())
	}
	viewer.WriteTo(nack, store.LocalAddr())
	if n, _, err := viewer.ReadFrom(buf); err != nil {
		t.Fatal(err)
	} else if d, err := parseDatagram(buf[:n]); err != nil || d.flags&dgResend == 0 || string(d.payload) != "frame" {
		t.Errorf("the viewer's NACK got %+v (%v), want the frame resent", d, err)
	}
}
