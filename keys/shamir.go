package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Shamir secret sharing over GF(2^8), byte by byte.
//
// Why our own: no vetted module fits. hashicorp/vault/shamir is the usual
// choice, but it lives inside the huge vault module and multiplies with
// log/exp table lookups indexed by secret bytes, which leak through the cache.
// Here every field operation is branch-free and table-free on secret data:
// multiplication is shift-and-xor with masks, inversion is a^254 by a fixed
// square-and-multiply chain. Only the x coordinates (public) steer control flow.

// Share is one point of a Shamir split: Y[i] = f_i(X) for each secret byte i.
// Y is secret; Share never prints it (String, GoString and Format redact).
type Share struct {
	X byte
	Y []byte
}

// MaxSecretLen bounds what Split accepts and ParseShare decodes.
const MaxSecretLen = 4096

// shareVersion is the first byte of a share's binary form.
const shareVersion = 1

// ErrBadShare is wrapped by every error about malformed or inconsistent shares.
var ErrBadShare = errors.New("bad share")

// testHookSplitWiped, when set by a test, sees Split's coefficient buffer
// after it was wiped.
var testHookSplitWiped func(coeffs []byte)

// gfMul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1 (the AES polynomial),
// in constant time: masks instead of branches, no tables.
func gfMul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= a & -(b & 1) // add a when b's low bit is set
		b >>= 1
		carry := -(a >> 7) // 0xff when a's top bit is set
		a = a<<1 ^ 0x1b&carry
	}
	return p
}

// gfInv returns a^-1 as a^254 (a^255 = 1 for a ≠ 0); gfInv(0) = 0. The chain
// of squarings and multiplications is the same for every a.
func gfInv(a byte) byte {
	a2 := gfMul(a, a)
	a4 := gfMul(a2, a2)
	a8 := gfMul(a4, a4)
	a16 := gfMul(a8, a8)
	a32 := gfMul(a16, a16)
	a64 := gfMul(a32, a32)
	a128 := gfMul(a64, a64)
	r := gfMul(a2, a4)
	r = gfMul(r, a8)
	r = gfMul(r, a16)
	r = gfMul(r, a32)
	r = gfMul(r, a64)
	return gfMul(r, a128) // 2+4+8+16+32+64+128 = 254
}

// Split divides secret into n shares (x = 1..n) of which any k rebuild it
// and any k-1 reveal nothing about it. Coefficients come from crypto/rand
// and are wiped before Split returns.
func Split(secret []byte, n, k int) ([]Share, error) {
	switch {
	case len(secret) == 0:
		return nil, errors.New("keys: shamir split: empty secret")
	case len(secret) > MaxSecretLen:
		return nil, fmt.Errorf("keys: shamir split: secret longer than %d bytes", MaxSecretLen)
	case k < 2 || n < k || n > 255:
		return nil, fmt.Errorf("keys: shamir split: want 2 ≤ k ≤ n ≤ 255, have k=%d n=%d", k, n)
	}
	// coeffs[j*len(secret)+i] is the coefficient of x^(j+1) for byte i.
	coeffs := make([]byte, (k-1)*len(secret))
	defer func() {
		clear(coeffs)
		if testHookSplitWiped != nil {
			testHookSplitWiped(coeffs)
		}
	}()
	if _, err := rand.Read(coeffs); err != nil {
		return nil, fmt.Errorf("keys: shamir split: %w", err)
	}
	shares := make([]Share, n)
	for s := range shares {
		x := byte(s + 1)
		shares[s] = Share{X: x, Y: make([]byte, len(secret))}
		for i := range secret {
			shares[s].Y[i] = evalAt(secret[i], coeffs[i:], len(secret), k-1, x)
		}
	}
	return shares, nil
}

// evalAt evaluates s + c1·x + … + cd·x^d by Horner's rule, where cj is
// coeffs[(j-1)*stride].
func evalAt(s byte, coeffs []byte, stride, d int, x byte) byte {
	var y byte
	for j := d - 1; j >= 0; j-- {
		y = gfMul(y, x) ^ coeffs[j*stride]
	}
	return gfMul(y, x) ^ s
}

// Combine rebuilds the secret from shares by Lagrange interpolation at x = 0.
// It refuses fewer than two shares, a zero or repeated x and shares of
// different lengths. Given fewer shares than the split's threshold it returns
// an unrelated value: callers check the result (CombineEpochKey does).
func Combine(shares []Share) ([]byte, error) {
	if err := checkShares(shares); err != nil {
		return nil, fmt.Errorf("keys: shamir combine: %w", err)
	}
	secret := make([]byte, len(shares[0].Y))
	for i, si := range shares {
		l := lagrangeAtZero(shares, i)
		for b := range secret {
			secret[b] ^= gfMul(l, si.Y[b])
		}
	}
	return secret, nil
}

// lagrangeAtZero is the basis value ∏_{j≠i} x_j / (x_j − x_i); in GF(2^8)
// subtraction is xor. The x values are public.
func lagrangeAtZero(shares []Share, i int) byte {
	l := byte(1)
	xi := shares[i].X
	for j, sj := range shares {
		if j != i {
			l = gfMul(l, gfMul(sj.X, gfInv(sj.X^xi)))
		}
	}
	return l
}

func checkShares(shares []Share) error {
	if len(shares) < 2 {
		return fmt.Errorf("%d shares, need at least 2: %w", len(shares), ErrBadShare)
	}
	if len(shares) > 255 {
		return fmt.Errorf("%d shares, at most 255 exist: %w", len(shares), ErrBadShare)
	}
	var seen [256]bool
	n := len(shares[0].Y)
	for _, s := range shares {
		switch {
		case s.X == 0:
			return fmt.Errorf("share with x = 0: %w", ErrBadShare)
		case seen[s.X]:
			return fmt.Errorf("two shares with x = %d: %w", s.X, ErrBadShare)
		case len(s.Y) == 0 || len(s.Y) != n:
			return fmt.Errorf("shares of different or zero length: %w", ErrBadShare)
		}
		seen[s.X] = true
	}
	return nil
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

// MarshalSecret returns the share's binary form: version (1), x, y. It is
// deliberately not MarshalBinary, so that no encoder writes it by accident.
// The caller wipes the result.
func (s Share) MarshalSecret() []byte {
	b := make([]byte, 0, 2+len(s.Y))
	b = append(b, shareVersion, s.X)
	return append(b, s.Y...)
}

// ParseShare decodes MarshalSecret's form strictly: known version, x ≠ 0,
// 1..MaxSecretLen bytes of y. The result does not alias b. Errors never
// echo the input.
func ParseShare(b []byte) (Share, error) {
	switch {
	case len(b) < 3:
		return Share{}, fmt.Errorf("keys: share: %d bytes is too short: %w", len(b), ErrBadShare)
	case b[0] != shareVersion:
		return Share{}, fmt.Errorf("keys: share: unknown version %d: %w", b[0], ErrBadShare)
	case b[1] == 0:
		return Share{}, fmt.Errorf("keys: share: x = 0: %w", ErrBadShare)
	case len(b)-2 > MaxSecretLen:
		return Share{}, fmt.Errorf("keys: share: longer than %d bytes: %w", MaxSecretLen, ErrBadShare)
	}
	return Share{X: b[1], Y: append([]byte(nil), b[2:]...)}, nil
}
