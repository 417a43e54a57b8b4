//go:build linux

package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// udpBind is the direct path's bind on Linux; udpbind.go says why the mesh
// has its own.
type udpBind struct {
	mu     sync.Mutex
	v4, v6 *udpSock // nil while closed (or when the family is unsupported)
}

var _ conn.Bind = (*udpBind)(nil)

// udpGRO turns UDP GRO on for sockets opened after it is set (tests).
var udpGRO atomic.Bool

func init() { udpGRO.Store(true) }

func newUDPBind() conn.Bind { return &udpBind{} }

// udpSock is one open socket, IPv4 or IPv6.
type udpSock struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	is6   bool
	rxGRO bool        // the kernel may hand us coalesced datagrams
	txGSO atomic.Bool // UDP_SEGMENT works; cleared for good on EIO
	sends sync.Pool   // *sendBatch
}

const (
	// udpSocketBuffer is the send and receive buffer size asked for
	// (beyond net.core.[rw]mem_max where CAP_NET_ADMIN allows).
	udpSocketBuffer = 7 << 20
	// gsoMaxSegments is the kernel's limit of datagrams per UDP_SEGMENT send.
	gsoMaxSegments = 64
	// The largest UDP payload of one (GSO) send.
	maxUDPPayload4 = 1<<16 - 1 - 20 - 8
	maxUDPPayload6 = 1<<16 - 1 - 8
)

// mmsghdr is struct mmsghdr: a msghdr and the length the kernel reports.
// x/sys/unix generates it per architecture, with the tail padding the
// kernel's layout has on 64-bit and none on 32-bit.
type mmsghdr = unix.Mmsghdr

// The size must be the kernel's, a msghdr and a uint32 rounded up to the
// alignment of a pointer, or recvmmsg and sendmmsg misread every header
// after the first. Either array length is negative, and the build fails,
// when it is not.
const mmsghdrSize = (unix.SizeofMsghdr + 4 + unsafe.Alignof(uintptr(0)) - 1) &^ (unsafe.Alignof(uintptr(0)) - 1)

var (
	_ [unsafe.Sizeof(mmsghdr{}) - mmsghdrSize]byte
	_ [mmsghdrSize - unsafe.Sizeof(mmsghdr{})]byte
)

func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.v4 != nil || b.v6 != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	var (
		v4, v6 *udpSock
		actual int
	)
	for tries := 0; ; tries++ {
		// The port comes only from a socket that opened: a family the
		// kernel lacks (ipv6.disable=1, EAFNOSUPPORT) is skipped, as
		// StdNetBind does, and the other family's port stands.
		var err4, err6 error
		actual = int(port)
		var p int
		v4, p, err4 = openSock("udp4", int(port))
		if err4 != nil && !errors.Is(err4, syscall.EAFNOSUPPORT) {
			return nil, 0, err4
		}
		if v4 != nil {
			actual = p
		}
		v6, p, err6 = openSock("udp6", actual)
		if err6 == nil {
			if v4 == nil {
				actual = p
			}
			break
		}
		if errors.Is(err6, syscall.EAFNOSUPPORT) {
			if v4 == nil {
				return nil, 0, err6
			}
			break
		}
		if v4 != nil {
			v4.conn.Close()
		}
		if port != 0 || v4 == nil || !errors.Is(err6, syscall.EADDRINUSE) || tries >= 100 {
			return nil, 0, err6
		}
		// The random IPv4 port is taken for IPv6: pick another.
	}
	var fns []conn.ReceiveFunc
	for _, s := range []*udpSock{v4, v6} {
		if s != nil {
			fns = append(fns, newUDPReceiver(s).receive)
		}
	}
	if len(fns) == 0 {
		return nil, 0, syscall.EAFNOSUPPORT
	}
	b.v4, b.v6 = v4, v6
	return fns, uint16(actual), nil
}

// openSock is openUDPSock; tests replace it to make a family unavailable.
var openSock = openUDPSock

// openUDPSock listens on port (0: any); it returns the port it got. A nil
// socket with a nil error cannot happen; EAFNOSUPPORT means the family is
// not there.
func openUDPSock(network string, port int) (*udpSock, int, error) {
	lc := net.ListenConfig{Control: func(network, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			s := int(fd)
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, udpSocketBuffer)
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, udpSocketBuffer)
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpSocketBuffer)
			_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpSocketBuffer)
			if network == "udp6" {
				if err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
					return
				}
				err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			} else {
				err = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
	pc, err := lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(port))
	if err != nil {
		return nil, 0, err
	}
	uc := pc.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, 0, err
	}
	s := &udpSock{conn: uc, rc: rc, is6: network == "udp6"}
	_ = rc.Control(func(fd uintptr) {
		if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT); err == nil {
			s.txGSO.Store(true)
		}
		if udpGRO.Load() && kernelGRO() {
			s.rxGRO = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
	})
	s.sends.New = func() any { return newSendBatch() }
	return s, uc.LocalAddr().(*net.UDPAddr).Port, nil
}

