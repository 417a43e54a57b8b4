package mesh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/custos-cctv/custos/keys"
)

// superSegment builds what gVisor's TCP hands a host-GSO link: one IPv6 and
// TCP header (12 bytes of options) over the whole payload, the checksum
// field holding only the pseudo-header's sum.
func superSegment(t testing.TB, seq uint32, flags header.TCPFlags, payload []byte) []byte {
	t.Helper()
	const thLen = header.TCPMinimumSize + 12
	p := make([]byte, header.IPv6MinimumSize+thLen+len(payload))
	src := tcpip.AddrFrom16Slice(netip.MustParseAddr("fd00::1").AsSlice())
	dst := tcpip.AddrFrom16Slice(netip.MustParseAddr("fd00::2").AsSlice())
	header.IPv6(p).Encode(&header.IPv6Fields{PayloadLength: uint16(thLen + len(payload)), TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	th := header.TCP(p[header.IPv6MinimumSize:])
	th.Encode(&header.TCPFields{SrcPort: 1000, DstPort: 80, SeqNum: seq, AckNum: 7, DataOffset: thLen, Flags: flags, WindowSize: 512})
	copy(th[header.TCPMinimumSize:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP timestamps
	copy(p[header.IPv6MinimumSize+thLen:], payload)
	th.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(thLen+len(payload))))
	return p
}

func batch(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// checkSegments checks packets cut from superSegment(seq, flags, payload)
// and returns their payloads joined.
func checkSegments(t *testing.T, pkts [][]byte, seq uint32, flags header.TCPFlags, mss int) []byte {
	t.Helper()
	var joined []byte
	for i, p := range pkts {
		ip := header.IPv6(p)
		if int(ip.PayloadLength())+header.IPv6MinimumSize != len(p) {
			t.Fatalf("segment %d: IPv6 payload length %d in a %d-byte packet", i, ip.PayloadLength(), len(p))
		}
		if !transportChecksumOK(p) {
			t.Fatalf("segment %d: wrong TCP checksum", i)
		}
		th := header.TCP(ip.Payload())
		data := th.Payload()
		if len(data) > mss || (i < len(pkts)-1 && len(data) != mss) {
			t.Fatalf("segment %d carries %d bytes, mss %d", i, len(data), mss)
		}
		if got, want := th.SequenceNumber(), seq+uint32(len(joined)); got != want {
			t.Fatalf("segment %d: seq %d, want %d", i, got, want)
		}
		want := flags
		if i != len(pkts)-1 {
			want &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if i != 0 {
			want &^= header.TCPFlagCwr
		}
		if th.Flags() != want {
			t.Fatalf("segment %d: flags %v, want %v", i, th.Flags(), want)
		}
		if th.DataOffset() != header.TCPMinimumSize+12 || th.AckNumber() != 7 || th.WindowSize() != 512 {
			t.Fatalf("segment %d: header not carried over: %v", i, th)
		}
		joined = append(joined, data...)
	}
	return joined
}

// A super-segment becomes MSS-sized packets with their own lengths,
// sequence numbers (across the 32-bit wrap) and full checksums; FIN and PSH
// on the last one only, CWR on the first only; the payload intact, whether
// the batch takes it at once or in several reads.
func TestSegmentTCPv6(t *testing.T) {
	const mss, offset = 1368, 16
	flags := header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin | header.TCPFlagCwr
	for _, size := range []int{0, 1, mss - 1, mss, mss + 1, 5000, 48 * mss, gsoMaxSize - 40 - 32} {
		payload := make([]byte, size)
		rand.Read(payload)
		seq := uint32(0xffffffff - 3000)
		p := superSegment(t, seq, flags, payload)
		for _, batchLen := range []int{128, 3, 1} {
			bufs, sizes := batch(batchLen, 1500)
			var pkts [][]byte
			next, done := 0, false
			for reads := 0; !done; reads++ {
				if reads > 100 {
					t.Fatalf("size %d, batch %d: not done after 100 reads", size, batchLen)
				}
				var n int
				n, next, done = segmentTCPv6(p, mss, next, bufs, sizes, offset)
				if n == 0 {
					t.Fatalf("size %d, batch %d: no progress", size, batchLen)
				}
				for i := range n {
					pkts = append(pkts, bytes.Clone(bufs[i][offset:offset+sizes[i]]))
				}
			}
			if want := max(1, (size+mss-1)/mss); len(pkts) != want {
				t.Fatalf("size %d, batch %d: %d segments, want %d", size, batchLen, len(pkts), want)
			}
			if got := checkSegments(t, pkts, seq, flags, mss); !bytes.Equal(got, payload) {
				t.Fatalf("size %d, batch %d: payload changed", size, batchLen)
			}
		}
	}
}

// The receive side checks what gVisor no longer checks: a TCP or UDP
// checksum that is wrong, or a zero UDP checksum, is refused.
func TestTransportChecksum(t *testing.T) {
	p := superSegment(t, 1, header.TCPFlagAck, []byte("some payload"))
	bufs, sizes := batch(1, 1500)
	segmentTCPv6(p, 1000, 0, bufs, sizes, 0)
	good := bufs[0][:sizes[0]]
	if !transportChecksumOK(good) {
		t.Fatal("a correct TCP segment refused")
	}
	for i := header.IPv6MinimumSize; i < len(good); i++ {
		bad := bytes.Clone(good)
		bad[i] ^= 0x40
		if transportChecksumOK(bad) {
			t.Fatalf("a TCP segment with byte %d changed passed", i)
		}
	}
	udp := make([]byte, header.IPv6MinimumSize+header.UDPMinimumSize+4)
	src := tcpip.AddrFrom16Slice(netip.MustParseAddr("fd00::1").AsSlice())
	dst := tcpip.AddrFrom16Slice(netip.MustParseAddr("fd00::2").AsSlice())
	header.IPv6(udp).Encode(&header.IPv6Fields{PayloadLength: header.UDPMinimumSize + 4, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	u := header.UDP(udp[header.IPv6MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: header.UDPMinimumSize + 4})
	copy(u.Payload(), "ping")
	if transportChecksumOK(udp) {
		t.Fatal("a zero UDP checksum passed")
	}
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, u.Length())
	sum = checksum.Checksum(u.Payload(), sum)
	u.SetChecksum(^u.CalculateChecksum(sum))
	if !transportChecksumOK(udp) {
		t.Fatal("a correct UDP datagram refused")
	}
	udp[len(udp)-1] ^= 1
	if transportChecksumOK(udp) {
		t.Fatal("a changed UDP datagram passed")
	}
}

// The link hands wireguard-go whole batches in order: super-segments are
// cut, a packet that does not fit the rest of a batch continues in the
// next, and a plain packet passes as it is.
func TestLinkReadBatches(t *testing.T) {
	const mss = 1368
	done := make(chan struct{})
	l := newLink(1420, done)
	var want [][]byte
	send := func(p []byte, gso bool) {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		if gso {
			pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv6, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: mss, L3HdrLen: header.IPv6MinimumSize}
		}
		var list stack.PacketBufferList
		list.PushBack(pkt)
		if n, err := l.WritePackets(list); n != 1 || err != nil {
			t.Fatalf("WritePackets: %d, %v", n, err)
		}
		pkt.DecRef()
	}
	seq := uint32(100)
	for _, size := range []int{40 * mss, 40 * mss, 10} {
		payload := make([]byte, size)
		rand.Read(payload)
		p := superSegment(t, seq, header.TCPFlagAck, payload)
		send(p, true)
		bufs, sizes := batch(64, 1500)
		n, _, _ := segmentTCPv6(p, mss, 0, bufs, sizes, 0)
		for i := range n {
			want = append(want, bufs[i][:sizes[i]])
		}
		seq += uint32(size)
	}
	plain := []byte{0x60, 0, 0, 0, 0, 0, 58, 64} // an ICMPv6 packet's first bytes, as a stand-in
	send(plain, false)
	want = append(want, plain)

	var got [][]byte
	var counts []int
	for len(got) < len(want) {
		bufs, sizes := batch(64, 1500)
		n, ok := l.read(bufs, sizes, 16)
		if !ok || n == 0 {
			t.Fatalf("read: %d, %v after %d packets", n, ok, len(got))
		}
		counts = append(counts, n)
		for i := range n {
			got = append(got, bufs[i][16:16+sizes[i]])
		}
	}
	if counts[0] != 64 || counts[1] != 18 {
		t.Errorf("batches of %v, want 64 (40 and 24 of 40) then 18 (16, the short one, the plain one)", counts)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
	close(done)
	if n, ok := l.read(make([][]byte, 1), make([]int, 1), 0); ok || n != 0 {
		t.Fatalf("read after close: %d, %v", n, ok)
	}
	var list stack.PacketBufferList
	list.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(plain)}))
	if _, err := l.WritePackets(list); err == nil {
		t.Fatal("WritePackets after close did not fail")
	}
	list.DecRef()
}

// lossyBind drops a share of the packets it receives, at random: both
// ends have one, so each way loses that share.
type lossyBind struct {
	conn.Bind
	permille atomic.Int32
}

func (b *lossyBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	return dropReceived(fns, func([]byte) bool { return mrand.IntN(1000) < int(b.permille.Load()) }), p, err
}

// Bulk TCP both ways at once, clean and with 1 % loss each way, arrives
// byte for byte: segmentation, GRO and retransmission of cut segments
// together lose, reorder and change nothing.
func TestBulkTCPIntact(t *testing.T) {
	checkLeaks(t)
	for _, permille := range []int32{0, 10} {
		mk := func(name string) *Mesh {
			bind := &lossyBind{Bind: newUDPBind()}
			bind.permille.Store(permille)
			m, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, Name: name, NoGossip: true, Bind: bind})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			return m
		}
		a, b := mk("a"), mk("b")
		connectAll(t, map[string]*Mesh{"a": a, "b": b})
		size := 24 << 20
		if permille > 0 {
			size = 6 << 20
		}
		var wg sync.WaitGroup
		for i, dir := range [][2]*Mesh{{a, b}, {b, a}} {
			port := uint16(6000 + i)
			from, to := dir[0], dir[1]
			ln, err := to.ListenTCP(port)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			payload := make([]byte, size)
			rand.Read(payload)
			want := sha256.Sum256(payload)
			wg.Add(2)
			go func() {
				defer wg.Done()
				c, err := ln.Accept()
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(2 * time.Minute))
				h := sha256.New()
				n, err := io.Copy(h, c)
				if err != nil || n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
					t.Errorf("loss %d‰, port %d: received %d of %d bytes (%v), intact %v", permille, port, n, size, err, bytes.Equal(h.Sum(nil), want[:]))
				}
			}()
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				c, err := from.DialTCP(ctx, netip.AddrPortFrom(to.Addr(), port))
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
				// Odd-sized writes, so segments do not line up with them.
				for off := 0; off < len(payload); {
					k := min(len(payload)-off, 1+mrand.IntN(200<<10))
					if _, err := c.Write(payload[off : off+k]); err != nil {
						t.Error(err)
						return
					}
					off += k
				}
			}()
		}
		wg.Wait()
		var bad uint64
		for _, m := range []*Mesh{a, b} {
			bad += m.BadChecksums()
		}
		if bad != 0 {
			t.Errorf("loss %d‰: %d packets with a wrong checksum", permille, bad)
		}
	}
}

