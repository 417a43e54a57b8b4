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

// Releasing a share (DESIGN §7): a custodian that sees an approved request
// opens its share of each epoch key in scope and seals it to the request's
// one-time X25519 key with HPKE (RFC 9180, base mode, DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM). The ReleaseContext — request,
// custodian, camera, epoch — is the HPKE info, so a sealed share opens only
// for the request, epoch and custodian slot it was released for; it is also
// sent in clear (release_wire.go) so the requester knows what it received.

// ReleaseKey is a requester's one-time X25519 key pair. It is made in memory,
// lives until the request expires, and is never written anywhere: it has no
// marshalling of its private half at all. It never prints, cannot be compared
// with ==, and is wiped by Zero.
//
// The scalar's one long-lived copy is here. NewReleaseKey gets it from a
// crypto/ecdh key and each OpenShare makes a transient one from it; their
// internal copies, and HPKE's derived secrets, are beyond our reach to wipe
// (Go offers no way) and become garbage when those calls return. The zero
// ReleaseKey opens nothing.
type ReleaseKey struct {
	_      [0]func()
	scalar [32]byte
	pub    [32]byte
	zeroed bool
}

// ReleaseContext says what a released share is: the request it was released
// under, the custodian that released it, and the epoch key it is a share of.
// All of it is public, and all of it is bound into the encryption.
type ReleaseContext struct {
	RequestID   string
	Custodian   string         // the custodian's name ("dc-a")
	CustodianFP KeyFingerprint // the custodian key's fingerprint
	Camera      string
	EpochStart  time.Time // whole seconds; UTC once opened
	EpochEnd    time.Time
	EpochFP     KeyFingerprint // the epoch key's fingerprint
}

// ErrBadRelease is wrapped by every error about a released share that is
// malformed or does not open with the key (the two are indistinguishable).
var ErrBadRelease = errors.New("bad released share")

// ErrReleaseMismatch is wrapped when a released share opens but belongs to
// another request, epoch or custodian than the one expected.
var ErrReleaseMismatch = errors.New("released share is not the one expected")

// releaseInfoDomain starts the HPKE info of every release.
const releaseInfoDomain = "custos/release/v1\x00"

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
// refuses the all-zero key; SealShare refuses other low-order
// points.
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

// SealShare encrypts s to recipient, bound to ctx, and returns the wire
// message (release_wire.go). The custodian that calls it must have checked
// that the request is approved and that ctx's epoch is in its scope.
func SealShare(recipient [32]byte, ctx ReleaseContext, s Share) ([]byte, error) {
	if err := ctx.check(); err != nil {
		return nil, fmt.Errorf("keys: seal share: %w", err)
	}
	if s.X == 0 || len(s.Y) == 0 || len(s.Y) > MaxSecretLen {
		return nil, fmt.Errorf("keys: seal share: x = %d, %d bytes: %w", s.X, len(s.Y), ErrBadShare)
	}
	kem, kdf, aead := releaseSuite()
	pk, err := kem.NewPublicKey(recipient[:])
	if err != nil {
		return nil, fmt.Errorf("keys: seal share: recipient: %w", ErrBadKey)
	}
	pt := s.MarshalSecret()
	defer clear(pt)
	head := ctx.encode()
	sealed, err := hpke.Seal(pk, kdf, aead, releaseInfo(head), pt)
	if err != nil {
		// Low-order recipient points fail here (all-zero shared secret).
		return nil, fmt.Errorf("keys: seal share: %w", err)
	}
	return appendRelease(head, sealed), nil
}

// OpenShare parses a released share strictly and opens it. It returns the
// context the share is bound to, unchecked against any expectation: use
// OpenShareFor, or ReleaseContext.Check, before trusting it for a purpose.
// The caller wipes the share.
func (k *ReleaseKey) OpenShare(msg []byte) (ReleaseContext, Share, error) {
	if k.IsZero() {
		return ReleaseContext{}, Share{}, errors.New("keys: open released share: the release key is wiped")
	}
	ctx, head, sealed, err := parseRelease(msg)
	if err != nil {
		return ReleaseContext{}, Share{}, fmt.Errorf("keys: open released share: %w", err)
	}
	s, err := k.open(releaseInfo(head), sealed)
	if err != nil {
		return ReleaseContext{}, Share{}, fmt.Errorf("keys: open released share from %s for epoch %s: %w", ctx.Custodian, ctx.EpochFP, err)
	}
	return ctx, s, nil
}