// kernelGRO reports whether the kernel is 5.12 or later, where wireguard-go
// turns UDP GRO on: older kernels cannot read UDP_GRO back (98184612aca0,
// "net: udp: Add support for getsockopt(..., ..., UDP_GRO, ..., ...)") and
// their GRO is buggier.
var kernelGRO = sync.OnceValue(func() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	major, minor := parseKernelRelease(unix.ByteSliceToString(u.Release[:]))
	return major > 5 || major == 5 && minor >= 12
})

// parseKernelRelease reads the major and minor version at the start of a
// kernel release ("6.8.0-45-generic"); what it cannot read is 0.
func parseKernelRelease(rel string) (major, minor int) {
	var v [2]int
	i := 0
	for _, c := range rel {
		if '0' <= c && c <= '9' {
			v[i] = v[i]*10 + int(c-'0')
			continue
		}
		if c != '.' {
			break
		}
		if i++; i == len(v) {
			break
		}
	}
	return v[0], v[1]
}

func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, s := range []*udpSock{b.v4, b.v6} {
		if s != nil {
			errs = append(errs, s.conn.Close())
		}
	}
	b.v4, b.v6 = nil, nil
	return errors.Join(errs...)
}

func (b *udpBind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range []*udpSock{b.v4, b.v6} {
		if s == nil {
			continue
		}
		var err error
		if cerr := s.rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); cerr != nil {
			return cerr
		}
		if err != nil {
			return os.NewSyscallError("setsockopt SO_MARK", err)
		}
	}
	return nil
}

func (b *udpBind) BatchSize() int { return conn.IdealBatchSize }

func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &udpEndpoint{dst: ap}, nil
}

// receiving

// udpReceiver is one socket's receive func and the state it keeps between
// calls: the message headers (pointing at its own address and control
// buffers; only the buffers' addresses and what the kernel writes are set
// per call), the endpoint it last made, and the tail of a read whose
// GRO-coalesced datagrams did not fit the caller's buffers.
type udpReceiver struct {
	s  *udpSock
	mu sync.Mutex // a receive func is called from one goroutine; this makes misuse safe

	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	gso   []int // GRO segment size per message of the last read

	last    *udpEndpoint
	readMax int // messages per read: fewer when GRO coalesces a lot

	pend  []pendingDgram // coalesced datagrams left over, in order
	arena []byte         // their bytes
}

// pendingDgram is a received datagram (GRO-coalesced) not yet handed out.
type pendingDgram struct {
	data []byte // what is left of it
	gso  int
	ep   *udpEndpoint
}

func newUDPReceiver(s *udpSock) *udpReceiver {
	n := conn.IdealBatchSize
	r := &udpReceiver{
		s:       s,
		hdrs:    make([]mmsghdr, n),
		iovs:    make([]unix.Iovec, n),
		names:   make([]unix.RawSockaddrInet6, n),
		oob:     make([]byte, n*rxControlSpace),
		gso:     make([]int, n),
		readMax: n,
	}
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i*rxControlSpace]
	}
	return r
}

func (r *udpReceiver) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pend) > 0 {
		return r.drain(bufs, sizes, eps, 0), nil
	}
	want := min(len(bufs), len(sizes), len(eps), len(r.hdrs))
	if want == 0 {
		return 0, nil
	}
	if r.s.rxGRO {
		want = groReadLimit(bufs, min(want, r.readMax))
	}
	for i := range want {
		if len(bufs[i]) > 0 {
			r.iovs[i].Base = &bufs[i][0]
		} else {
			r.iovs[i].Base = nil
		}
		r.iovs[i].SetLen(len(bufs[i]))
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		r.hdrs[i].Hdr.SetControllen(rxControlSpace)
	}
	var (
		got   int
		errno syscall.Errno
	)
	err := r.s.rc.Read(func(fd uintptr) bool {
		for {
			n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(want), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			got, errno = int(n), e
			return true
		}
	})
	runtime.KeepAlive(bufs)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	coalesced := false
	for i := range got {
		h := &r.hdrs[i]
		sizes[i] = int(h.Len)
		ctl := parseRxControl(r.oob[i*rxControlSpace:][:min(int(h.Hdr.Controllen), rxControlSpace)])
		eps[i] = r.endpoint(&r.names[i], ctl)
		r.gso[i] = 0
		if r.s.rxGRO && ctl.gso > 0 && sizes[i] > ctl.gso {
			r.gso[i] = ctl.gso
			coalesced = true
		}
	}
	if !coalesced {
		if r.s.rxGRO {
			r.readMax = len(r.hdrs)
		}
		return got, nil
	}
	return r.split(bufs, sizes, eps, got), nil
}

