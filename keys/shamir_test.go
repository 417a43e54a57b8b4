package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"pgregory.net/rapid"
)

func randomScalar() *edwards25519.Scalar {
	var b [64]byte
	rand.Read(b[:])
	s, _ := edwards25519.NewScalar().SetUniformBytes(b[:])
	return s
}

// interpolate rebuilds f(0) from shares (a test-only helper: production
// code never rebuilds a secret).
func interpolate(t testing.TB, shares []Share) *edwards25519.Scalar {
	t.Helper()
	xs := make([]byte, len(shares))
	for i, s := range shares {
		xs[i] = s.X
	}
	if err := checkXs(xs); err != nil {
		t.Fatal(err)
	}
	k := edwards25519.NewScalar()
	for i, s := range shares {
		v, err := s.scalar()
		if err != nil {
			t.Fatal(err)
		}
		k.MultiplyAdd(lagrangeAt(xs, i, 0), v, k)
	}
	return k
}

// Any t of n shares rebuild the secret, and the public shares are the
// shares times the base point.
func TestSplitScalarAnyT(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 8).Draw(rt, "n")
		th := rapid.IntRange(2, n).Draw(rt, "t")
		k := randomScalar()
		shares, pubs, err := splitScalar(k, n, th)
		if err != nil {
			rt.Fatal(err)
		}
		perm := rapid.Permutation(shares).Draw(rt, "order")
		if got := interpolate(t, perm[:th]); got.Equal(k) != 1 {
			rt.Fatalf("%d of %d shares do not rebuild the secret", th, n)
		}
		if th > 2 {
			if got := interpolate(t, perm[:th-1]); got.Equal(k) == 1 {
				rt.Fatalf("%d shares (fewer than %d) rebuilt the secret", th-1, th)
			}
		}
		for i, s := range shares {
			v, _ := s.scalar()
			if !bytes.Equal(edwards25519.NewIdentityPoint().ScalarBaseMult(v).Bytes(), pubs[i][:]) {
				rt.Fatalf("public share %d is not [k_%d]B", i, i)
			}
		}
	})
}

func TestInvertScalar(t *testing.T) {
	for range 50 {
		s := randomScalar()
		if edwards25519.NewScalar().Multiply(s, invertScalar(s)).Equal(smallScalar(1)) != 1 {
			t.Fatal("s · s^-1 ≠ 1")
		}
	}
}

func TestSplitScalarRefuses(t *testing.T) {
	k := randomScalar()
	for _, tc := range []struct{ n, t int }{{3, 1}, {1, 2}, {2, 3}, {maxShares + 1, 2}} {
		if _, _, err := splitScalar(k, tc.n, tc.t); err == nil {
			t.Errorf("n=%d t=%d accepted", tc.n, tc.t)
		}
	}
	for _, xs := range [][]byte{{1}, {0, 1}, {2, 2}} {
		if err := checkXs(xs); !errors.Is(err, ErrBadShare) {
			t.Errorf("xs %v: %v", xs, err)
		}
	}
}

func TestSplitWipesCoefficients(t *testing.T) {
	var seen [][]byte
	testHookSplitWiped = func(c []byte) { seen = append(seen, bytes.Clone(c)) }
	defer func() { testHookSplitWiped = nil }()
	if _, _, err := splitScalar(randomScalar(), 5, 4); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 {
		t.Fatalf("%d coefficients wiped, want 3", len(seen))
	}
	for _, c := range seen {
		if !allZero(c) {
			t.Fatal("a coefficient survived")
		}
	}
}

func TestShareEncoding(t *testing.T) {
	s := Share{X: 3, Y: randomScalar().Bytes()}
	b := s.MarshalSecret()
	got, err := ParseShare(b)
	if err != nil || got.X != 3 || !bytes.Equal(got.Y, s.Y) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	b[2] ^= 1
	if got.Y[0] != s.Y[0] {
		t.Fatal("ParseShare aliases its input")
	}
	notCanonical := append([]byte{shareVersion, 1}, bytes.Repeat([]byte{0xff}, 32)...)
	for _, bad := range [][]byte{nil, {2, 1}, {1, 1, 1}, append([]byte{1, 1}, s.Y...), append([]byte{2, 0}, s.Y...),
		append([]byte{2, 1}, s.Y[:31]...), append(append([]byte{2, 1}, s.Y...), 0), notCanonical} {
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
	f.Add(append([]byte{2, 1}, make([]byte, 32)...))
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
	y := randomScalar().Bytes()
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
