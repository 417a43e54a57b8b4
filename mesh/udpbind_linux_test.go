//go:build linux

package mesh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// openTestBind opens a udpBind on a random port with GRO as given and
// closes it at the end of the test.
func openTestBind(t *testing.T, gro bool) (*udpBind, []conn.ReceiveFunc, uint16) {
	t.Helper()
	old := udpGRO.Load()
	udpGRO.Store(gro)
	defer udpGRO.Store(old)
	b := newUDPBind().(*udpBind)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		t.Fatal("Open(0) returned port 0")
	}
	t.Cleanup(func() { b.Close() })
	return b, fns, port
}

// received is one datagram a test read.
type received struct {
	data []byte
	ep   conn.Endpoint
}

// receiveN reads until it has n datagrams (with a batch of batch buffers),
// failing the test after 10s.
func receiveN(t *testing.T, fn conn.ReceiveFunc, n, batch int) ([]received, int) {
	t.Helper()
	type result struct {
		got   []received
		calls int
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		bufs := make([][]byte, batch)
		for i := range bufs {
			bufs[i] = make([]byte, 1<<16-1)
		}
		sizes, eps := make([]int, batch), make([]conn.Endpoint, batch)
		for len(r.got) < n {
			k, err := fn(bufs, sizes, eps)
			r.calls++
			if err != nil {
				r.err = err
				break
			}
			for i := range k {
				if sizes[i] == 0 {
					continue
				}
				r.got = append(r.got, received{bytes.Clone(bufs[i][:sizes[i]]), eps[i]})
			}
		}
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("receive after %d datagrams: %v", len(r.got), r.err)
		}
		return r.got, r.calls
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %d datagrams", n)
		return nil, 0
	}
}

// testPayload is datagram i of a test: its index, then filler up to size.
func testPayload(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < size; j++ {
		b[j] = byte(i + j)
	}
	return b
}

// TestUDPBindBatch sends batches (GSO-coalesced where the sizes allow) and
// checks every datagram arrives once, in order, whole, from the sender's
// address, with and without GRO on the receiver.
func TestUDPBindBatch(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			a, _, aport := openTestBind(t, gro)
			_, bfns, bport := openTestBind(t, gro)
			ep, err := a.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bport).String())
			if err != nil {
				t.Fatal(err)
			}
			// Runs of equal sizes (coalesced), a shorter tail (ends a run),
			// a longer one (starts the next), a batch larger than the bind's.
			var sizes []int
			for i := range 300 {
				switch {
				case i%50 == 49:
					sizes = append(sizes, 200)
				case i%50 < 30:
					sizes = append(sizes, 1200)
				default:
					sizes = append(sizes, 1400)
				}
			}
			const batch = 150
			var want [][]byte
			for start := 0; start < len(sizes); start += batch {
				var bufs [][]byte
				for i := start; i < min(start+batch, len(sizes)); i++ {
					bufs = append(bufs, testPayload(i, sizes[i]))
				}
				want = append(want, bufs...)
				if err := a.Send(bufs, ep); err != nil && !errors.As(err, new(conn.ErrUDPGSODisabled)) {
					t.Fatal(err)
				}
				// Let the receiver's socket buffer drain, so loss on a busy
				// machine cannot fail the test.
				got, _ := receiveN(t, bfns[0], len(bufs), conn.IdealBatchSize)
				for k, g := range got {
					if !bytes.Equal(g.data, bufs[k]) {
						t.Fatalf("datagram %d: got %d bytes starting %x, want %d bytes of datagram %d",
							start+k, len(g.data), g.data[:min(4, len(g.data))], len(bufs[k]), start+k)
					}
					if g.ep.DstToString() != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), aport).String() {
						t.Fatalf("datagram %d from %s, want 127.0.0.1:%d", start+k, g.ep.DstToString(), aport)
					}
					if g.ep.SrcIP() != netip.MustParseAddr("127.0.0.1") {
						t.Fatalf("datagram %d: sticky source %v, want 127.0.0.1", start+k, g.ep.SrcIP())
					}
				}
			}
			if len(want) != len(sizes) {
				t.Fatalf("sent %d", len(want))
			}
		})
	}
}

