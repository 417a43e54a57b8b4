package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"tailscale.com/types/key"
)

// NodePrivate is a node's WireGuard (Curve25519) private key.
//
// It wraps tailscale.com/types/key.NodePrivate, which already gives a typed
// text form ("privkey:…"), a constant-time Equal and clamped generation. The
// wrapper adds what a security product needs on top: it never prints (String,
// GoString and %v all redact), it cannot be compared with == (the func field),
// and it can be zeroed in place.
type NodePrivate struct {
	_ [0]func() // not comparable: use Equal, which is constant-time
	k key.NodePrivate
}

// NodePublic is a node's WireGuard public key. Its text form is
// "nodekey:<64 hex>", the same as Tailscale's, so keys copy between tools.
// It is a plain value: comparable with ==, usable as a map key.
type NodePublic struct {
	k [32]byte
}

// ErrBadKey is wrapped by every key parsing error.
var ErrBadKey = errors.New("bad key")

// NewNodePrivate makes a fresh node key from crypto/rand.
func NewNodePrivate() NodePrivate { return NodePrivate{k: key.NewNode()} }

// IsZero reports whether k is the zero key (never generated, or zeroed).
func (k NodePrivate) IsZero() bool { return k.k.IsZero() }

// Equal compares in constant time.
func (k NodePrivate) Equal(o NodePrivate) bool { return k.k.Equal(o.k) }

// Public returns the public half.
func (k NodePrivate) Public() NodePublic {
	var p NodePublic
	copy(p.k[:], k.k.Public().AppendTo(nil))
	return p
}

// Zero overwrites the key in place. Copies made earlier are not affected, so
// hold private keys by pointer where their lifetime matters.
func (k *NodePrivate) Zero() { k.k = key.NodePrivate{} }

// String never reveals the key.
func (k NodePrivate) String() string { return "privkey:[redacted]" }

// GoString never reveals the key, also under %#v.
func (k NodePrivate) GoString() string { return k.String() }

// Format never reveals the key under any verb.
func (k NodePrivate) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// MarshalSecretText returns the "privkey:<hex>" form for the key file. It is
// deliberately not MarshalText, so that no encoder writes it by accident.
func (k NodePrivate) MarshalSecretText() ([]byte, error) { return k.k.MarshalText() }

// ParseNodePrivate parses the "privkey:<hex>" form.
func ParseNodePrivate(b []byte) (NodePrivate, error) {
	var k NodePrivate
	if err := k.k.UnmarshalText(b); err != nil {
		// The input is secret: do not echo it.
		return NodePrivate{}, fmt.Errorf("keys: private key: %w (want privkey:<64 hex digits>)", ErrBadKey)
	}
	if k.IsZero() {
		return NodePrivate{}, fmt.Errorf("keys: private key is all zeros: %w", ErrBadKey)
	}
	return k, nil
}

// Raw32 returns the raw key bytes, for crypto that needs them (the caller
// zeroes its copy).
func (k NodePrivate) Raw32() [32]byte { return k.k.Raw32() }

// nodePublicPrefix is Tailscale's text prefix for node public keys.
const nodePublicPrefix = "nodekey:"

// ParseNodePublic parses "nodekey:<64 hex>". Errors never echo the input:
// what was pasted where a public key belongs may be a private key.
func ParseNodePublic(s string) (NodePublic, error) {
	if strings.HasPrefix(s, "privkey:") {
		return NodePublic{}, fmt.Errorf("keys: this is a PRIVATE key where a public key belongs; remove it from here and make the node a new key: %w", ErrBadKey)
	}
	hexPart, ok := strings.CutPrefix(s, nodePublicPrefix)
	if !ok {
		return NodePublic{}, fmt.Errorf("keys: public key must start with %q: %w (want nodekey:<64 hex digits>)", nodePublicPrefix, ErrBadKey)
	}
	p, err := ParseNodePublicHex(hexPart)
	if err != nil {
		return NodePublic{}, fmt.Errorf("keys: public key: %w (want nodekey:<64 hex digits>)", err)
	}
	return p, nil
}

// ParseNodePublicHex parses the untyped hex form used by the WireGuard UAPI.
func ParseNodePublicHex(s string) (NodePublic, error) {
	var p NodePublic
	if len(s) != 64 {
		return NodePublic{}, fmt.Errorf("%d hex digits instead of 64: %w", len(s), ErrBadKey)
	}
	if _, err := hex.Decode(p.k[:], []byte(s)); err != nil {
		return NodePublic{}, fmt.Errorf("not hexadecimal: %w", ErrBadKey)
	}
	if p.IsZero() {
		return NodePublic{}, fmt.Errorf("all zeros: %w", ErrBadKey)
	}
	return p, nil
}

// NodePublicFromRaw32 makes a key from raw bytes (as wireguard-go reports them).
func NodePublicFromRaw32(b [32]byte) NodePublic { return NodePublic{k: b} }

func (p NodePublic) IsZero() bool         { return p.k == [32]byte{} }
func (p NodePublic) String() string       { return nodePublicPrefix + hex.EncodeToString(p.k[:]) }
func (p NodePublic) Raw32() [32]byte      { return p.k }
func (p NodePublic) WireGuardHex() string { return hex.EncodeToString(p.k[:]) }
func (p NodePublic) Compare(o NodePublic) int {
	return bytes.Compare(p.k[:], o.k[:])
}

// ShortString is a short, human-readable form for logs: "[abcde]", the
// first five base64 characters, as wireguard-go and Tailscale print keys.
func (p NodePublic) ShortString() string {
	return "[" + base64.StdEncoding.EncodeToString(p.k[:])[:5] + "]"
}

func (p NodePublic) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *NodePublic) UnmarshalText(b []byte) error {
	q, err := ParseNodePublic(string(b))
	*p = q
	return err
}
