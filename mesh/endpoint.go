package mesh

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// The endpoints RelayBind gives WireGuard, and the string form the mesh
// configures them with.

type pathKind uint8

const (
	pathAuto   pathKind = iota // as configured: no authenticated packet seen yet
	pathRelay                  // the latest authenticated packet came over a relay
	pathDirect                 // … directly from the candidate cand
)

// peerEndpoint is what WireGuard holds for a peer. WireGuard keeps the
// endpoint of the latest packet it authenticated, so the endpoint it sends
// with says on which path that packet came.
type peerEndpoint struct {
	p    *relayPeer
	path pathKind
	cand *candidate // pathDirect only
}

const relayKeyPrefix = "nodekey:"

// relayEndpointString is the endpoint the mesh configures for a peer when
// the relay is on.
func relayEndpointString(pub keys.NodePublic, direct netip.AddrPort) string {
	if direct.IsValid() {
		return pub.String() + "@" + direct.String()
	}
	return pub.String()
}

// parseRelayEndpoint parses "nodekey:<64 hex>[@ip:port]"; keyed is false
// for anything without the prefix.
func parseRelayEndpoint(s string) (pub keys.NodePublic, direct netip.AddrPort, keyed bool, err error) {
	rest, ok := strings.CutPrefix(s, relayKeyPrefix)
	if !ok {
		return keys.NodePublic{}, netip.AddrPort{}, false, nil
	}
	hexKey, addr, hasAddr := strings.Cut(rest, "@")
	if pub, err = keys.ParseNodePublicHex(hexKey); err != nil {
		return keys.NodePublic{}, netip.AddrPort{}, true, fmt.Errorf("mesh: relay endpoint: key: %w", err)
	}
	if hasAddr {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			return keys.NodePublic{}, netip.AddrPort{}, true, fmt.Errorf("mesh: relay endpoint: %q is not a usable ip:port", addr)
		}
		direct = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return pub, direct, true, nil
}

// derpKey converts a key to DERP's type through its text form, which the two
// packages share ("nodekey:<hex>"; a test checks it). Were it ever to fail,
// the zero key matches no peer and no client.
func derpKey(p keys.NodePublic) key.NodePublic {
	var k key.NodePublic
	text, _ := p.MarshalText()
	if k.UnmarshalText(text) != nil {
		return key.NodePublic{}
	}
	return k
}

func fromDerpKey(k key.NodePublic) keys.NodePublic {
	var raw [32]byte
	k.AppendTo(raw[:0])
	return keys.NodePublicFromRaw32(raw)
}

// isHandshake reports whether a WireGuard message is a handshake
// initiation, response or cookie reply (types 1-3, little-endian uint32).
func isHandshake(b []byte) bool {
	return len(b) >= 4 && b[0] >= 1 && b[0] <= 3 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

func endpointAddr(ep conn.Endpoint) netip.AddrPort {
	var ap netip.AddrPort
	switch e := ep.(type) {
	case *udpEndpoint:
		ap = e.dst
	case *conn.StdNetEndpoint:
		ap = e.AddrPort
	default:
		if a, err := netip.ParseAddrPort(ep.DstToString()); err == nil {
			ap = a
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// direct is the inner endpoint e stands for: its candidate's for the
// direct path, else the configured candidate's, else nil.
func (e *peerEndpoint) direct() conn.Endpoint {
	if e.cand != nil {
		return e.cand.endpoint()
	}
	if c := e.p.configured.Load(); c != nil {
		return c.endpoint()
	}
	return nil
}

// DstToString round-trips through ParseEndpoint, so a session the watchdog
// restarts keeps its key and configured candidate; the UAPI server shows
// only the address.
func (e *peerEndpoint) DstToString() string {
	var a netip.AddrPort
	if c := e.p.configured.Load(); c != nil {
		a = c.addr
	}
	return relayEndpointString(e.p.pub, a)
}

// DstToBytes feeds WireGuard's cookie MACs: the address for the direct
// path, the key for the relay.
func (e *peerEndpoint) DstToBytes() []byte {
	if e.cand != nil {
		return e.cand.endpoint().DstToBytes()
	}
	raw := e.p.pub.Raw32()
	return raw[:]
}

func (e *peerEndpoint) DstIP() netip.Addr {
	if d := e.direct(); d != nil {
		return d.DstIP()
	}
	return netip.Addr{}
}

func (e *peerEndpoint) ClearSrc() {
	if d := e.direct(); d != nil {
		d.ClearSrc()
	}
}

func (e *peerEndpoint) SrcToString() string {
	if d := e.direct(); d != nil {
		return d.SrcToString()
	}
	return ""
}

func (e *peerEndpoint) SrcIP() netip.Addr {
	if d := e.direct(); d != nil {
		return d.SrcIP()
	}
	return netip.Addr{}
}