// TestUDPBindSmallBatches reads with fewer buffers than the kernel may have
// coalesced: what does not fit comes in the next calls, in order.
func TestUDPBindSmallBatches(t *testing.T) {
	a, _, _ := openTestBind(t, true)
	_, bfns, bport := openTestBind(t, true)
	ep, _ := a.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", bport))
	var bufs [][]byte
	for i := range 100 {
		bufs = append(bufs, testPayload(i, 1000))
	}
	if err := a.Send(bufs, ep); err != nil && !errors.As(err, new(conn.ErrUDPGSODisabled)) {
		t.Fatal(err)
	}
	got, calls := receiveN(t, bfns[0], len(bufs), 3)
	for i, g := range got {
		if !bytes.Equal(g.data, bufs[i]) {
			t.Fatalf("datagram %d: wrong bytes", i)
		}
	}
	if calls < len(bufs)/3 {
		t.Fatalf("%d calls of 3 buffers returned %d datagrams", calls, len(got))
	}
}

// TestUDPBindSplit feeds the splitter GRO-coalesced datagrams (built here:
// loopback need not coalesce) and checks each packet lands in its own
// buffer, in order, with its datagram's endpoint, the tail that does not
// fit coming in the following calls.
func TestUDPBindSplit(t *testing.T) {
	type dgram struct{ sizes []int } // one coalesced datagram: its packets' sizes
	cases := []struct {
		name   string
		dgrams []dgram
		nbufs  int
	}{
		{"single", []dgram{{[]int{100}}}, 4},
		{"one coalesced", []dgram{{[]int{100, 100, 100, 40}}}, 8},
		{"mixed", []dgram{{[]int{50}}, {[]int{100, 100, 100}}, {[]int{70}}, {[]int{30, 30, 1}}, {[]int{9}}}, 12},
		{"exact fit", []dgram{{[]int{10, 10}}, {[]int{20, 20, 20}}, {[]int{5}}}, 6},
		{"overflow", []dgram{{[]int{10, 10, 10}}, {[]int{7}}, {[]int{20, 20, 20, 20}}, {[]int{3}}, {[]int{8, 8}}}, 5},
		{"first too big", []dgram{{[]int{10, 10, 10, 10, 10, 10, 10}}, {[]int{4, 4}}}, 3},
		{"in place", []dgram{{[]int{100, 100}}, {[]int{1}}, {[]int{1}}, {[]int{1}}}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newUDPReceiver(&udpSock{rxGRO: true})
			bufs := make([][]byte, tc.nbufs)
			for i := range bufs {
				bufs[i] = make([]byte, 512)
			}
			sizes, eps := make([]int, tc.nbufs), make([]conn.Endpoint, tc.nbufs)
			var want []received
			n := 0
			for i, d := range tc.dgrams {
				if i >= tc.nbufs {
					t.Fatal("bad case: more datagrams than buffers")
				}
				ep := &udpEndpoint{dst: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i))}
				var all []byte
				for _, s := range d.sizes {
					p := bytes.Repeat([]byte{byte(n)}, s)
					n++
					want = append(want, received{p, ep})
					all = append(all, p...)
				}
				copy(bufs[i], all)
				sizes[i], eps[i] = len(all), ep
				r.gso[i] = 0
				if len(d.sizes) > 1 {
					r.gso[i] = d.sizes[0]
				}
			}
			var got []received
			collect := func(k int) {
				for i := range k {
					got = append(got, received{bytes.Clone(bufs[i][:sizes[i]]), eps[i]})
				}
			}
			collect(r.split(bufs, sizes, eps, len(tc.dgrams)))
			for calls := 0; len(r.pend) > 0; calls++ {
				if calls > 100 {
					t.Fatal("pending datagrams never drain")
				}
				k, err := r.receive(bufs, sizes, eps)
				if err != nil {
					t.Fatal(err)
				}
				collect(k)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d packets, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].data, want[i].data) || got[i].ep != want[i].ep {
					t.Fatalf("packet %d: got %d bytes of %x from %v, want %d of %x from %v", i,
						len(got[i].data), got[i].data[:1], got[i].ep.DstToString(),
						len(want[i].data), want[i].data[:1], want[i].ep.DstToString())
				}
			}
		})
	}
}

