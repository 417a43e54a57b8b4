package keys

import (
	"crypto/rand"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
)

// Shamir secret sharing over Z_L, L the prime order of the edwards25519
// group, of an epoch key's clamped X25519 scalar k (reduced mod L). Sharing
// over the scalar field instead of byte by byte keeps the shares linear in
// the group: a custodian's answer [k_i]·E to a segment's ephemeral E can be
// combined with another's into [k]·E by Lagrange interpolation in the
// exponent, so a requester gets one segment's X25519 shared secret without
// anyone rebuilding k (threshold.go). The public shares K_i = [k_i]·B let
// anyone check an answer.
//
// Scalar arithmetic is filippo.io/edwards25519's, constant time on secret
// data; only the x coordinates (public) steer control flow.

// Share is one point of a Shamir split over Z_L: Y is f(X), a canonical
// little-endian scalar of 32 bytes. Y is secret; Share never prints it
// (String, GoString and Format redact).
type Share struct {
	X byte
	Y []byte
}

// scalarLen is the length of a canonical scalar encoding.
const scalarLen = 32

// shareVersion is the first byte of a share's binary form: 2 is a scalar
// mod L (1 was a byte-wise GF(2^8) share, which nothing reads any more).
const shareVersion = 2

// ErrBadShare is wrapped by every error about malformed or inconsistent shares.
var ErrBadShare = errors.New("bad share")

// testHookSplitWiped, when set by a test, sees splitScalar's coefficient
// after it was wiped.
var testHookSplitWiped func(coeff []byte)

// splitScalar divides k into n shares (x = 1..n) of which any t rebuild it
// and any t-1 reveal nothing about it, and returns the public shares
// [f(x)]·B beside them. The coefficients come from crypto/rand and are
// wiped before it returns; the caller wipes the shares.
func splitScalar(k *edwards25519.Scalar, n, t int) ([]Share, [][32]byte, error) {
	if t < 2 || n < t || n > maxShares {
		return nil, nil, fmt.Errorf("keys: shamir split: want 2 ≤ t ≤ n ≤ %d, have t=%d n=%d", maxShares, t, n)
	}
	coeffs := make([]*edwards25519.Scalar, t-1)
	var wide [64]byte
	defer func() {
		clear(wide[:])
		for _, c := range coeffs {
			if c != nil {
				c.Set(edwards25519.NewScalar())
				if testHookSplitWiped != nil {
					testHookSplitWiped(c.Bytes())
				}
			}
		}
	}()
	for j := range coeffs {
		if _, err := rand.Read(wide[:]); err != nil {
			return nil, nil, fmt.Errorf("keys: shamir split: %w", err)
		}
		c, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
		if err != nil {
			return nil, nil, fmt.Errorf("keys: shamir split: %w", err)
		}
		coeffs[j] = c
	}
	shares := make([]Share, n)
	pubs := make([][32]byte, n)
	for s := range shares {
		x := byte(s + 1)
		y := evalAt(k, coeffs, x)
		shares[s] = Share{X: x, Y: y.Bytes()}
		copy(pubs[s][:], edwards25519.NewIdentityPoint().ScalarBaseMult(y).Bytes())
		y.Set(edwards25519.NewScalar())
	}
	return shares, pubs, nil
}

// evalAt evaluates k + c1·x + … + cd·x^d by Horner's rule.
func evalAt(k *edwards25519.Scalar, coeffs []*edwards25519.Scalar, x byte) *edwards25519.Scalar {
	xs := smallScalar(uint64(x))
	y := edwards25519.NewScalar()
	for j := len(coeffs) - 1; j >= 0; j-- {
		y.MultiplyAdd(y, xs, coeffs[j])
	}
	return y.MultiplyAdd(y, xs, k)
}

// smallScalar is v as a scalar (v < L).
func smallScalar(v uint64) *edwards25519.Scalar {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
	s, _ := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	return s
}

