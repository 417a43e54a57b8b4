package keys

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Releasing a segment (DESIGN §7): a custodian that sees an approved request
// answers, for each segment in scope, its share times the segment's
// ephemeral key with a proof (threshold.go), sealed to the request's
// one-time X25519 key with HPKE (RFC 9180, base mode, DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM). Shares themselves never leave
// their custodian. The ReleaseContext — request, custodian, epoch, segment,
// ephemeral key — is the HPKE info, so a sealed answer opens only for the
// request, segment and custodian slot it was released for; it is also sent
// in clear (release_wire.go) so the requester knows what it received.

// ReleaseKey is a requester's one-time X25519 key pair. It is made in memory,
// lives until the request expires, and is never written anywhere: it has no
// marshalling of its private half at all. It never prints, cannot be compared
// with ==, and is wiped by Zero.
//
// The scalar's one long-lived copy is here. NewReleaseKey gets it from a
// crypto/ecdh key and each opening makes a transient one from it; their
// internal copies, and HPKE's derived secrets, are beyond our reach to wipe
// (Go offers no way) and become garbage when those calls return. The zero
// ReleaseKey opens nothing.
type ReleaseKey struct {
	_      [0]func()
	scalar [32]byte
	pub    [32]byte
	zeroed bool
}

// ReleaseContext says what a released answer is: the request it was
// released under, the custodian that released it, the epoch key and the
// segment it answers for. All of it is public, and all of it is bound into
// the encryption and the proof.
type ReleaseContext struct {
	RequestID    string
	Custodian    string         // the custodian's name ("dc-a")
	CustodianFP  KeyFingerprint // the custodian key's fingerprint
	Camera       string
	EpochStart   time.Time // whole seconds; UTC once opened
	EpochEnd     time.Time
	EpochFP      KeyFingerprint // the epoch key's fingerprint
	SegmentStart time.Time      // the segment's span, to the nanosecond, as the custodian's index has it
	SegmentEnd   time.Time
	Ephemeral    [32]byte // the segment's X25519 ephemeral key
}

// ErrBadRelease is wrapped by every error about a released answer that is
// malformed or does not open with the key (the two are indistinguishable).
var ErrBadRelease = errors.New("bad released answer")

// ErrReleaseMismatch is wrapped when a released answer opens but belongs to
// another request, epoch, segment or custodian than the one expected.
var ErrReleaseMismatch = errors.New("released answer is not the one expected")

// releaseInfoDomain starts the HPKE info of every release.
const releaseInfoDomain = "custos/release/v2\x00"

const maxRequestIDLen = 127

// hpke suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
func releaseSuite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES256GCM()
}

// NewReleaseKey makes a fresh one-time key pair from crypto/rand.
func NewReleaseKey() (*ReleaseKey, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keys: new release key: %w", err)
	}
	k := &ReleaseKey{}
	b := priv.Bytes()
	copy(k.scalar[:], b)
	clear(b)
	copy(k.pub[:], priv.PublicKey().Bytes())
	return k, nil
}

// Public is the public half, which the request carries.
func (k *ReleaseKey) Public() [32]byte { return k.pub }

// PublicHex is the public half in lower-case hex (ParseReleasePublicHex).
func (k *ReleaseKey) PublicHex() string { return hex.EncodeToString(k.pub[:]) }

// Zero wipes the private half; the key opens nothing afterwards.
func (k *ReleaseKey) Zero() {
	clear(k.scalar[:])
	k.zeroed = true
}

// IsZero reports whether the key was wiped (or never made).
func (k *ReleaseKey) IsZero() bool { return k == nil || k.zeroed || k.pub == [32]byte{} }

// String never reveals the key.
func (k ReleaseKey) String() string { return "releasekey:[redacted]" }

// GoString never reveals the key, also under %#v.
func (k ReleaseKey) GoString() string { return k.String() }

// Format never reveals the key under any verb.
func (k ReleaseKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// ParseReleasePublicHex parses a release public key in the one form
// PublicHex writes (64 lower-case hex digits, as the policy stores it). It
// refuses the all-zero key; sealing refuses other low-order points.
func ParseReleasePublicHex(s string) ([32]byte, error) {
	var p [32]byte
	if len(s) != 64 {
		return p, fmt.Errorf("keys: release public key: %d hex digits instead of 64: %w", len(s), ErrBadKey)
	}
	if _, err := hex.Decode(p[:], []byte(s)); err != nil || hex.EncodeToString(p[:]) != s {
		return [32]byte{}, fmt.Errorf("keys: release public key: not lower-case hexadecimal: %w", ErrBadKey)
	}
	if p == [32]byte{} {
		return p, fmt.Errorf("keys: release public key: all zeros: %w", ErrBadKey)
	}
	return p, nil
}

// sealRelease encrypts pt to recipient with HPKE, the context head as
// info, and returns the wire message (release_wire.go).
func sealRelease(recipient [32]byte, head, pt []byte) ([]byte, error) {
	kem, kdf, aead := releaseSuite()
	pk, err := kem.NewPublicKey(recipient[:])
	if err != nil {
		return nil, fmt.Errorf("keys: seal partial: recipient: %w", ErrBadKey)
	}
	sealed, err := hpke.Seal(pk, kdf, aead, releaseInfo(head), pt)
	if err != nil {
		// Low-order recipient points fail here (all-zero shared secret).
		return nil, fmt.Errorf("keys: seal partial: %w", err)
	}
	return appendRelease(head, sealed), nil
}

// openRelease parses a released answer strictly and opens it. It returns
// the context, unchecked against any expectation (EpochOpener.OpenPartial
// checks it), its encoded bytes and the plaintext, which the caller wipes.
func (k *ReleaseKey) openRelease(msg []byte) (ReleaseContext, []byte, []byte, error) {
	if k.IsZero() {
		return ReleaseContext{}, nil, nil, errors.New("keys: open released answer: the release key is wiped")
	}
	ctx, head, sealed, err := parseRelease(msg)
	if err != nil {
		return ReleaseContext{}, nil, nil, fmt.Errorf("keys: open released answer: %w", err)
	}
	pt, err := k.open(releaseInfo(head), sealed)
	if err != nil {
		return ReleaseContext{}, nil, nil, fmt.Errorf("keys: open released answer from %s for epoch %s: %w", ctx.Custodian, ctx.EpochFP, err)
	}
	return ctx, head, pt, nil
}

// ReleasedContext opens a released answer and returns what it is bound to,
// without checking it against a segment (the node uses it to file answers
// handed in by the recovery custodian). The answer itself is wiped.
func (k *ReleaseKey) ReleasedContext(msg []byte) (ReleaseContext, error) {
	ctx, _, pt, err := k.openRelease(msg)
	clear(pt)
	return ctx, err
}

// open decrypts sealed (enc || ciphertext) with info.
func (k *ReleaseKey) open(info, sealed []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(k.scalar[:])
	if err != nil {
		return nil, fmt.Errorf("release key: %w", ErrBadKey)
	}
	hk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("release key: %w", ErrBadKey)
	}
	_, kdf, aead := releaseSuite()
	pt, err := hpke.Open(hk, kdf, aead, info, sealed)
	if err != nil {
		// Wrong key, other context or tampering: HPKE cannot tell them apart.
		return nil, fmt.Errorf("does not open with this key and context: %w", ErrBadRelease)
	}
	if len(pt) != partialLen {
		clear(pt)
		return nil, fmt.Errorf("%d-byte answer: %w", len(pt), ErrBadRelease)
	}
	return pt, nil
}
