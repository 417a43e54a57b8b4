package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// refMul is the textbook GF(2^8) product: carry-less multiply, then reduce
// modulo x^8+x^4+x^3+x+1. Slow and branchy; only for checking gfMul.
func refMul(a, b byte) byte {
	var p uint16
	for i := 0; i < 8; i++ {
		if b&(1<<i) != 0 {
			p ^= uint16(a) << i
		}
	}
	for i := 15; i >= 8; i-- {
		if p&(1<<i) != 0 {
			p ^= 0x11b << (i - 8)
		}
	}
	return byte(p)
}

func TestGFMulMatchesReference(t *testing.T) {
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			if got, want := gfMul(byte(a), byte(b)), refMul(byte(a), byte(b)); got != want {
				t.Fatalf("gfMul(%d, %d) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestGFInv(t *testing.T) {
	if got := gfInv(0); got != 0 {
		t.Fatalf("gfInv(0) = %d, want 0", got)
	}
	for a := 1; a < 256; a++ {
		if got := gfMul(byte(a), gfInv(byte(a))); got != 1 {
			t.Fatalf("a·a⁻¹ = %d for a = %d, want 1", got, a)
		}
	}
}

func TestGFFieldAxioms(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := rapid.Byte().Draw(t, "a"), rapid.Byte().Draw(t, "b"), rapid.Byte().Draw(t, "c")
		if gfMul(a, b^c) != gfMul(a, b)^gfMul(a, c) {
			t.Fatal("not distributive")
		}
		if gfMul(gfMul(a, b), c) != gfMul(a, gfMul(b, c)) {
			t.Fatal("not associative")
		}
		if gfMul(a, b) != gfMul(b, a) || gfMul(a, 1) != a {
			t.Fatal("not commutative or 1 is not the identity")
		}
	})
}

func TestSplitCombineAnyK(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		secret := rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(t, "secret")
		n := rapid.IntRange(2, 20).Draw(t, "n")
		k := rapid.IntRange(2, n).Draw(t, "k")
		shares, err := Split(secret, n, k)
		if err != nil {
			t.Fatal(err)
		}
		pick := rapid.Permutation(shares).Draw(t, "order")
		got, err := Combine(pick[:k])
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%d of %d shares: got %x, %v; want the secret", k, n, got, err)
		}
		more := rapid.IntRange(k, n).Draw(t, "more")
		if got, _ := Combine(pick[:more]); !bytes.Equal(got, secret) {
			t.Fatalf("%d shares (threshold %d) did not rebuild the secret", more, k)
		}
	})
}

func TestSplitFewerThanKRevealsNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// 16 bytes: a chance match is 2^-128.
		secret := rapid.SliceOfN(rapid.Byte(), 16, 64).Draw(t, "secret")
		n := rapid.IntRange(3, 20).Draw(t, "n")
		k := rapid.IntRange(3, n).Draw(t, "k")
		shares, _ := Split(secret, n, k)
		pick := rapid.Permutation(shares).Draw(t, "order")
		got, err := Combine(pick[:k-1])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, secret) {
			t.Fatalf("%d shares rebuilt a secret split with threshold %d", k-1, k)
		}
	})
}

// A single share's byte is uniform for a fixed secret (chi-square over 256
// bins, 64k samples; the bound is p ≈ 1e-9 for a uniform source).
func TestShareIsUniform(t *testing.T) {
	if testing.Short() {
		t.Skip("statistical")
	}
	var bins [256]int
	const samples = 1 << 16
	secret := []byte{0x42}
	for range samples {
		s, _ := Split(secret, 3, 2)
		bins[s[0].Y[0]]++
	}
	var chi float64
	const want = samples / 256.0
	for _, c := range bins {
		chi += (float64(c) - want) * (float64(c) - want) / want
	}
	if chi > 420 {
		t.Fatalf("chi-square %.1f over 255 degrees of freedom: share bytes are not uniform", chi)
	}
}

func TestSplitRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret []byte
		n, k   int
	}{
		{"empty", nil, 3, 2},
		{"k=1", []byte{1}, 3, 1},
		{"n<k", []byte{1}, 2, 3},
		{"n>255", []byte{1}, 256, 2},
		{"long", make([]byte, MaxSecretLen+1), 3, 2},
	} {
		if _, err := Split(tc.secret, tc.n, tc.k); err == nil {
			t.Errorf("%s: Split accepted it", tc.name)
		}
	}
}

func TestCombineRefuses(t *testing.T) {
	s, _ := Split([]byte("secret"), 3, 2)
	for _, tc := range []struct {
		name   string
		shares []Share
	}{
		{"none", nil},
		{"one", s[:1]},
		{"duplicate x", []Share{s[0], s[0]}},
		{"zero x", []Share{s[0], {X: 0, Y: s[1].Y}}},
		{"lengths differ", []Share{s[0], {X: 2, Y: s[1].Y[:3]}}},
		{"empty y", []Share{{X: 1}, {X: 2}}},
	} {
		if _, err := Combine(tc.shares); !errors.Is(err, ErrBadShare) {
			t.Errorf("%s: got %v, want ErrBadShare", tc.name, err)
		}
	}
}

func TestSplitWipesCoefficients(t *testing.T) {
	var seen []byte
	testHookSplitWiped = func(c []byte) { seen = c }
	t.Cleanup(func() { testHookSplitWiped = nil })
	if _, err := Split(bytes.Repeat([]byte{7}, 32), 5, 4); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3*32 || !allZero(seen) {
		t.Fatalf("coefficients after Split: %d bytes, all zero %v", len(seen), allZero(seen))
	}
}

func TestShareEncoding(t *testing.T) {
	s := Share{X: 3, Y: []byte{1, 2, 3}}
	b := s.MarshalSecret()
	got, err := ParseShare(b)
	if err != nil || got.X != 3 || !bytes.Equal(got.Y, s.Y) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	b[2] = 9
	if got.Y[0] != 1 {
		t.Fatal("ParseShare aliases its input")
	}
	for _, bad := range [][]byte{nil, {1, 1}, {2, 1, 1}, {1, 0, 1}, append([]byte{1, 1}, make([]byte, MaxSecretLen+1)...)} {
		if _, err := ParseShare(bad); !errors.Is(err, ErrBadShare) {
			t.Errorf("ParseShare(% x…) = %v, want ErrBadShare", bad[:min(len(bad), 3)], err)
		}
	}
	s.Zero()
	if s.X != 0 || !allZero(s.Y) {
		t.Fatal("Zero left share bytes")
	}
}

func FuzzDecodeShare(f *testing.F) {
	f.Add([]byte{1, 1, 0xaa})
	f.Add([]byte{1, 255, 1, 2, 3, 4})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShare(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.MarshalSecret(), b) {
			t.Fatalf("accepted a non-canonical share")
		}
	})
}

func TestShareNeverPrints(t *testing.T) {
	y := make([]byte, 16)
	rand.Read(y)
	s := Share{X: 1, Y: y}
	assertNoSecret(t, y, s, &s, []Share{s}, struct{ S Share }{s})
}

// assertNoSecret formats each value with many verbs and fails if the secret
// shows up raw, as hex, or as Go's decimal byte list.
func assertNoSecret(t testing.TB, secret []byte, values ...any) {
	t.Helper()
	needles := []string{fmt.Sprintf("%x", secret), fmt.Sprintf("%X", secret), string(secret),
		strings.Trim(fmt.Sprint(secret[:4]), "[]")}
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			out := fmt.Sprintf(verb, v)
			for _, n := range needles {
				if strings.Contains(out, n) {
					t.Fatalf("%s of %T reveals the secret: %s", verb, v, out)
				}
			}
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
