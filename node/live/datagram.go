package live

// Live view over datagrams. The QUIC stream that authorized a live view
// carries only its control: the store's UDP port first, the end and its
// reason last. The frames travel as UDP datagrams inside the mesh. A stream
// is reliable and congestion-controlled: on a lossy link (5 % loss, 100 ms
// RTT) loss-based congestion control carries about 0.6 Mbit/s (throughput
// falls with RTT·√loss), and every frame queues behind a lost packet's
// retransmission, so the picture falls further behind the longer it plays.
// Live video wants the newest frame, not every old one. The store sends
// each frame once, at the rate the camera makes it; the viewer asks again
// (NACK) for each missing packet while its frame can still be shown, and
// gives up on a frame after giveUp, skipping to the next keyframe (frames
// after a lost one cannot be decoded without it) instead of queueing.
//
// WireGuard authenticates both ends: a datagram from the store's mesh
// address was sent by the store, and a NACK from the viewer's address by
// the viewer. Either side also checks the port and the session token the
// viewer drew, so datagrams of another session are never mixed in. The
// store sends only while the grant holds, exactly as on the stream.
//
// Datagrams (big endian):
//
//	magic 0xC7, version 1, type, flags, token [8]
//	data:  seq u32, frame u32, frag u16, frags u16, time i64, payload
//	       (flags: dgKey; dgResend; dgOld, a frame already old when sent,
//	       from the GOP a new view starts with; dgH265, an H.265 frame,
//	       else H.264; one frame's fragments have consecutive sequence
//	       numbers)
//	nack:  count u16, seq u32 × count      (viewer → store)
//	ping:  time i64 (viewer → store); pong: the same time (store → viewer)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/media/h264"
)

const (
	dgMagic   = 0xC7
	dgVersion = 1

	dgData = 1
	dgNack = 2
	dgPing = 3
	dgPong = 4

	dgKey    = 1 << 0
	dgResend = 1 << 1
	dgOld    = 1 << 2
	dgH265   = 1 << 3

	dgCommon     = 12 // magic, version, type, flags, token
	dgDataHeader = dgCommon + 20
	// dgMax keeps a datagram inside the mesh's MTU (1420, less IPv6 and
	// UDP headers) with room to spare, as QUIC's packets do.
	dgMax      = 1350
	dgPayload  = dgMax - dgDataHeader
	dgMaxNacks = (dgMax - dgCommon - 2) / 4
	// dgMaxFrags bounds one frame: the rpc's largest frame, 16 MiB.
	dgMaxFrags = (16<<20 + dgPayload - 1) / dgPayload
)

// giveUp bounds how late the viewer shows a frame: it gives up on a
// missing frame once a frame captured giveUp after it has arrived (or,
// for the old frames a view starts with, once it has blocked the rest for
// giveUp), and skips to the next keyframe. That leaves room for three NACK
// round trips at 100 ms RTT, and shows nothing later than giveUp plus one
// way's delay after its capture.
const giveUp = 400 * time.Millisecond

// oldAfter is how old a frame is when the store sends it for it to count
// as old (dgOld): the GOP a view starts with, not live.
const oldAfter = 250 * time.Millisecond

// The store keeps what it sent for resending at most this long and this
// much, and answers at most maxResend requests for one packet (seven
// copies: the first answer sends one, the later ones two). The viewer
// sends each NACK twice; a request within nackEcho of the last answered
// one is that copy, not a new request, and is ignored (the viewer asks
// again no sooner than 30 ms later).
const (
	histAge   = time.Second
	histBytes = 8 << 20
	maxResend = 4
	nackEcho  = 15 * time.Millisecond
)

// A token names one live view's datagrams.
type token [8]byte

// datagram is one parsed datagram.
type datagram struct {
	typ, flags  byte
	tok         token
	seq, frame  uint32
	frag, frags uint16
	time        int64 // data: capture time; ping/pong: the viewer's clock
	payload     []byte
	nacks       []uint32
}

