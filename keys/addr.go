package keys

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
)

// A mesh address is derived, never allocated (DESIGN §5):
//
//	prefix  = fd ‖ SHA-256("custos/federation/v1\x00" ‖ federation)[:5]     (a /48 ULA)
//	address = prefix ‖ SHA-256("custos/mesh-addr/v1\x00" ‖ prefix ‖ pubkey)[:10]
//
// 80 bits of hash make grinding a key onto another node's address cost about
// 2^80 work, and anyone holding a public key can check an address against it.
// WireGuard's cryptokey routing then pins each address to its key: a peer's
// AllowedIPs is exactly its own /128.

// MeshPrefix returns the federation's /48 ULA prefix.
func MeshPrefix(federation string) (netip.Prefix, error) {
	if strings.TrimSpace(federation) == "" {
		return netip.Prefix{}, fmt.Errorf("keys: empty federation name")
	}
	h := sha256.Sum256(append([]byte("custos/federation/v1\x00"), federation...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], h[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48), nil
}

// MeshAddr returns the mesh address of pub in the federation prefix.
func MeshAddr(prefix netip.Prefix, pub NodePublic) netip.Addr {
	p := prefix.Masked().Addr().As16()
	raw := pub.Raw32()
	h := sha256.New()
	h.Write([]byte("custos/mesh-addr/v1\x00"))
	h.Write(p[:6])
	h.Write(raw[:])
	sum := h.Sum(nil)
	copy(p[6:], sum[:10])
	return netip.AddrFrom16(p)
}

// CheckMeshAddr reports whether addr is the address pub must use in prefix.
func CheckMeshAddr(prefix netip.Prefix, pub NodePublic, addr netip.Addr) bool {
	return MeshAddr(prefix, pub) == addr
}