// Whatever an authenticated peer sends (WireGuard proves who, not what),
// the link's receive path checks and hands it to gVisor without a panic;
// and the segmenter, fed anything, writes only within its buffers.
func FuzzLinkWrite(f *testing.F) {
	seg := superSegment(f, 7, header.TCPFlagAck|header.TCPFlagPsh, []byte("payload of a segment"))
	f.Add(seg, uint16(8))
	f.Add(seg[:45], uint16(1))
	f.Add([]byte{0x60, 0, 0, 0, 0xff, 0xff, 17, 64}, uint16(1360))
	tn, err := newNetTUN(netip.MustParseAddr("fd00::2"), 1420)
	if err != nil {
		f.Fatal(err)
	}
	// wireguard-go's side: read what gVisor answers (resets, ICMP), or
	// its senders would wait for ever.
	read := make(chan struct{})
	go func() {
		defer close(read)
		bufs, sizes := batch(128, 1500)
		for {
			if _, err := tn.Read(bufs, sizes, 0); err != nil {
				return
			}
		}
	}()
	f.Cleanup(func() { tn.Close(); <-read })
	f.Fuzz(func(t *testing.T, p []byte, mss uint16) {
		const offset = 16
		in := append(make([]byte, offset), p...)
		if _, err := tn.Write([][]byte{in, in}, offset); err != nil {
			t.Fatal(err)
		}
		transportChecksumOK(p)
		bufs, sizes := batch(4, 1500)
		n, next, _ := segmentTCPv6(p, int(mss), 0, bufs, sizes, offset)
		if n > len(bufs) || next < 0 {
			t.Fatalf("wrote %d packets into %d buffers, next %d", n, len(bufs), next)
		}
	})
}