var errNotDatagram = errors.New("not a live-view datagram")

// parseDatagram reads b; payload aliases b.
func parseDatagram(b []byte) (datagram, error) {
	var d datagram
	if len(b) < dgCommon || b[0] != dgMagic {
		return d, errNotDatagram
	}
	if b[1] != dgVersion {
		return d, fmt.Errorf("live-view datagram version %d, want %d", b[1], dgVersion)
	}
	d.typ, d.flags = b[2], b[3]
	copy(d.tok[:], b[4:12])
	rest := b[dgCommon:]
	switch d.typ {
	case dgData:
		if len(rest) < dgDataHeader-dgCommon {
			return d, errors.New("short data datagram")
		}
		if d.flags&^(dgKey|dgResend|dgOld|dgH265) != 0 {
			return d, fmt.Errorf("unknown flags %#x", d.flags)
		}
		d.seq = binary.BigEndian.Uint32(rest)
		d.frame = binary.BigEndian.Uint32(rest[4:])
		d.frag = binary.BigEndian.Uint16(rest[8:])
		d.frags = binary.BigEndian.Uint16(rest[10:])
		d.time = int64(binary.BigEndian.Uint64(rest[12:]))
		d.payload = rest[20:]
		if d.frags == 0 || d.frags > dgMaxFrags || d.frag >= d.frags {
			return d, fmt.Errorf("fragment %d of %d", d.frag, d.frags)
		}
		if len(d.payload) == 0 || len(d.payload) > dgPayload {
			return d, fmt.Errorf("payload of %d bytes", len(d.payload))
		}
	case dgNack:
		if len(rest) < 2 {
			return d, errors.New("short nack")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || n > dgMaxNacks || len(rest) != 2+4*n {
			return d, fmt.Errorf("nack of %d sequence numbers in %d bytes", n, len(rest))
		}
		d.nacks = make([]uint32, n)
		for i := range d.nacks {
			d.nacks[i] = binary.BigEndian.Uint32(rest[2+4*i:])
		}
	case dgPing, dgPong:
		if len(rest) != 8 {
			return d, errors.New("bad ping")
		}
		d.time = int64(binary.BigEndian.Uint64(rest))
	default:
		return d, fmt.Errorf("unknown datagram type %d", d.typ)
	}
	return d, nil
}

func appendCommon(b []byte, typ, flags byte, tok token) []byte {
	b = append(b, dgMagic, dgVersion, typ, flags)
	return append(b, tok[:]...)
}

// udpAddrPort is a net.Addr as a netip.AddrPort (invalid if it is not UDP).
func udpAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// sender is the store's side of one datagram live view.
type sender struct {
	pc  net.PacketConn
	to  netip.AddrPort
	dst net.Addr
	tok token
	now func() time.Time // the clock; tests run a virtual one

	stopped atomic.Bool

	mu     sync.Mutex
	seq    uint32
	frame  uint32
	hist   map[uint32]*sentPacket
	order  []uint32 // sequence numbers in hist, oldest first
	held   int      // bytes in hist
	resent uint64
}

type sentPacket struct {
	b        []byte
	at       time.Time
	tries    int
	answered time.Time // when the last request was answered
}

func newSender(pc net.PacketConn, to netip.AddrPort, tok token) *sender {
	return &sender{pc: pc, to: to, dst: net.UDPAddrFromAddrPort(to), tok: tok, now: time.Now, hist: make(map[uint32]*sentPacket)}
}

// send cuts one frame into datagrams and sends them. A failed write of one
// datagram is for the viewer's NACK to mend; only a closed socket fails.
func (s *sender) send(t time.Time, key, old bool, data []byte, codec h264.Codec) error {
	if len(data) == 0 {
		return nil
	}
	frags := (len(data) + dgPayload - 1) / dgPayload
	if frags > dgMaxFrags {
		return fmt.Errorf("a frame of %d bytes is too large for live view", len(data))
	}
	var flags byte
	if key {
		flags = dgKey
	}
	if old {
		flags |= dgOld
	}
	if codec == h264.CodecH265 {
		flags |= dgH265
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	frame := s.frame
	s.frame++
	for i := range frags {
		chunk := data[i*dgPayload : min(len(data), (i+1)*dgPayload)]
		b := make([]byte, 0, dgDataHeader+len(chunk))
		b = appendCommon(b, dgData, flags, s.tok)
		b = binary.BigEndian.AppendUint32(b, s.seq)
		b = binary.BigEndian.AppendUint32(b, frame)
		b = binary.BigEndian.AppendUint16(b, uint16(i))
		b = binary.BigEndian.AppendUint16(b, uint16(frags))
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
		b = append(b, chunk...)
		if _, err := s.pc.WriteTo(b, s.dst); errors.Is(err, net.ErrClosed) {
			return err
		}
		s.hist[s.seq] = &sentPacket{b: b, at: now}
		s.order = append(s.order, s.seq)
		s.held += len(b)
		s.seq++
	}
	s.prune(now)
	return nil
}

// prune forgets what is too old or too much to resend.
func (s *sender) prune(now time.Time) {
	drop := 0
	for drop < len(s.order) {
		p := s.hist[s.order[drop]]
		if now.Sub(p.at) < histAge && s.held <= histBytes {
			break
		}
		s.held -= len(p.b)
		delete(s.hist, s.order[drop])
		drop++
	}
	if drop > 0 {
		s.order = append(s.order[:0], s.order[drop:]...)
	}
}

// serve answers the viewer's NACKs and pings until stop.
func (s *sender) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if s.stopped.Load() || !isTimeout(err) {
				return
			}
			continue
		}
		if udpAddrPort(from) != s.to {
			continue // only the viewer's own socket may ask
		}
		d, err := parseDatagram(buf[:n])
		if err != nil || d.tok != s.tok {
			continue
		}
		switch d.typ {
		case dgNack:
			s.resend(d.nacks)
		case dgPing:
			b := appendCommon(make([]byte, 0, dgCommon+8), dgPong, 0, s.tok)
			s.pc.WriteTo(binary.BigEndian.AppendUint64(b, uint64(d.time)), s.dst)
		}
	}
}