// TestUDPBindSticky: a reply goes from the address the request came to,
// here 127.0.0.2, which the kernel would not pick for 127.0.0.1 itself.
func TestUDPBindSticky(t *testing.T) {
	a, afns, aport := openTestBind(t, true)
	b, bfns, bport := openTestBind(t, true)
	toB, _ := a.ParseEndpoint(fmt.Sprintf("127.0.0.2:%d", bport))
	if err := a.Send([][]byte{[]byte("ping")}, toB); err != nil {
		t.Fatal(err)
	}
	got, _ := receiveN(t, bfns[0], 1, 8)
	req := got[0].ep
	if req.SrcIP() != netip.MustParseAddr("127.0.0.2") || req.DstToString() != fmt.Sprintf("127.0.0.1:%d", aport) {
		t.Fatalf("request from %s to %v", req.DstToString(), req.SrcIP())
	}
	if err := b.Send([][]byte{[]byte("pong")}, req); err != nil {
		t.Fatal(err)
	}
	got, _ = receiveN(t, afns[0], 1, 8)
	if from := got[0].ep.DstToString(); from != fmt.Sprintf("127.0.0.2:%d", bport) {
		t.Fatalf("reply from %s, want 127.0.0.2:%d", from, bport)
	}
	// Without the sticky source the kernel chooses 127.0.0.1.
	req.ClearSrc()
	if req.SrcIP().IsValid() {
		t.Fatal("ClearSrc kept the source")
	}
	if err := b.Send([][]byte{[]byte("pong")}, req); err != nil {
		t.Fatal(err)
	}
	got, _ = receiveN(t, afns[0], 1, 8)
	if from := got[0].ep.DstToString(); from != fmt.Sprintf("127.0.0.1:%d", bport) {
		t.Fatalf("reply after ClearSrc from %s, want 127.0.0.1:%d", from, bport)
	}
	// A new packet to 127.0.0.2 gets an endpoint with a source again.
	if err := a.Send([][]byte{[]byte("ping")}, toB); err != nil {
		t.Fatal(err)
	}
	got, _ = receiveN(t, bfns[0], 1, 8)
	if got[0].ep == req || got[0].ep.SrcIP() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("after ClearSrc: endpoint %p (old %p), source %v", got[0].ep, req, got[0].ep.SrcIP())
	}
}

// TestUDPBindIPv6 sends over the IPv6 socket, where there is one.
func TestUDPBindIPv6(t *testing.T) {
	a, afns, aport := openTestBind(t, true)
	_, bfns, bport := openTestBind(t, true)
	if len(afns) < 2 || len(bfns) < 2 {
		t.Skip("no IPv6")
	}
	ep, _ := a.ParseEndpoint(fmt.Sprintf("[::1]:%d", bport))
	if err := a.Send([][]byte{[]byte("six"), []byte("six")}, ep); err != nil && !errors.As(err, new(conn.ErrUDPGSODisabled)) {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENETUNREACH) {
			t.Skip("no ::1")
		}
		t.Fatal(err)
	}
	got, _ := receiveN(t, bfns[1], 2, 8)
	if got[0].ep.DstToString() != fmt.Sprintf("[::1]:%d", aport) || got[0].ep.SrcIP() != netip.IPv6Loopback() || string(got[1].data) != "six" {
		t.Fatalf("got %q from %s to %v", got[0].data, got[0].ep.DstToString(), got[0].ep.SrcIP())
	}
}

