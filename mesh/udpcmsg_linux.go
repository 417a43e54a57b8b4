//go:build linux

package mesh

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control messages of the Linux bind (udpbind_linux.go): the packet info
// that makes the source sticky, UDP GRO's segment size on receive and UDP
// GSO's on send.

var (
	// rxControlSpace holds what a received datagram carries: IPv4 or IPv6
	// packet info and the GRO segment size (an int), with room to spare.
	rxControlSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(4) + 32
	// txControlSpace holds packet info and a UDP_SEGMENT (a uint16).
	txControlSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(2)
)

// rxControl is what parseRxControl found.
type rxControl struct {
	dst     netip.Addr // the local address the datagram came to; invalid: none
	ifindex int32
	gso     int // GRO's segment size; 0: not coalesced
}

// parseRxControl reads the control messages of a received datagram. A
// malformed tail is ignored: what was read before it stands.
func parseRxControl(oob []byte) rxControl {
	var c rxControl
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex, spec_dst (the local address), addr.
			c.ifindex = int32(binary.NativeEndian.Uint32(data[0:4]))
			c.dst = netip.AddrFrom4([4]byte(data[4:8]))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: addr, ifindex.
			c.dst = netip.AddrFrom16([16]byte(data[0:16]))
			c.ifindex = int32(binary.NativeEndian.Uint32(data[16:20]))
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO:
			// The kernel puts an int; accept a uint16 too.
			switch {
			case len(data) >= 4:
				c.gso = int(int32(binary.NativeEndian.Uint32(data)))
			case len(data) >= 2:
				c.gso = int(binary.NativeEndian.Uint16(data))
			}
			if c.gso < 0 {
				c.gso = 0
			}
		}
	}
	return c
}

// putCmsg writes one control message header at the start of b and returns
// its data and the rest of b after the message's (aligned) space.
func putCmsg(b []byte, level, typ int32, dataLen int) (data, rest []byte) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = level
	h.Type = typ
	h.SetLen(unix.CmsgLen(dataLen))
	return b[unix.CmsgLen(0):unix.CmsgLen(dataLen)], b[unix.CmsgSpace(dataLen):]
}

// putTxControl writes into b (txControlSpace bytes, aligned for a cmsghdr)
// the packet info for a sticky source and, when gso > 0, the UDP_SEGMENT
// size, and returns the bytes written.
func putTxControl(b []byte, src netip.Addr, ifindex int32, sticky bool, gso int) int {
	rest := b
	if sticky {
		var data []byte
		if src.Is4() {
			data, rest = putCmsg(rest, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
			binary.NativeEndian.PutUint32(data[0:4], uint32(ifindex))
			a := src.As4()
			copy(data[4:8], a[:])
			clear(data[8:12])
		} else {
			data, rest = putCmsg(rest, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo)
			a := src.As16()
			copy(data[0:16], a[:])
			binary.NativeEndian.PutUint32(data[16:20], uint32(ifindex))
		}
	}
	if gso > 0 {
		var data []byte
		data, rest = putCmsg(rest, unix.SOL_UDP, unix.UDP_SEGMENT, 2)
		binary.NativeEndian.PutUint16(data, uint16(gso))
	}
	return len(b) - len(rest)
}

// segments is how many datagrams a received one of n bytes holds when GRO
// reported segment size gso.
func segments(n, gso int) int {
	if gso <= 0 || n <= gso {
		return 1
	}
	return (n + gso - 1) / gso
}