// resend sends again what the viewer lacks and this side still holds. A
// packet asked for again went missing twice, so it goes twice: a frame
// then waits a round trip less often, for a packet more in a hundred.
func (s *sender) resend(seqs []uint32) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		p := s.hist[q]
		if p == nil || p.tries >= maxResend || p.tries > 0 && now.Sub(p.answered) < nackEcho {
			continue
		}
		p.tries++
		p.answered = now
		p.b[3] |= dgResend
		for range min(p.tries, 2) {
			s.pc.WriteTo(p.b, s.dst)
			s.resent++
		}
	}
}

// stop ends serve and closes the socket. A netstack socket's Close does
// not wake a blocked read; a deadline in the past does.
func (s *sender) stop() {
	s.stopped.Store(true)
	s.pc.SetReadDeadline(time.Now())
	s.pc.Close()
}

// isTimeout reports a read deadline's error, whichever stack made it.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *sender) resends() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resent
}

// assembler is the viewer's side: it puts fragments together, hands out
// whole frames in order, decides what to ask for again and when to give up
// on a frame. It does no I/O, so tests drive it with any loss and clock.
type assembler struct {
	frames   map[uint32]*partial
	started  bool
	next     uint32 // the next frame to hand out
	maxFrame uint32 // the newest frame seen
	needKey  bool   // after a frame was given up (and at the start)
	blocked  time.Time
	newest   int64 // the latest capture time seen
	shown    bool  // a frame was handed out: last and lastTime are set
	last     uint32
	lastTime int64

	seqStarted bool
	highSeq    uint32
	missing    map[uint32]*missing
	held       int // payload bytes in frames

	srtt time.Duration

	lost uint64
}