// endpoint is the endpoint for a datagram from name to ctl.dst: the last
// one made when it is the same.
func (r *udpReceiver) endpoint(name *unix.RawSockaddrInet6, ctl rxControl) *udpEndpoint {
	dst := sockaddrAddrPort(name)
	if e := r.last; e != nil && e.dst == dst && e.src == ctl.dst && e.ifindex == ctl.ifindex && !e.cleared.Load() {
		return e
	}
	e := &udpEndpoint{dst: dst, src: ctl.dst, ifindex: ctl.ifindex}
	r.last = e
	return e
}

// sockaddrAddrPort reads a struct sockaddr_in or sockaddr_in6.
func sockaddrAddrPort(name *unix.RawSockaddrInet6) netip.AddrPort {
	switch name.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portFromNet(sa.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(name.Addr)
		if name.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(name.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, portFromNet(name.Port))
	}
	return netip.AddrPort{}
}

// portFromNet reads a port stored in network byte order.
func portFromNet(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

// maxPending bounds the bytes of GRO-coalesced datagrams a receiver keeps,
// copied, between calls: what a remote sender can make it hold, and only
// until they are handed out. 8 MiB lets a read take all 128 of
// wireguard-go's 64 KiB buffers (16 of them at 1 MiB read a batch of
// uncoalesced packets eight times slower). keepArena is what a drained
// receiver keeps for the next time; a larger arena is let go.
const (
	maxPending = 8 << 20
	keepArena  = 1 << 20
)

// groReadLimit is how many of the first want buffers a read may fill when
// GRO may coalesce. Any datagram read may be left over (the first too, when
// it has more segments than there are buffers), so their buffers together
// hold at most maxPending bytes; a read takes at least one.
func groReadLimit(bufs [][]byte, want int) int {
	total := 0
	for i := range want {
		total += len(bufs[i])
		if total > maxPending {
			return max(1, i)
		}
	}
	return want
}

// split turns the got datagrams just read into bufs, some GRO-coalesced
// (r.gso), into one packet per buffer, in order. Those that do not fit
// are kept, copied, for the next call.
func (r *udpReceiver) split(bufs [][]byte, sizes []int, eps []conn.Endpoint, got int) int {
	limit := min(len(bufs), len(sizes), len(eps))
	fit, total, most := 0, 0, 1
	for i := range got {
		n := segments(sizes[i], r.gso[i])
		most = max(most, n)
		if fit == i && total+n <= limit {
			fit++
			total += n
		}
	}
	// Next time read about as many datagrams as this read's largest
	// coalescing would fill.
	r.readMax = max(1, len(r.hdrs)/most)
	need := 0
	for i := fit; i < got; i++ {
		need += sizes[i]
	}
	if cap(r.arena) < need {
		r.arena = make([]byte, 0, need) // no more than needed: drain keeps at most maxPending
	}
	r.arena = r.arena[:0]
	r.pend = r.pend[:0]
	for i := fit; i < got; i++ {
		r.arena = append(r.arena, bufs[i][:sizes[i]]...)
		r.pend = append(r.pend, pendingDgram{data: bufs[i][:sizes[i]], gso: r.gso[i], ep: eps[i].(*udpEndpoint)})
	}
	// Point the data at its copy (the arena may have moved while growing).
	off := 0
	for i := range r.pend {
		n := len(r.pend[i].data)
		r.pend[i].data = r.arena[off : off+n : off+n]
		off += n
	}
	out := splitInPlace(bufs, sizes, eps, r.gso, fit)
	return r.drain(bufs, sizes, eps, out)
}

// splitInPlace spreads the first n datagrams in bufs, datagram i of
// sizes[i] bytes made of gso[i]-byte segments (0: one datagram), one
// segment per buffer, in order, and returns how many buffers that fills.
// The caller has checked that they fit. It works from the last datagram
// back, so none is overwritten before it is moved: datagram i's segments go
// to buffers at or after i, and past the ones the datagrams before it take.
func splitInPlace(bufs [][]byte, sizes []int, eps []conn.Endpoint, gso []int, n int) int {
	total := 0
	for i := range n {
		total += segments(sizes[i], gso[i])
	}
	end := total
	for i := n - 1; i >= 0; i-- {
		cnt := segments(sizes[i], gso[i])
		first := end - cnt
		size, ep := sizes[i], eps[i]
		if cnt == 1 {
			if first != i {
				sizes[first] = copy(bufs[first], bufs[i][:size])
				eps[first] = ep
			}
		} else {
			// The segments after the first go to buffers after i; the
			// first, last, may be bufs[i] itself.
			for j := cnt - 1; j >= 0; j-- {
				from := j * gso[i]
				to := min(from+gso[i], size)
				if first+j == i {
					sizes[i] = to - from // from is 0: already in place
				} else {
					sizes[first+j] = copy(bufs[first+j], bufs[i][from:to])
				}
				eps[first+j] = ep
			}
		}
		end = first
	}
	return total
}

// drain hands out left-over segments into bufs from index at on; it returns
// the number of buffers filled.
func (r *udpReceiver) drain(bufs [][]byte, sizes []int, eps []conn.Endpoint, at int) int {
	limit := min(len(bufs), len(sizes), len(eps))
	k := 0
	for k < len(r.pend) && at < limit {
		p := &r.pend[k]
		seg := len(p.data)
		if p.gso > 0 {
			seg = min(seg, p.gso)
		}
		sizes[at] = copy(bufs[at], p.data[:seg])
		eps[at] = p.ep
		at++
		p.data = p.data[seg:]
		if len(p.data) == 0 {
			k++
		}
	}
	n := copy(r.pend, r.pend[k:])
	clear(r.pend[n:])
	r.pend = r.pend[:n]
	if n == 0 && cap(r.arena) > keepArena {
		r.arena = nil // drained: do not keep more than the bound
	}
	return at
}

// sending

// sendBatch is the scratch space of one Send.
type sendBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	first []int // the index in bufs of each message's first packet
	name  unix.RawSockaddrInet6
	oob   []byte
}