// lagrangeAt is the Lagrange basis value of xs[i] evaluated at `at`:
// ∏_{j≠i} (at − x_j) / (x_i − x_j) mod L. The x values are public and
// distinct (checkXs).
func lagrangeAt(xs []byte, i int, at byte) *edwards25519.Scalar {
	num, den := smallScalar(1), smallScalar(1)
	xi := smallScalar(uint64(xs[i]))
	a := smallScalar(uint64(at))
	for j, xj := range xs {
		if j == i {
			continue
		}
		x := smallScalar(uint64(xj))
		num.Multiply(num, edwards25519.NewScalar().Subtract(a, x))
		den.Multiply(den, edwards25519.NewScalar().Subtract(xi, x))
	}
	return num.Multiply(num, invertScalar(den))
}

// invertScalar returns s^(L−2) = s^-1 mod L (s ≠ 0). Only public values
// (differences of x coordinates) are inverted.
func invertScalar(s *edwards25519.Scalar) *edwards25519.Scalar {
	// L − 2, little-endian.
	e := [32]byte{0xeb, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	r := smallScalar(1)
	for i := 255; i >= 0; i-- {
		r.Multiply(r, r)
		if e[i/8]>>(i%8)&1 == 1 {
			r.Multiply(r, s)
		}
	}
	return r
}

// checkXs refuses fewer than two x values, a zero one or a repeated one.
func checkXs(xs []byte) error {
	if len(xs) < 2 || len(xs) > maxShares {
		return fmt.Errorf("%d shares, want 2 to %d: %w", len(xs), maxShares, ErrBadShare)
	}
	var seen [256]bool
	for _, x := range xs {
		switch {
		case x == 0:
			return fmt.Errorf("share with x = 0: %w", ErrBadShare)
		case seen[x]:
			return fmt.Errorf("two shares with x = %d: %w", x, ErrBadShare)
		}
		seen[x] = true
	}
	return nil
}

// scalar returns the share's value as a scalar; the caller wipes it.
func (s Share) scalar() (*edwards25519.Scalar, error) {
	if s.X == 0 || len(s.Y) != scalarLen {
		return nil, fmt.Errorf("x = %d, %d bytes: %w", s.X, len(s.Y), ErrBadShare)
	}
	v, err := edwards25519.NewScalar().SetCanonicalBytes(s.Y)
	if err != nil {
		return nil, fmt.Errorf("not a canonical scalar: %w", ErrBadShare)
	}
	return v, nil
}

// Zero wipes the share in place.
func (s *Share) Zero() {
	clear(s.Y)
	s.X = 0
}

// String never reveals Y.
func (s Share) String() string { return fmt.Sprintf("share{x=%d, %d bytes redacted}", s.X, len(s.Y)) }

// GoString never reveals Y, also under %#v.
func (s Share) GoString() string { return s.String() }

// Format never reveals Y under any verb.
func (s Share) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// MarshalSecret returns the share's binary form: version (2), x, y. It is
// deliberately not MarshalBinary, so that no encoder writes it by accident.
// The caller wipes the result.
func (s Share) MarshalSecret() []byte {
	b := make([]byte, 0, 2+len(s.Y))
	b = append(b, shareVersion, s.X)
	return append(b, s.Y...)
}

// ParseShare decodes MarshalSecret's form strictly: known version, x ≠ 0,
// exactly one canonical scalar. The result does not alias b. Errors never
// echo the input.
func ParseShare(b []byte) (Share, error) {
	switch {
	case len(b) != 2+scalarLen:
		return Share{}, fmt.Errorf("keys: share: %d bytes, want %d: %w", len(b), 2+scalarLen, ErrBadShare)
	case b[0] != shareVersion:
		return Share{}, fmt.Errorf("keys: share: unknown version %d: %w", b[0], ErrBadShare)
	case b[1] == 0:
		return Share{}, fmt.Errorf("keys: share: x = 0: %w", ErrBadShare)
	}
	s := Share{X: b[1], Y: append([]byte(nil), b[2:]...)}
	if _, err := s.scalar(); err != nil {
		s.Zero()
		return Share{}, fmt.Errorf("keys: share: %w", err)
	}
	return s, nil
}