type partial struct {
	time     int64
	key, old bool
	codec    h264.Codec
	frags    [][]byte
	have     int
}

type missing struct {
	since, nextNack time.Time
}

// assemblerHeld bounds the bytes the viewer buffers: a frame it waits for
// plus what arrived behind it. Past it everything held is given up.
const assemblerHeld = 48 << 20

// maxAhead bounds how far past the next frame a datagram may point (about
// 40 s at 25 fps); such a datagram is dropped.
const maxAhead = 1024

func newAssembler() *assembler {
	return &assembler{frames: make(map[uint32]*partial), missing: make(map[uint32]*missing), needKey: true}
}

// after reports a > b in sequence space (wrapping).
func after(a, b uint32) bool { return int32(a-b) > 0 }

// add takes one data datagram received at now.
func (a *assembler) add(d datagram, now time.Time) {
	// Sequence numbers first: a gap is packets to ask for again.
	switch {
	case !a.seqStarted:
		a.seqStarted, a.highSeq = true, d.seq
	case after(d.seq, a.highSeq):
		from := a.highSeq + 1
		if d.seq-from > 2*dgMaxNacks {
			from = d.seq - 2*dgMaxNacks // a longer gap is past saving
		}
		for q := from; q != d.seq; q++ {
			a.missing[q] = &missing{since: now, nextNack: now}
		}
		a.highSeq = d.seq
	default:
		delete(a.missing, d.seq)
	}

	if !a.started {
		a.started, a.next, a.maxFrame = true, d.frame, d.frame
	}
	if after(a.next, d.frame) || d.frame-a.next >= maxAhead {
		return // handed out or given up already, or nonsense
	}
	if after(d.frame, a.maxFrame) {
		a.maxFrame = d.frame
	}
	p := a.frames[d.frame]
	if p == nil {
		p = &partial{time: d.time, key: d.flags&dgKey != 0, old: d.flags&dgOld != 0, codec: dgCodec(d.flags), frags: make([][]byte, d.frags)}
		a.frames[d.frame] = p
	}
	if len(p.frags) != int(d.frags) || p.time != d.time || p.key != (d.flags&dgKey != 0) || p.old != (d.flags&dgOld != 0) || p.codec != dgCodec(d.flags) || p.frags[d.frag] != nil {
		return // inconsistent with what came before, or a duplicate
	}
	a.newest = max(a.newest, d.time)
	p.frags[d.frag] = append([]byte(nil), d.payload...)
	p.have++
	a.held += len(d.payload)
	if a.held > assemblerHeld {
		a.giveUpAll()
	}
}

// giveUpAll drops everything held; the view resumes at the next keyframe.
func (a *assembler) giveUpAll() {
	a.lost += uint64(a.maxFrame - a.next + 1)
	clear(a.frames)
	a.held = 0
	a.next = a.maxFrame + 1
	a.needKey = true
	a.blocked = time.Time{}
}

// outFrame is one whole frame.
type outFrame struct {
	frame uint32
	time  int64
	key   bool
	codec h264.Codec
	data  []byte
}

// dgCodec is the codec a data datagram's flags name.
func dgCodec(flags byte) h264.Codec {
	if flags&dgH265 != 0 {
		return h264.CodecH265
	}
	return h264.CodecH264
}

// pop hands out the frames that are whole and next in order, giving up on
// one that is too late (giveUp).
func (a *assembler) pop(now time.Time) []outFrame {
	var out []outFrame
	for a.started {
		if a.needKey {
			k, ok := a.nextKey()
			if !ok {
				return out
			}
			a.drop(k)
			a.needKey = false
		}
		p := a.frames[a.next]
		if p != nil && p.have == len(p.frags) {
			out = append(out, outFrame{frame: a.next, time: p.time, key: p.key, codec: p.codec, data: p.join()})
			a.held -= p.size()
			delete(a.frames, a.next)
			a.shown, a.last, a.lastTime = true, a.next, p.time
			a.next++
			a.blocked = time.Time{}
			continue
		}
		if !after(a.maxFrame, a.next) {
			return out // nothing behind it yet: not late
		}
		if a.blocked.IsZero() {
			a.blocked = now
		}
		if !a.late(p, now) {
			return out
		}
		a.drop(a.next + 1)
		a.needKey = true
	}
	return out
}