func newSendBatch() *sendBatch {
	n := conn.IdealBatchSize
	return &sendBatch{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		first: make([]int, n),
		oob:   make([]byte, n*txControlSpace),
	}
}

func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	var (
		dst    netip.AddrPort
		src    netip.Addr
		ifidx  int32
		sticky bool
	)
	e, _ := ep.(*udpEndpoint)
	if e != nil {
		dst = e.dst
		src, ifidx, sticky = e.sticky()
	} else {
		ap, err := netip.ParseAddrPort(ep.DstToString())
		if err != nil {
			return err
		}
		dst = ap
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	b.mu.Lock()
	s := b.v4
	if dst.Addr().Is6() {
		s = b.v6
	}
	open := b.v4 != nil || b.v6 != nil
	b.mu.Unlock()
	if s == nil {
		if !open {
			return net.ErrClosed
		}
		return syscall.EAFNOSUPPORT
	}
	if sticky && src.Is4() != dst.Addr().Is4() {
		sticky = false
	}
	return s.send(bufs, dst, src, ifidx, sticky, e)
}

// send sends bufs to dst, from src on interface ifidx when sticky. If the
// kernel rejects that source (the address or interface went away, or its
// route did), send clears ep's source and sends again without it, once:
// wireguard-go clears stale sources on route changes only for its own
// StdNetBind, so this bind does it itself, as wireguard-go's bind did
// before it had StdNetBind.
func (s *udpSock) send(bufs [][]byte, dst netip.AddrPort, src netip.Addr, ifidx int32, sticky bool, ep *udpEndpoint) error {
	sb := s.sends.Get().(*sendBatch)
	defer s.sends.Put(sb)
	namelen := putSockaddr(&sb.name, dst)
	gsoOff := false
	for len(bufs) > 0 {
		gso := s.txGSO.Load()
		nmsg, used := sb.build(bufs, namelen, src, ifidx, sticky, gso, s.is6)
		sent, err := s.sendmmsg(sb.hdrs[:nmsg])
		if err != nil {
			if gso && errors.Is(err, unix.EIO) {
				// UDP_SEGMENT needs checksum offload, which the device
				// lacks: send without it from now on, starting with the
				// message that failed.
				s.txGSO.Store(false)
				gsoOff = true
				bufs = bufs[sb.first[sent]:]
				continue
			}
			if sticky && staleSource(err) {
				if ep != nil {
					ep.ClearSrc()
				}
				sticky = false
				bufs = bufs[sb.first[sent]:]
				continue
			}
			runtime.KeepAlive(bufs)
			if gsoOff {
				return gsoDisabledError{laddr: s.conn.LocalAddr().String(), retryErr: err}
			}
			return err
		}
		bufs = bufs[used:]
	}
	runtime.KeepAlive(bufs)
	if gsoOff {
		return gsoDisabledError{laddr: s.conn.LocalAddr().String()}
	}
	return nil
}

