package mesh

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// link is the NIC between gVisor and WireGuard, and the reason the mesh
// moves bulk TCP at all quickly. gVisor's TCP hands it super-segments of up
// to 64 KiB (host GSO: the segmentation is ours), which Read cuts into MSS
// sized packets straight into wireguard-go's batch, so one Read fills up to
// conn.IdealBatchSize packets and wireguard-go encrypts and sends them as a
// batch (the bind then uses UDP GSO). The other way, Write receives the
// batch wireguard-go decrypted and gives it to gVisor through GRO, which
// joins consecutive segments of one flow before TCP sees them.
// gvisor's channel.Endpoint, which the upstream tun/netstack uses, does
// neither: one packet per call each way.
type link struct {
	mtu      uint32
	outbound chan *stack.PacketBuffer // what gVisor sends, for Read
	done     <-chan struct{}          // closed when the device closes

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	// pending is a packet Read took but could not fit into the batch it
	// was filling; only Read (wireguard-go's one TUN reader) touches it.
	pending     *buffer.View
	pendingGSO  stack.GSO
	pendingNext int // the first segment not yet handed out

	badChecksum atomic.Uint64 // packets from peers whose TCP/UDP checksum was wrong
}

// gsoMaxSize bounds a super-segment: an IPv6 payload length field's worth.
// At the mesh's MTU that is at most 49 segments, so one always fits an
// empty batch of conn.IdealBatchSize (128).
const gsoMaxSize = 1<<16 - 1

var (
	_ stack.LinkEndpoint = (*link)(nil)
	_ stack.GSOEndpoint  = (*link)(nil)
)

func newLink(mtu uint32, done <-chan struct{}) *link {
	return &link{mtu: mtu, outbound: make(chan *stack.PacketBuffer, 512), done: done}
}

func (l *link) MTU() uint32                             { return l.mtu }
func (l *link) SetMTU(mtu uint32)                       {}
func (l *link) MaxHeaderLength() uint16                 { return 0 }
func (l *link) LinkAddress() tcpip.LinkAddress          { return "" }
func (l *link) SetLinkAddress(tcpip.LinkAddress)        {}
func (l *link) Wait()                                   {}
func (l *link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (l *link) AddHeader(*stack.PacketBuffer)           {}
func (l *link) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (l *link) SetOnCloseAction(func())                 {}
func (l *link) GSOMaxSize() uint32                      { return gsoMaxSize }
func (l *link) SupportedGSO() stack.SupportedGSO        { return stack.HostGSOSupported }

// Capabilities: receive checksums are checked here (Write), because GRO
// joins segments without recomputing theirs.
func (l *link) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

func (l *link) Close() {
	l.Attach(nil)
}

// WritePackets queues what gVisor sends. It blocks while wireguard-go is
// behind, which is TCP's back-pressure, and gives up once the device closes.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		select {
		case <-l.done: // first: select picks at random among ready cases
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		default:
		}
		select {
		case l.outbound <- pkt.IncRef():
			n++
		case <-l.done:
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		}
	}
	return n, nil
}

// read fills bufs (each from offset) with packets gVisor sent, cutting
// super-segments into MSS-sized ones, and returns how many it wrote. It
// blocks for the first packet only; ok is false once the device closed.
func (l *link) read(bufs [][]byte, sizes []int, offset int) (n int, ok bool) {
	if l.pending == nil {
		select {
		case pkt := <-l.outbound:
			l.take(pkt)
		case <-l.done:
			return 0, false
		}
	}
	for {
		n += l.emit(bufs[n:], sizes[n:], offset)
		if l.pending != nil || n == len(bufs) {
			return n, true // the batch is full
		}
		select {
		case pkt := <-l.outbound:
			l.take(pkt)
		default:
			return n, true
		}
	}
}

func (l *link) take(pkt *stack.PacketBuffer) {
	l.pending = pkt.ToView()
	l.pendingGSO = pkt.GSOOptions
	l.pendingNext = 0
	pkt.DecRef()
}

// emit writes as much of the pending packet as fits into bufs and returns
// the number of packets written; the pending packet is released once all
// of it is out.
func (l *link) emit(bufs [][]byte, sizes []int, offset int) int {
	p := l.pending.AsSlice()
	if l.pendingGSO.Type != stack.GSOTCPv6 {
		if len(bufs) == 0 {
			return 0
		}
		sizes[0] = copy(bufs[0][offset:], p)
		l.release()
		return 1
	}
	n, next, done := segmentTCPv6(p, int(l.pendingGSO.MSS), l.pendingNext, bufs, sizes, offset)
	l.pendingNext = next
	if done {
		l.release()
	}
	return n
}

func (l *link) release() {
	l.pending.Release()
	l.pending = nil
}