// late reports whether the next frame (p, nil if none of it arrived) is
// past saving. A live frame is, once a frame captured giveUp after it has
// arrived: were it shown now it would be more than giveUp behind. Its
// capture time is its own, or, if nothing of it arrived, the earliest it
// can be (frames are numbered in capture order, so it lies between the
// last shown and the next that arrived). The old frames a view starts
// with are judged by how long they have blocked the rest.
func (a *assembler) late(p *partial, now time.Time) bool {
	var at int64
	old := false
	switch {
	case p != nil:
		at, old = p.time, p.old
	default:
		after := a.frames[a.next+1]
		old = after != nil && after.old
		if a.shown && a.last+1 == a.next {
			at = a.lastTime
		} else {
			old = true // nothing to go by but the wait
		}
	}
	if !old {
		return a.newest-at > int64(giveUp)
	}
	return now.Sub(a.blocked) >= giveUp
}

// nextKey is the first frame from next on known to be a keyframe.
func (a *assembler) nextKey() (uint32, bool) {
	best, ok := uint32(0), false
	for f, p := range a.frames {
		if p.key && (!ok || after(best, f)) {
			best, ok = f, true
		}
	}
	return best, ok
}

// drop gives up every frame before k.
func (a *assembler) drop(k uint32) {
	for f := a.next; f != k; f++ {
		if p := a.frames[f]; p != nil {
			a.held -= p.size()
			delete(a.frames, f)
		}
		a.lost++
	}
	a.next = k
	a.blocked = time.Time{}
}

func (p *partial) size() int {
	n := 0
	for _, f := range p.frags {
		n += len(f)
	}
	return n
}

func (p *partial) join() []byte {
	b := make([]byte, 0, p.size())
	for _, f := range p.frags {
		b = append(b, f...)
	}
	return b
}

// rto is how long the viewer waits for a resent packet before it asks
// again: a round trip and a little once it has measured one (asking twice
// costs a packet; asking late costs the frame).
func (a *assembler) rto() time.Duration {
	if a.srtt == 0 {
		return 150 * time.Millisecond
	}
	return max(a.srtt+20*time.Millisecond, 30*time.Millisecond)
}

// sample takes one round-trip measurement.
func (a *assembler) sample(rtt time.Duration) {
	if rtt <= 0 || rtt > 10*time.Second {
		return
	}
	if a.srtt == 0 {
		a.srtt = rtt
		return
	}
	a.srtt += (rtt - a.srtt) / 8
}

// nacks are the sequence numbers to ask for now, oldest first; packets
// missing for longer than giveUp are no longer asked for.
func (a *assembler) nacks(now time.Time) []uint32 {
	var out []uint32
	for q, m := range a.missing {
		if now.Sub(m.since) >= giveUp {
			delete(a.missing, q)
			continue
		}
		if !now.Before(m.nextNack) {
			out = append(out, q)
			m.nextNack = now.Add(a.rto())
		}
	}
	sort.Slice(out, func(i, j int) bool { return after(out[j], out[i]) })
	return out
}

// appendNacks encodes seqs as NACK datagrams of at most dgMaxNacks each.
func appendNacks(tok token, seqs []uint32) [][]byte {
	var out [][]byte
	for len(seqs) > 0 {
		n := min(len(seqs), dgMaxNacks)
		b := appendCommon(make([]byte, 0, dgCommon+2+4*n), dgNack, 0, tok)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		for _, q := range seqs[:n] {
			b = binary.BigEndian.AppendUint32(b, q)
		}
		out = append(out, b)
		seqs = seqs[n:]
	}
	return out
}