// gsoDisabledError is conn.ErrUDPGSODisabled (for errors.As, which is how
// wireguard-go's device finds it and logs this error's message) naming the
// socket's local address, which the bind cannot set in conn's own.
type gsoDisabledError struct {
	laddr    string
	retryErr error // the resend's error, if it failed
}

func (e gsoDisabledError) Error() string {
	msg := "disabled UDP GSO on " + e.laddr + ", NIC(s) may not support checksum offload"
	if e.retryErr != nil {
		msg += "; resending: " + e.retryErr.Error()
	}
	return msg
}

func (e gsoDisabledError) Unwrap() error { return e.retryErr }

func (e gsoDisabledError) As(target any) bool {
	t, ok := target.(*conn.ErrUDPGSODisabled)
	if ok {
		*t = conn.ErrUDPGSODisabled{RetryErr: e.retryErr}
	}
	return ok
}

// staleSource reports whether a send with packet info failed because the
// source it names is no longer usable.
func staleSource(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EADDRNOTAVAIL) ||
		errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.ENODEV)
}

// build fills the batch's headers for the packets at the start of bufs,
// coalescing runs of them into GSO sends when gso is set; it returns the
// number of messages and of packets they hold.
func (sb *sendBatch) build(bufs [][]byte, namelen uint32, src netip.Addr, ifidx int32, sticky, gso bool, is6 bool) (nmsg, used int) {
	maxPayload := maxUDPPayload4
	if is6 {
		maxPayload = maxUDPPayload6
	}
	for used < len(bufs) && nmsg < len(sb.hdrs) && used < len(sb.iovs) {
		first := used
		seg := len(bufs[used])
		total := seg
		setIov(&sb.iovs[used], bufs[used])
		used++
		if gso {
			for used < len(bufs) && used < len(sb.iovs) && used-first < gsoMaxSegments {
				n := len(bufs[used])
				if n > seg || n == 0 || total+n > maxPayload {
					break
				}
				setIov(&sb.iovs[used], bufs[used])
				used++
				total += n
				if n < seg {
					break // a shorter packet ends a GSO run
				}
			}
		}
		h := &sb.hdrs[nmsg].Hdr
		h.Name = (*byte)(unsafe.Pointer(&sb.name))
		h.Namelen = namelen
		h.Iov = &sb.iovs[first]
		h.SetIovlen(used - first)
		segSize := 0
		if used-first > 1 {
			segSize = seg
		}
		oob := sb.oob[nmsg*txControlSpace : (nmsg+1)*txControlSpace]
		if c := putTxControl(oob, src, ifidx, sticky, segSize); c > 0 {
			h.Control = &oob[0]
			h.SetControllen(c)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		sb.first[nmsg] = first
		nmsg++
	}
	return nmsg, used
}

func setIov(v *unix.Iovec, b []byte) {
	if len(b) > 0 {
		v.Base = &b[0]
	} else {
		v.Base = nil
	}
	v.SetLen(len(b))
}

// putSockaddr writes dst as a struct sockaddr_in or sockaddr_in6 and
// returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, dst netip.AddrPort) uint32 {
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], dst.Port())
	if a := dst.Addr(); a.Is4() {
		*sa = unix.RawSockaddrInet6{}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		sa4.Port = *(*uint16)(unsafe.Pointer(&port))
		sa4.Addr = a.As4()
		return unix.SizeofSockaddrInet4
	}
	a := dst.Addr()
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	sa.Port = *(*uint16)(unsafe.Pointer(&port))
	if z := a.Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	return unix.SizeofSockaddrInet6
}

// sendmmsg sends msgs, looping over partial sends; on error it returns how
// many messages went before it.
func (s *udpSock) sendmmsg(msgs []mmsghdr) (int, error) {
	done := 0
	for done < len(msgs) {
		var (
			n     int
			errno syscall.Errno
		)
		err := s.rc.Write(func(fd uintptr) bool {
			for {
				r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[done])), uintptr(len(msgs)-done), 0, 0, 0)
				switch e {
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false
				}
				n, errno = int(r), e
				return true
			}
		})
		if err != nil {
			return done, err
		}
		if errno != 0 {
			return done, os.NewSyscallError("sendmmsg", errno)
		}
		done += n
	}
	return done, nil
}