// segmentTCPv6 cuts a TCP-over-IPv6 super-segment (gVisor's host GSO: one
// IPv6 and TCP header, up to 64 KiB of payload, the TCP checksum holding
// only the pseudo-header's sum) into packets of at most mss payload bytes,
// from segment first on, as Linux's TCP segmentation offload would: each
// gets its own payload length, sequence number and full checksum; FIN and
// PSH stay on the last only, CWR on the first only. It returns how many
// packets it wrote, the next segment to write and whether that was all.
// A packet too short for its headers is passed on unchanged: gVisor never
// makes one, and the peer's stack would drop it.
func segmentTCPv6(p []byte, mss, first int, bufs [][]byte, sizes []int, offset int) (n, next int, done bool) {
	const ipLen = header.IPv6MinimumSize
	if len(p) < ipLen+header.TCPMinimumSize || mss <= 0 {
		if len(bufs) == 0 {
			return 0, first, false
		}
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, 0, true
	}
	thLen := int(p[ipLen+12]>>4) * 4
	hdrLen := ipLen + thLen
	if thLen < header.TCPMinimumSize || hdrLen > len(p) {
		if len(bufs) == 0 {
			return 0, first, false
		}
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, 0, true
	}
	payload := p[hdrLen:]
	segs := max(1, (len(payload)+mss-1)/mss)
	seq := binary.BigEndian.Uint32(p[ipLen+4:])
	flags := p[ipLen+13]
	src := tcpip.AddrFrom16Slice(p[8:24])
	dst := tcpip.AddrFrom16Slice(p[24:40])
	for i := first; i < segs; i++ {
		if n == len(bufs) {
			return n, i, false
		}
		start := i * mss
		end := min(start+mss, len(payload))
		out := bufs[n][offset:]
		copy(out, p[:hdrLen])
		segLen := copy(out[hdrLen:], payload[start:end])
		binary.BigEndian.PutUint16(out[4:], uint16(thLen+segLen))
		th := out[ipLen:]
		binary.BigEndian.PutUint32(th[4:], seq+uint32(start))
		f := flags
		if i != segs-1 {
			f &^= uint8(header.TCPFlagFin | header.TCPFlagPsh)
		}
		if i != 0 {
			f &^= uint8(header.TCPFlagCwr)
		}
		th[13] = f
		th[16], th[17] = 0, 0
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(thLen+segLen))
		sum = checksum.Checksum(th[:thLen+segLen], sum)
		binary.BigEndian.PutUint16(th[16:], ^sum)
		sizes[n] = hdrLen + segLen
		n++
	}
	return n, segs, true
}

// write gives gVisor the packets wireguard-go decrypted, one batch through
// one GRO so that consecutive TCP segments arrive joined.
func (l *link) write(bufs [][]byte, offset int) {
	l.mu.RLock()
	d := l.dispatcher
	l.mu.RUnlock()
	if d == nil {
		return
	}
	g := groPool.Get().(*gro.GRO)
	g.Dispatcher = d
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 || p[0]>>4 != 6 {
			continue // not IPv6: nothing in the mesh sends it
		}
		if !transportChecksumOK(p) {
			l.badChecksum.Add(1)
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
		pkt.RXChecksumValidated = true
		g.Enqueue(pkt)
		pkt.DecRef()
	}
	g.Flush()
	g.Dispatcher = nil
	groPool.Put(g)
}

var groPool = sync.Pool{New: func() any {
	g := new(gro.GRO)
	g.Init(true)
	return g
}}

// transportChecksumOK checks the TCP or UDP checksum of an IPv6 packet whose
// next header is TCP or UDP; the link claims receive checksum offload, so
// gVisor no longer does. WireGuard's AEAD already proves the bytes are what
// the peer sent; this catches a peer's own broken packets, as gVisor would.
// Other packets (ICMPv6, whose checksum gVisor always checks, extension
// headers, fragments) pass to gVisor unchanged, and a malformed one is
// gVisor's to drop.
func transportChecksumOK(p []byte) bool {
	const ipLen = header.IPv6MinimumSize
	if len(p) < ipLen {
		return true
	}
	proto := tcpip.TransportProtocolNumber(p[6])
	if proto != header.TCPProtocolNumber && proto != header.UDPProtocolNumber {
		return true
	}
	plen := int(binary.BigEndian.Uint16(p[4:]))
	if ipLen+plen > len(p) {
		return true // gVisor drops a truncated packet
	}
	tp := p[ipLen : ipLen+plen]
	if proto == header.UDPProtocolNumber && len(tp) >= header.UDPMinimumSize && binary.BigEndian.Uint16(tp[6:]) == 0 {
		return false // a zero UDP checksum is invalid over IPv6 (RFC 8200 §8.1)
	}
	sum := header.PseudoHeaderChecksum(proto, tcpip.AddrFrom16Slice(p[8:24]), tcpip.AddrFrom16Slice(p[24:40]), uint16(plen))
	return checksum.Checksum(tp, sum) == 0xffff
}

// drain releases what gVisor queued and nobody will read, once the stack
// has stopped.
func (l *link) drain() {
	for {
		select {
		case pkt := <-l.outbound:
			pkt.DecRef()
		default:
			return
		}
	}
}