// TestUDPBindCloseReopen: Close ends a blocked receive with net.ErrClosed,
// Send after Close fails, Open twice fails, and a reopened bind works on
// the same port.
func TestUDPBindCloseReopen(t *testing.T) {
	defer verifyNoGoroutineLeaks(t)
	b := newUDPBind().(*udpBind)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second Open: %v", err)
	}
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
			_, err := fn(bufs, sizes, eps)
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block (not needed for correctness)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range fns {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("receive after Close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not unblock a receive")
		}
	}
	ep, _ := b.ParseEndpoint("127.0.0.1:9")
	if err := b.Send([][]byte{[]byte("x")}, ep); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}

	fns, port2, err := b.Open(port)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if port2 != port {
		t.Fatalf("reopened on %d, want %d", port2, port)
	}
	if err := b.SetMark(0); err != nil {
		t.Fatal(err)
	}
	self, _ := b.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", port))
	if err := b.Send([][]byte{[]byte("again")}, self); err != nil {
		t.Fatal(err)
	}
	got, _ := receiveN(t, fns[0], 1, 4)
	if string(got[0].data) != "again" {
		t.Fatalf("got %q", got[0].data)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUDPBindEndpoint: the endpoint's strings and bytes, and that the
// relay bind reads its address without parsing.
func TestUDPBindEndpoint(t *testing.T) {
	b := newUDPBind()
	for _, s := range []string{"192.0.2.7:51820", "[2001:db8::1]:7"} {
		ep, err := b.ParseEndpoint(s)
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(s)
		wantBytes, _ := ap.MarshalBinary()
		if ep.DstToString() != s || ep.DstIP() != ap.Addr() || !bytes.Equal(ep.DstToBytes(), wantBytes) || ep.SrcIP().IsValid() || endpointAddr(ep) != ap {
			t.Fatalf("%s: %s %v %x %v %v", s, ep.DstToString(), ep.DstIP(), ep.DstToBytes(), ep.SrcIP(), endpointAddr(ep))
		}
	}
	if _, err := b.ParseEndpoint("nonsense"); err == nil {
		t.Fatal("parsed nonsense")
	}
}

// TestUDPBindBuild checks how a send batch is cut into GSO messages.
func TestUDPBindBuild(t *testing.T) {
	sb := newSendBatch()
	var bufs [][]byte
	for _, n := range []int{100, 100, 100, 50, 100, 120, 120} {
		bufs = append(bufs, make([]byte, n))
	}
	for range 70 {
		bufs = append(bufs, make([]byte, 10))
	}
	nmsg, used := sb.build(bufs, unix.SizeofSockaddrInet4, netip.MustParseAddr("127.0.0.1"), 1, true, true, false)
	// [100 100 100 50] [100] [120 120 10...] is cut at 120s (10 < 120 ends it
	// after one), then 64 of the 10s, then the rest.
	wantIov := []int{4, 1, 3, 64, 5}
	wantGSO := []int{100, 0, 120, 10, 10}
	if nmsg != len(wantIov) || used != len(bufs) {
		t.Fatalf("%d messages for %d packets, want %d for %d", nmsg, used, len(wantIov), len(bufs))
	}
	for i := range nmsg {
		h := &sb.hdrs[i].Hdr
		ctl := parseTxControlForTest(t, sb.oob[i*txControlSpace:][:h.Controllen])
		if int(h.Iovlen) != wantIov[i] || ctl.gso != wantGSO[i] || ctl.dst != netip.MustParseAddr("127.0.0.1") || ctl.ifindex != 1 {
			t.Fatalf("message %d: %d packets, control %+v; want %d packets, GSO %d", i, h.Iovlen, ctl, wantIov[i], wantGSO[i])
		}
	}
	// Without GSO, one message per packet and no UDP_SEGMENT.
	nmsg, used = sb.build(bufs[:5], unix.SizeofSockaddrInet4, netip.Addr{}, 0, false, false, false)
	if nmsg != 5 || used != 5 || sb.hdrs[0].Hdr.Controllen != 0 {
		t.Fatalf("no GSO: %d messages for %d packets, control %d", nmsg, used, sb.hdrs[0].Hdr.Controllen)
	}
}

// parseTxControlForTest reads what putTxControl wrote, taking UDP_SEGMENT
// for UDP_GRO.
func parseTxControlForTest(t *testing.T, oob []byte) rxControl {
	t.Helper()
	c := bytes.Clone(oob)
	for rest := c; len(rest) >= unix.SizeofCmsghdr; {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&rest[0]))
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_SEGMENT {
			h.Type = unix.UDP_GRO
		}
		_, _, next, err := unix.ParseOneSocketControlMessage(rest)
		if err != nil {
			t.Fatal(err)
		}
		rest = next
	}
	return parseRxControl(c)
}