// open decrypts sealed (enc || ciphertext) with info and parses the share.
func (k *ReleaseKey) open(info, sealed []byte) (Share, error) {
	priv, err := ecdh.X25519().NewPrivateKey(k.scalar[:])
	if err != nil {
		return Share{}, fmt.Errorf("release key: %w", ErrBadKey)
	}
	hk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return Share{}, fmt.Errorf("release key: %w", ErrBadKey)
	}
	_, kdf, aead := releaseSuite()
	pt, err := hpke.Open(hk, kdf, aead, info, sealed)
	if err != nil {
		// Wrong key, other context or tampering: HPKE cannot tell them apart.
		return Share{}, fmt.Errorf("does not open with this key and context: %w", ErrBadRelease)
	}
	defer clear(pt)
	s, err := ParseShare(pt)
	if err != nil {
		return Share{}, fmt.Errorf("%w: %w", err, ErrBadRelease)
	}
	return s, nil
}

// OpenShareFor opens a released share and checks it is the one expected:
// released under requestID, for rec's epoch key, by a custodian that holds
// a share in rec, with that custodian's x coordinate. Anything else is
// refused (ErrReleaseMismatch) and the share wiped.
func (k *ReleaseKey) OpenShareFor(msg []byte, requestID string, rec *EpochRecord) (Share, error) {
	ctx, s, err := k.OpenShare(msg)
	if err != nil {
		return Share{}, err
	}
	if err := ctx.Check(requestID, rec); err != nil {
		s.Zero()
		return Share{}, err
	}
	if i := rec.shareIndex(ctx.CustodianFP); int(s.X) != i+1 {
		s.Zero()
		return Share{}, fmt.Errorf("keys: released share from %s carries x = %d, not its position %d: %w", ctx.Custodian, s.X, i+1, ErrReleaseMismatch)
	}
	return s, nil
}

// Check reports whether c is the context of a share of rec's epoch key
// released under requestID by one of rec's custodians (name and key).
func (c ReleaseContext) Check(requestID string, rec *EpochRecord) error {
	if _, _, err := rec.check(); err != nil {
		return fmt.Errorf("keys: check released share: %w", err)
	}
	i := rec.shareIndex(c.CustodianFP)
	switch {
	case c.RequestID != requestID:
		return fmt.Errorf("keys: released share is for request %q, not %q: %w", c.RequestID, requestID, ErrReleaseMismatch)
	case c.EpochFP != rec.Fingerprint || c.Camera != rec.Camera ||
		!c.EpochStart.Equal(rec.Start) || !c.EpochEnd.Equal(rec.End):
		return fmt.Errorf("keys: released share is of epoch %s (%s from %s), not %s: %w",
			c.EpochFP, c.Camera, c.EpochStart.UTC().Format(time.RFC3339), rec.Fingerprint, ErrReleaseMismatch)
	case i < 0 || rec.Shares[i].Custodian != c.Custodian:
		return fmt.Errorf("keys: released share comes from %s (%s), not a custodian of epoch %s: %w",
			c.Custodian, c.CustodianFP, rec.Fingerprint, ErrReleaseMismatch)
	}
	return nil
}

// ReleaseShare is what a custodian does for one epoch of an approved
// request: open its share of rec's key, seal it to the request's one-time
// key, wipe it. The caller must have checked that the request is approved
// and that rec is in its scope.
func (k *CustodianKey) ReleaseShare(rec *EpochRecord, requestID string, recipient [32]byte) ([]byte, error) {
	s, err := k.OpenShare(rec)
	if err != nil {
		return nil, err
	}
	defer s.Zero()
	ctx := ReleaseContext{
		RequestID: requestID, Custodian: k.Name(), CustodianFP: k.Fingerprint(),
		Camera: rec.Camera, EpochStart: rec.Start, EpochEnd: rec.End, EpochFP: rec.Fingerprint,
	}
	return SealShare(recipient, ctx, s)
}
