package mesh

import (
	"net/netip"
	"sync/atomic"
)

// The direct path's UDP bind.
//
// On Linux the mesh uses a conn.Bind of its own (udpbind_linux.go) rather
// than wireguard-go's StdNetBind. StdNetBind turns on UDP GRO and then reads
// only two datagrams per recvmmsg, counting on the kernel to have coalesced
// each into up to 64 packets. Between hosts that holds; on loopback, and
// whenever the sender's bursts are short, the kernel delivers datagrams of
// one to a few packets, so the receiver made about one syscall per three
// packets and our link's GRO (link.go) got batches too small to coalesce.
// It also cleared all 128 message headers and allocated two objects per
// datagram. Ours reads as many datagrams as the caller has buffers in one
// recvmmsg, still splits what GRO coalesced, keeps its headers between calls
// resetting only what the kernel writes, and gives consecutive datagrams
// from one source and to one local address the same endpoint. It sends
// with sendmmsg and UDP GSO (UDP_SEGMENT), dropping GSO for good when the
// kernel answers EIO, as wireguard-go does. Elsewhere the mesh uses
// wireguard-go's default bind (udpbind_other.go).
//
// GRO stays on, on kernels 5.12 and later as in wireguard-go. Between hosts
// it is what coalesces; on loopback the mesh TCP benchmark measured less CPU
// per Mbit with it than without (751 vs 883 cpu-µs/Mbit, medians of 5
// interleaved runs), and when a read does bring coalesced datagrams the next
// one asks for fewer, so that what it splits fits the caller's buffers; what
// still does not fit waits, copied, for the next call. Whatever a sender
// does, that is at most 8 MiB (a read with GRO on asks for no more
// datagrams than that many bytes of the caller's buffers hold: all 128 of
// wireguard-go's 64 KiB ones), held only until handed out; a receiver
// keeps at most 1 MiB of it once drained.

// udpEndpoint is a peer's UDP address as the Linux bind gives it to
// WireGuard, with the sticky source: the local address (and interface) the
// peer's packet came to, which replies are sent from.
type udpEndpoint struct {
	dst     netip.AddrPort
	src     netip.Addr // invalid: let the kernel choose
	ifindex int32
	cleared atomic.Bool // ClearSrc was called; src and ifindex are ignored
}

// ClearSrc forgets the sticky source. The endpoint may be shared by several
// received packets, so this only sets a flag; later packets from the same
// source get a fresh endpoint.
func (e *udpEndpoint) ClearSrc() { e.cleared.Store(true) }

func (e *udpEndpoint) SrcToString() string { return e.SrcIP().String() }

func (e *udpEndpoint) DstToString() string { return e.dst.String() }

func (e *udpEndpoint) DstToBytes() []byte {
	b, _ := e.dst.MarshalBinary()
	return b
}

func (e *udpEndpoint) DstIP() netip.Addr { return e.dst.Addr() }

func (e *udpEndpoint) SrcIP() netip.Addr {
	if e.cleared.Load() {
		return netip.Addr{}
	}
	return e.src
}

// sticky is the source to send from: address and interface index, or ok
// false to let the kernel choose.
func (e *udpEndpoint) sticky() (src netip.Addr, ifindex int32, ok bool) {
	if !e.src.IsValid() || e.cleared.Load() {
		return netip.Addr{}, 0, false
	}
	return e.src, e.ifindex, true
}