// FuzzParseRxControl: any control bytes parse without panic into a sane
// result, and what putTxControl writes reads back.
func FuzzParseRxControl(f *testing.F) {
	seed := func(src string, ifindex int32, gso int) []byte {
		b := make([]byte, txControlSpace)
		n := putTxControl(b, netip.MustParseAddr(src), ifindex, true, gso)
		return b[:n]
	}
	f.Add(seed("127.0.0.2", 1, 0), "127.0.0.2", int32(1), uint16(0))
	f.Add(seed("2001:db8::1", 3, 1200), "2001:db8::1", int32(3), uint16(1200))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 104, 0, 0, 0}, "10.0.0.1", int32(-1), uint16(65535))
	f.Add([]byte{}, "::", int32(0), uint16(1))
	f.Fuzz(func(t *testing.T, oob []byte, src string, ifindex int32, gso uint16) {
		if c := parseRxControl(oob); c.gso < 0 || (c.dst.IsValid() && !c.dst.Is4() && !c.dst.Is6()) {
			t.Fatalf("%x: %+v", oob, c)
		}
		a, err := netip.ParseAddr(src)
		if err != nil || a.Zone() != "" {
			return
		}
		b := make([]byte, txControlSpace)
		n := putTxControl(b, a, ifindex, true, int(gso))
		c := parseTxControlForTest(t, b[:n])
		if c.dst != a || c.ifindex != ifindex || c.gso != int(gso) {
			t.Fatalf("wrote %v %d %d, read %+v", a, ifindex, gso, c)
		}
	})
}

// TestUDPBindOneFamily: with one address family unavailable (EAFNOSUPPORT,
// as under ipv6.disable=1) Open uses the other and reports the port it
// got, and a fixed port is kept; with both unavailable it fails.
func TestUDPBindOneFamily(t *testing.T) {
	defer func() { openSock = openUDPSock }()
	for _, missing := range []string{"udp4", "udp6"} {
		openSock = func(network string, port int) (*udpSock, int, error) {
			if network == missing {
				return nil, 0, syscall.EAFNOSUPPORT
			}
			return openUDPSock(network, port)
		}
		b := newUDPBind().(*udpBind)
		fns, port, err := b.Open(0)
		if err != nil {
			t.Fatalf("%s missing: %v", missing, err)
		}
		if port == 0 || len(fns) != 1 {
			t.Fatalf("%s missing: port %d, %d receive funcs", missing, port, len(fns))
		}
		s := b.v4
		if s == nil {
			s = b.v6
		}
		if got := s.conn.LocalAddr().(*net.UDPAddr).Port; got != int(port) {
			t.Fatalf("%s missing: Open says port %d, socket has %d", missing, port, got)
		}
		b.Close()
		fns, port2, err := b.Open(port)
		if err != nil || port2 != port || len(fns) != 1 {
			t.Fatalf("%s missing: reopen on %d: port %d, %d funcs, %v", missing, port, port2, len(fns), err)
		}
		b.Close()
	}
	openSock = func(string, int) (*udpSock, int, error) { return nil, 0, syscall.EAFNOSUPPORT }
	if _, _, err := newUDPBind().Open(0); !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Fatalf("both missing: %v", err)
	}
}

// TestUDPBindStaleSticky: a sticky source the kernel rejects (an address
// not on this machine, an interface that does not exist) is cleared and
// the packets are sent again without it, GSO-batched or not.
func TestUDPBindStaleSticky(t *testing.T) {
	a, _, _ := openTestBind(t, true)
	_, bfns, bport := openTestBind(t, true)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), bport)
	for i, stale := range []*udpEndpoint{
		{dst: dst, src: netip.MustParseAddr("192.0.2.1")},
		{dst: dst, src: netip.MustParseAddr("127.0.0.1"), ifindex: 1 << 30},
	} {
		if _, _, ok := stale.sticky(); !ok {
			t.Fatalf("case %d: no sticky source to start with", i)
		}
		var bufs [][]byte
		for j := range 5 {
			bufs = append(bufs, testPayload(i*10+j, 100))
		}
		if err := a.Send(bufs, stale); err != nil {
			t.Fatalf("case %d: Send: %v", i, err)
		}
		if _, _, ok := stale.sticky(); ok || stale.SrcIP().IsValid() {
			t.Fatalf("case %d: source %v not cleared", i, stale.SrcIP())
		}
		got, _ := receiveN(t, bfns[0], len(bufs), 8)
		for j := range bufs {
			if !bytes.Equal(got[j].data, bufs[j]) {
				t.Fatalf("case %d: packet %d differs", i, j)
			}
		}
	}
}

