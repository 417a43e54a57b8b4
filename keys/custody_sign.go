package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
)

// A store signs its footage with the node key the policy already holds for
// it: the X25519 key of its WireGuard identity. XEdDSA (Signal's
// specification, "The XEdDSA and VXEdDSA Signature Schemes", 2016) signs
// with a Montgomery private key so that a plain Ed25519 verifier checks the
// signature against the Edwards form of the Montgomery public key. So no
// second key needs enrolling, rotating or guarding, the policy's record of
// a node (kept after revocation) is enough to verify what it recorded, and
// verification is crypto/ed25519. No maintained Go package implements
// XEdDSA, hence these few lines over filippo.io/edwards25519, the group
// arithmetic the standard library's own Ed25519 uses.

// CustodySigner signs a store's epoch records and segment links with its
// node key. It holds the private scalar until Zero.
type CustodySigner struct {
	name string
	a    *edwards25519.Scalar // the XEdDSA private scalar (k or −k)
	pub  NodePublic
	ed   ed25519.PublicKey // the Edwards form of pub, sign bit 0
}

// NewCustodySigner makes the signer of node name from its private key. The
// caller keeps (and zeroes) k; the signer keeps only the derived scalar.
func NewCustodySigner(name string, k *NodePrivate) (*CustodySigner, error) {
	if err := validSignerName(name); err != nil {
		return nil, fmt.Errorf("keys: custody signer: %w", err)
	}
	if k == nil || k.IsZero() {
		return nil, fmt.Errorf("keys: custody signer %s: no node key: %w", name, ErrBadKey)
	}
	raw := k.Raw32()
	defer clear(raw[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(raw[:])
	if err != nil {
		return nil, fmt.Errorf("keys: custody signer %s: %w", name, err)
	}
	e := edwards25519.NewIdentityPoint().ScalarBaseMult(s).Bytes()
	if e[31]&0x80 != 0 {
		// XEdDSA's public key has sign bit 0; sign with −k so the key
		// pair matches.
		s.Negate(s)
		e[31] &^= 0x80
	}
	return &CustodySigner{name: name, a: s, pub: k.Public(), ed: ed25519.PublicKey(e)}, nil
}

// Named returns a signer for the same key under another name (a node
// learns its policy name after it starts). It shares the private scalar:
// zeroing either zeroes both.
func (s *CustodySigner) Named(name string) (*CustodySigner, error) {
	if err := validSignerName(name); err != nil {
		return nil, fmt.Errorf("keys: custody signer: %w", err)
	}
	c := *s
	c.name = name
	return &c, nil
}

// Name is the policy name of the signing node.
func (s *CustodySigner) Name() string { return s.name }

// Public is the node key the signatures verify against.
func (s *CustodySigner) Public() NodePublic { return s.pub }

// Zero overwrites the private scalar; the signer cannot sign afterwards.
func (s *CustodySigner) Zero() {
	if s != nil && s.a != nil {
		s.a.Set(edwards25519.NewScalar())
		s.a = nil
	}
}

// sign returns the XEdDSA signature of msg: R ‖ S, an Ed25519 signature.
func (s *CustodySigner) sign(msg []byte) ([64]byte, error) {
	var sig [64]byte
	if s == nil || s.a == nil || s.a.Equal(edwards25519.NewScalar()) == 1 {
		return sig, errors.New("keys: custody signer is zeroed")
	}
	var z [64]byte
	if _, err := rand.Read(z[:]); err != nil {
		return sig, fmt.Errorf("keys: custody signature: %w", err)
	}
	// r = hash1(a ‖ M ‖ Z) mod L, hash1 prefixed with 2^256 − 2 (little-endian).
	h := sha512.New()
	var prefix [32]byte
	for i := range prefix {
		prefix[i] = 0xff
	}
	prefix[0] = 0xfe
	h.Write(prefix[:])
	h.Write(s.a.Bytes())
	h.Write(msg)
	h.Write(z[:])
	digest := h.Sum(nil)
	r, err := edwards25519.NewScalar().SetUniformBytes(digest)
	clear(digest)
	clear(z[:])
	if err != nil {
		return sig, err
	}
	R := edwards25519.NewIdentityPoint().ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(R)
	h.Write(s.ed)
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return sig, err
	}
	S := edwards25519.NewScalar().MultiplyAdd(k, s.a, r)
	r.Set(edwards25519.NewScalar())
	copy(sig[:32], R)
	copy(sig[32:], S.Bytes())
	return sig, nil
}

// SignStatement signs msg, a statement the node makes in its own name (a
// policy command it submits: the caller passes policy.SignedBytes), with
// its node key: a 64-byte XEdDSA signature that crypto/ed25519 verifies
// against the Edwards form of Public. A statement that starts with one of
// the contexts of this package's own seals and receipts is refused, so a
// statement can never stand for a seal.
func (s *CustodySigner) SignStatement(msg []byte) ([]byte, error) {
	for _, c := range []string{epochSealContext, segmentSealContext, erasureContext} {
		if bytes.HasPrefix(msg, []byte(c)) {
			return nil, fmt.Errorf("keys: a statement may not start with the context %q of a custody signature", strings.TrimSuffix(c, "\x00"))
		}
	}
	sig, err := s.sign(msg)
	if err != nil {
		return nil, err
	}
	return sig[:], nil
}

// edwardsOf returns the Ed25519 public key (sign bit 0) of the X25519
// public key p: y = (u − 1)/(u + 1). It refuses a non-canonical u and
// u = −1, which has no Edwards form.
func edwardsOf(p NodePublic) (ed25519.PublicKey, error) {
	raw := p.Raw32()
	y, err := edwardsY(raw[:])
	if err != nil {
		return nil, fmt.Errorf("node key has no Edwards form: %v: %w", err, ErrBadKey)
	}
	return ed25519.PublicKey(y), nil
}

// verifyXEdDSA checks sig over msg against node key p.
func verifyXEdDSA(p NodePublic, msg []byte, sig [64]byte) error {
	ed, err := edwardsOf(p)
	if err != nil {
		return err
	}
	if !ed25519.Verify(ed, msg, sig[:]) {
		return ErrBadCustody
	}
	return nil
}

// ErrBadCustody is wrapped by every error about a custody signature or
// chain that does not verify.
var ErrBadCustody = errors.New("custody signature does not verify")

// validSignerName accepts the policy's node names (1–63 letters, digits,
// '-', '_', '.').
func validSignerName(s string) error {
	if s == "" || len(s) > maxCustodianNameLen || !nameChars(s, "-_.") {
		return errors.New("signer must be a node name of 1 to 63 letters, digits, dash, underscore and dot")
	}
	return nil
}