// TestParseKernelRelease: the version gate for UDP GRO reads uname's
// release string.
func TestParseKernelRelease(t *testing.T) {
	for _, c := range []struct {
		rel          string
		major, minor int
	}{
		{"6.8.0-45-generic", 6, 8},
		{"5.12.0", 5, 12},
		{"5.11.22-100.fc32.x86_64", 5, 11},
		{"5.4", 5, 4},
		{"4.19.0+", 4, 19},
		{"6", 6, 0},
		{"6.1-rc2", 6, 1},
		{"", 0, 0},
		{"x.y", 0, 0},
	} {
		if major, minor := parseKernelRelease(c.rel); major != c.major || minor != c.minor {
			t.Errorf("%q: %d.%d, want %d.%d", c.rel, major, minor, c.major, c.minor)
		}
	}
}

// TestUDPBindPendingBound: with GRO a read asks for no more datagrams than
// could, all left over, be kept within maxPending bytes; the worst case (as
// many full 64-segment datagrams as buffers) stays under it; and an arena
// above the bound is let go once drained.
func TestUDPBindPendingBound(t *testing.T) {
	const bufSize = 1<<16 - 1 // what wireguard-go receives into
	r := newUDPReceiver(&udpSock{rxGRO: true})
	n := len(r.hdrs)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sizes, eps := make([]int, n), make([]conn.Endpoint, n)
	want := groReadLimit(bufs, n)
	if want < 1 || want*bufSize > maxPending {
		t.Fatalf("a read of %d datagrams of up to %d bytes", want, bufSize)
	}
	if got := groReadLimit([][]byte{make([]byte, 2*maxPending)}, 1); got != 1 {
		t.Fatalf("one huge buffer: read %d, want 1", got)
	}
	if got := groReadLimit(bufs[:4], 4); got != 4 {
		t.Fatalf("4 buffers: read %d, want 4", got)
	}
	ep := &udpEndpoint{dst: netip.MustParseAddrPort("192.0.2.1:1")}
	for i := range want {
		sizes[i], eps[i] = bufSize, ep
		r.gso[i] = (bufSize + gsoMaxSegments - 1) / gsoMaxSegments
	}
	r.split(bufs, sizes, eps, want)
	if len(r.pend) == 0 || len(r.arena) > maxPending || cap(r.arena) > maxPending {
		t.Fatalf("%d datagrams pending in %d bytes (cap %d)", len(r.pend), len(r.arena), cap(r.arena))
	}

	// An arena grown past the bound (as before the bound) is dropped once
	// what it holds is handed out.
	r.pend = r.pend[:0]
	r.arena = append(make([]byte, 0, 4*maxPending), bytes.Repeat([]byte{7}, 300)...)
	r.pend = append(r.pend, pendingDgram{data: r.arena[:300], gso: 100, ep: ep})
	if k := r.drain(bufs, sizes, eps, 0); k != 3 || len(r.pend) != 0 {
		t.Fatalf("drained %d, %d pending", k, len(r.pend))
	}
	if r.arena != nil {
		t.Fatalf("arena of cap %d kept", cap(r.arena))
	}
}

// TestUDPBindGSODisabledError: the error for GSO turned off is found as
// conn.ErrUDPGSODisabled, carries the resend's error and names the socket.
func TestUDPBindGSODisabledError(t *testing.T) {
	retry := errors.New("resend failed")
	var err error = gsoDisabledError{laddr: "0.0.0.0:51820", retryErr: retry}
	var gso conn.ErrUDPGSODisabled
	if !errors.As(err, &gso) || gso.RetryErr != retry || !errors.Is(err, retry) {
		t.Fatalf("errors.As: %v, RetryErr %v", errors.As(err, &gso), gso.RetryErr)
	}
	if msg := err.Error(); !strings.Contains(msg, "0.0.0.0:51820") || !strings.Contains(msg, "resend failed") {
		t.Fatalf("message %q", msg)
	}
	err = gsoDisabledError{laddr: "[::]:1"}
	if !errors.As(err, &gso) || gso.RetryErr != nil {
		t.Fatal("no retry error: not found")
	}
}
