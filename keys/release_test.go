package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/ProtonMail/go-crypto/openpgp/aes/keywrap"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
	x25519lib "github.com/cloudflare/circl/dh/x25519"
	"pgregory.net/rapid"
)

const testRequest = "req-2026-05-01:0042"

// releaseFixture: an epoch with one segment, a requester's one-time key,
// and dc-a's, dc-b's and the recovery key's answers for the segment,
// released to it under testRequest.
type releaseFixture struct {
	*epochFixture
	rk   *ReleaseKey
	seg  SegmentRef
	msgs [][]byte // from dc-a, dc-b, recovery
}

func fixtureSegment(f *epochFixture) SegmentRef {
	return SegmentRef{Camera: f.rec.Camera, Start: f.rec.Start.Add(8 * time.Second), End: f.rec.Start.Add(12*time.Second + 5)}
}

func newReleaseFixture(t testing.TB) *releaseFixture {
	t.Helper()
	rf := &releaseFixture{epochFixture: newFixture(t), rk: mustReleaseKey(t)}
	rf.seg = fixtureSegment(rf.epochFixture)
	for _, k := range rf.keys {
		rf.msgs = append(rf.msgs, sealFor(t, k, rf.rec, rf.seg, rf.ct, rf.rk.Public()))
	}
	return rf
}

func sealFor(t testing.TB, k *CustodianKey, rec *EpochRecord, seg SegmentRef, ct []byte, to [32]byte) []byte {
	t.Helper()
	es, err := k.Share(rec)
	if err != nil {
		t.Fatalf("%s opens its share: %v", k.Name(), err)
	}
	defer es.Zero()
	msg, err := es.SealPartial(testRequest, seg, ct, to)
	if err != nil {
		t.Fatalf("%s answers: %v", k.Name(), err)
	}
	return msg
}

// answersFor is dc-a's and dc-b's unsealed answers for ct.
func answersFor(t testing.TB, f *epochFixture, ct []byte) (*EpochOpener, []*Partial) {
	t.Helper()
	o, err := NewEpochOpener(f.rec)
	if err != nil {
		t.Fatal(err)
	}
	e, err := o.Ephemeral(ct)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := liftEphemeral(e[:])
	if err != nil {
		t.Fatal(err)
	}
	var parts []*Partial
	for _, k := range f.keys[:2] {
		es, err := k.Share(f.rec)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, es.partial(e, ep))
		es.Zero()
	}
	return o, parts
}

func mustReleaseKey(t testing.TB) *ReleaseKey {
	t.Helper()
	k, err := NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (rf *releaseFixture) open(t testing.TB, i int) (*Partial, error) {
	t.Helper()
	o, err := NewEpochOpener(rf.rec)
	if err != nil {
		t.Fatal(err)
	}
	return o.OpenPartial(rf.rk, rf.msgs[i], testRequest, rf.seg, rf.ct)
}

// TestReleaseRoundTrip: any two custodians' answers, opened and checked by
// the requester, decrypt the segment.
func TestReleaseRoundTrip(t *testing.T) {
	f := newReleaseFixture(t)
	o, _ := NewEpochOpener(f.rec)
	for _, pair := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		var parts []*Partial
		for _, i := range pair {
			p, err := f.open(t, i)
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			want := ReleaseContext{RequestID: testRequest, Custodian: f.keys[i].Name(), CustodianFP: f.keys[i].Fingerprint(),
				Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochEnd: f.rec.End, EpochFP: f.rec.Fingerprint,
				SegmentStart: f.seg.Start, SegmentEnd: f.seg.End, Ephemeral: p.Context().Ephemeral}
			if p.Context() != want {
				t.Fatalf("context %+v, want %+v", p.Context(), want)
			}
			parts = append(parts, p)
		}
		got, err := o.DecryptSegment(f.ct, parts...)
		if err != nil || !bytes.Equal(got, f.seg2()) {
			t.Fatalf("%v: decrypt: %v", pair, err)
		}
	}
}

func (rf *releaseFixture) seg2() []byte { return rf.epochFixture.seg }

// TestThresholdMatchesGoCrypto: on random keys, the combined answers give
// exactly the shared secret go-crypto's X25519 computes, and the
// key-encryption key derived from it unwraps what go-crypto wrapped.
func TestThresholdMatchesGoCrypto(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		priv, err := x25519.GenerateKey(rand.Reader)
		if err != nil {
			rt.Fatal(err)
		}
		sessionKey := rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(rt, "session key")
		eph, wrapped, err := x25519.Encrypt(rand.Reader, &priv.PublicKey, sessionKey)
		if err != nil {
			rt.Fatal(err)
		}
		k, err := edwards25519.NewScalar().SetBytesWithClamping(priv.Secret)
		if err != nil {
			rt.Fatal(err)
		}
		shares, _, err := splitScalar(k, 3, 2)
		if err != nil {
			rt.Fatal(err)
		}
		pick := rapid.Permutation(shares).Draw(rt, "custodians")[:2]
		ep, err := liftEphemeral(eph)
		if err != nil {
			rt.Fatalf("an honest ephemeral refused: %v", err)
		}
		xs := []byte{pick[0].X, pick[1].X}
		z := edwards25519.NewIdentityPoint()
		for i, s := range pick {
			v, _ := s.scalar()
			p := edwards25519.NewIdentityPoint().ScalarMult(v, ep) // the custodian's answer
			z.Add(z, edwards25519.NewIdentityPoint().ScalarMult(lagrangeAt(xs, i, 0), p))
		}
		var want, sk, e x25519lib.Key
		copy(sk[:], priv.Secret)
		copy(e[:], eph)
		x25519lib.Shared(&want, &sk, &e)
		if !bytes.Equal(z.BytesMontgomery(), want[:]) {
			rt.Fatal("combined answers differ from X25519(k, E)")
		}
		got, err := keywrap.Unwrap(x25519KEK(eph, priv.PublicKey.Point, z.BytesMontgomery()), wrapped)
		if err != nil || !bytes.Equal(got, sessionKey) {
			rt.Fatalf("unwrap: %v", err)
		}
		if dec, err := x25519.Decrypt(priv, eph, wrapped); err != nil || !bytes.Equal(dec, got) {
			rt.Fatalf("go-crypto's own decryption differs: %v", err)
		}
	})
}

// TestWrongAnswerIsDetected: a custodian that answers with anything but its
// share times E — another scalar, a random point, a proof for another
// segment — is caught by the proof and named; the requester then opens the
// segment with the third custodian.
func TestWrongAnswerIsDetected(t *testing.T) {
	f := newReleaseFixture(t)
	o, _ := NewEpochOpener(f.rec)
	good, err := f.open(t, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := good.Context()
	head := ctx.encode()
	ep, _ := liftEphemeral(ctx.Ephemeral[:])
	kB, err := f.keys[1].Share(f.rec)
	if err != nil {
		t.Fatal(err)
	}
	defer kB.Zero()
	wrongK := randomScalar()
	wrongP := edwards25519.NewIdentityPoint().ScalarMult(wrongK, ep)
	forge := map[string]func() []byte{
		"another scalar, proved for it": func() []byte {
			c, z, _ := proveDLEQ(wrongK, edwards25519.NewIdentityPoint().ScalarBaseMult(wrongK), ep, wrongP, head)
			return append(append(wrongP.Bytes(), c.Bytes()...), z.Bytes()...)
		},
		"a random point, the true proof's numbers": func() []byte {
			c, z, _ := proveDLEQ(kB.k, kB.pub, ep, edwards25519.NewIdentityPoint().ScalarMult(kB.k, ep), head)
			return append(append(wrongP.Bytes(), c.Bytes()...), z.Bytes()...)
		},
		"the true point, a proof bound elsewhere": func() []byte {
			p := edwards25519.NewIdentityPoint().ScalarMult(kB.k, ep)
			c, z, _ := proveDLEQ(kB.k, kB.pub, ep, p, append(bytes.Clone(head), 1))
			return append(append(p.Bytes(), c.Bytes()...), z.Bytes()...)
		},
		"the identity": func() []byte {
			return append(edwards25519.NewIdentityPoint().Bytes(), make([]byte, 64)...)
		},
	}
	for name, pt := range forge {
		msg, err := sealRelease(f.rk.Public(), head, pt())
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.OpenPartial(f.rk, msg, testRequest, f.seg, f.ct)
		if !errors.Is(err, ErrBadPartial) || !strings.Contains(err.Error(), "dc-b") {
			t.Errorf("%s: %v; want ErrBadPartial naming dc-b", name, err)
		}
	}
	a, errA := f.open(t, 0)
	r, errR := f.open(t, 2)
	if errA != nil || errR != nil {
		t.Fatal(errA, errR)
	}
	if pt, err := o.DecryptSegment(f.ct, a, r); err != nil || !bytes.Equal(pt, f.seg2()) {
		t.Fatalf("dc-a and the recovery key: %v", err)
	}
}

// lowOrderU are the X25519 u coordinates of small order (and non-canonical
// encodings of some), as listed by the libsodium and cr.yp.to references.
var lowOrderU = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// TestBadEphemeralIsRefused: a custodian multiplies its share with no E of
// small order, outside the prime-order subgroup (an honest point plus a
// torsion point), on the twist, or non-canonical: it refuses before.
func TestBadEphemeralIsRefused(t *testing.T) {
	f := newReleaseFixture(t)
	es, err := f.keys[0].Share(f.rec)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Zero()
	var bad [][]byte
	for _, h := range lowOrderU {
		bad = append(bad, mustHex(t, h))
	}
	// An honest ephemeral plus a point of order 8: on the curve, not in
	// the prime-order subgroup.
	e, _ := SegmentEphemeral(f.rec, f.ct)
	ep, err := liftEphemeral(e[:])
	if err != nil {
		t.Fatal(err)
	}
	torsion, err := edwards25519.NewIdentityPoint().SetBytes(mustHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if err != nil {
		t.Fatal(err)
	}
	mixed := edwards25519.NewIdentityPoint().Add(ep, torsion)
	bad = append(bad, mixed.BytesMontgomery())
	// u = 2 is on the twist.
	twist := make([]byte, 32)
	twist[0] = 2
	if _, err := new(field.Element).SetBytes(twist); err != nil {
		t.Fatal(err)
	}
	bad = append(bad, twist, bytes.Repeat([]byte{0xff}, 32))
	for i, u := range bad {
		if _, err := liftEphemeral(u); !errors.Is(err, ErrBadEphemeral) {
			t.Errorf("ephemeral %d (%x…) lifted: %v", i, u[:4], err)
		}
		ct := bytes.Clone(f.ct)
		copy(ct[pkeskEphemeral:], u)
		if _, err := es.SealPartial(testRequest, f.seg, ct, f.rk.Public()); !errors.Is(err, ErrBadEphemeral) {
			t.Errorf("ephemeral %d answered: %v", i, err)
		}
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'a') + 10
			}
		}
		b[i] = v
	}
	return b
}

// TestAnswerIsBoundToItsSegment: an answer opens only for its request,
// epoch, segment and ephemeral key: used for another segment, another
// request or a relabelled span it is refused, and it never helps decrypt
// another segment of the same epoch.
func TestAnswerIsBoundToItsSegment(t *testing.T) {
	f := newReleaseFixture(t)
	o, _ := NewEpochOpener(f.rec)
	var other bytes.Buffer
	if err := EncryptSegment(&other, f.rec, []byte("the next four seconds")); err != nil {
		t.Fatal(err)
	}
	if _, err := o.OpenPartial(f.rk, f.msgs[0], testRequest, f.seg, other.Bytes()); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("used for another segment's ciphertext: %v", err)
	}
	if _, err := o.OpenPartial(f.rk, f.msgs[0], "req-other", f.seg, f.ct); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("used for another request: %v", err)
	}
	moved := f.seg
	moved.Start = moved.Start.Add(time.Second)
	if _, err := o.OpenPartial(f.rk, f.msgs[0], testRequest, moved, f.ct); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("used for another span: %v", err)
	}
	g := newFixture(t)
	og, _ := NewEpochOpener(g.rec)
	if _, err := og.OpenPartial(f.rk, f.msgs[0], testRequest, f.seg, f.ct); !errors.Is(err, ErrWrongKey) {
		t.Errorf("used against another epoch: %v", err)
	}
	a, _ := f.open(t, 0)
	b, _ := f.open(t, 1)
	if _, err := o.DecryptSegment(other.Bytes(), a, b); err == nil {
		t.Fatal("two answers for one segment decrypted another segment of the epoch")
	}
}

// TestReleaseContextIsBound: an answer's clear context cannot be rewritten
// to pass it off as another one: every field is bound into the HPKE info.
func TestReleaseContextIsBound(t *testing.T) {
	f := newReleaseFixture(t)
	msg := f.msgs[0]
	ctx, head, _, err := parseRelease(msg)
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(c *ReleaseContext){
		"request":       func(c *ReleaseContext) { c.RequestID = "req-other" },
		"custodian":     func(c *ReleaseContext) { c.Custodian = "dc-b" },
		"custodian key": func(c *ReleaseContext) { c.CustodianFP = f.keys[1].Fingerprint() },
		"camera":        func(c *ReleaseContext) { c.Camera = "store-1/exit" },
		"epoch end":     func(c *ReleaseContext) { c.EpochEnd = c.EpochStart.Add(5 * time.Minute) },
		"epoch key":     func(c *ReleaseContext) { c.EpochFP[0] ^= 1 },
		"segment start": func(c *ReleaseContext) { c.SegmentStart = c.SegmentStart.Add(-time.Second) },
		"segment end":   func(c *ReleaseContext) { c.SegmentEnd = c.SegmentEnd.Add(time.Hour) },
		"ephemeral":     func(c *ReleaseContext) { c.Ephemeral[3] ^= 1 },
	} {
		c := ctx
		change(&c)
		forged := append(append(bytes.Clone(releaseMagic), c.encode()...), msg[len(releaseMagic)+len(head):]...)
		if _, _, _, err := f.rk.openRelease(forged); !errors.Is(err, ErrBadRelease) {
			t.Errorf("%s rewritten: %v", name, err)
		}
	}
}

func TestReleaseTamperedOrReframed(t *testing.T) {
	f := newReleaseFixture(t)
	msg := f.msgs[0]
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x04
		if _, _, _, err := f.rk.openRelease(bad); err == nil {
			t.Fatalf("byte %d flipped, still opened", i)
		}
	}
	for n := range len(msg) {
		if _, _, _, err := f.rk.openRelease(msg[:n]); !errors.Is(err, ErrBadRelease) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, _, _, err := f.rk.openRelease(append(bytes.Clone(msg), 0)); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("trailing byte: %v", err)
	}
	if _, _, _, err := f.rk.openRelease(make([]byte, MaxReleaseLen+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized: %v", err)
	}
	other := mustReleaseKey(t)
	if _, _, _, err := other.openRelease(msg); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("another key: %v", err)
	}
}

func TestParseReleasePublicHex(t *testing.T) {
	rk := mustReleaseKey(t)
	if p, err := ParseReleasePublicHex(rk.PublicHex()); err != nil || p != rk.Public() {
		t.Fatalf("round trip: %v", err)
	}
	for _, s := range []string{"", strings.Repeat("0", 64), strings.Repeat("g", 64), strings.ToUpper(rk.PublicHex()), rk.PublicHex()[2:], rk.PublicHex() + "00"} {
		if _, err := ParseReleasePublicHex(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestReleaseKeyZero(t *testing.T) {
	f := newReleaseFixture(t)
	pub := f.rk.Public()
	f.rk.Zero()
	if !allZero(f.rk.scalar[:]) || !f.rk.IsZero() {
		t.Fatal("Zero left key bytes")
	}
	if f.rk.Public() != pub {
		t.Fatal("Zero changed the public key")
	}
	if _, err := f.open(t, 0); err == nil {
		t.Fatal("a wiped release key still opens")
	}
	var nilKey *ReleaseKey
	if _, err := nilKey.ReleasedContext(f.msgs[0]); err == nil {
		t.Fatal("a nil release key opens")
	}
	if _, err := new(ReleaseKey).ReleasedContext(f.msgs[0]); err == nil {
		t.Fatal("the zero release key opens")
	}
}

func TestReleaseKeyNeverPrints(t *testing.T) {
	f := newReleaseFixture(t)
	scalar := bytes.Clone(f.rk.scalar[:])
	assertNoSecret(t, scalar, f.rk, *f.rk, []*ReleaseKey{f.rk}, struct{ K *ReleaseKey }{f.rk})
	p, err := f.open(t, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, p.p.Bytes(), p, *p)
	bad := bytes.Clone(f.msgs[0])
	bad[len(bad)-1] ^= 1
	if _, err := f.rk.ReleasedContext(bad); err != nil {
		assertNoSecret(t, scalar, err.Error())
		assertNoSecret(t, bad[len(bad)-20:], err.Error())
	}
}

// FuzzOpenPartial: garbage never panics and never opens; with the right
// key only the exact genuine messages open and verify (the encoding is
// canonical, the ciphertext authenticated and the answer proved).
func FuzzOpenPartial(f *testing.F) {
	rf := newReleaseFixture(f)
	o, err := NewEpochOpener(rf.rec)
	if err != nil {
		f.Fatal(err)
	}
	other := mustReleaseKey(f)
	for _, m := range rf.msgs {
		f.Add(m)
		f.Add(m[:len(m)-1])
		f.Add(append(bytes.Clone(m), 0))
	}
	f.Add([]byte("CSRP\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := o.OpenPartial(other, b, testRequest, rf.seg, rf.ct); err == nil {
			t.Fatal("opened without the key")
		}
		_, err := o.OpenPartial(rf.rk, b, testRequest, rf.seg, rf.ct)
		if err == nil && !bytes.Equal(b, rf.msgs[0]) && !bytes.Equal(b, rf.msgs[1]) && !bytes.Equal(b, rf.msgs[2]) {
			t.Fatal("a message that was never sealed opened")
		}
	})
}

// FuzzSegmentEphemeral: the custodian's reading of a segment's PKESK and
// lift of its ephemeral key never panic, and accept only prime-order
// points.
func FuzzSegmentEphemeral(f *testing.F) {
	rf := newFixture(f)
	f.Add(rf.ct[:pkeskLen])
	f.Add(rf.ct)
	f.Add([]byte{0xC1, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := SegmentEphemeral(rf.rec, b)
		if err != nil {
			return
		}
		if p, err := liftEphemeral(e[:]); err == nil && !primeOrder(p) {
			t.Fatal("lifted a point outside the prime-order subgroup")
		}
	})
}

// BenchmarkPartial is a custodian's work for one segment, its share of the
// epoch already open: read E, check it, multiply, prove, seal.
func BenchmarkPartial(b *testing.B) {
	f := newFixture(b)
	rk := mustReleaseKey(b)
	es, err := f.keys[0].Share(f.rec)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Zero()
	seg := fixtureSegment(f)
	for b.Loop() {
		if _, err := es.SealPartial(testRequest, seg, f.ct, rk.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCombine is the requester's work for one segment before its
// decryption: open and check two answers, combine, unwrap the session key.
func BenchmarkCombine(b *testing.B) {
	rf := newReleaseFixture(b)
	o, err := NewEpochOpener(rf.rec)
	if err != nil {
		b.Fatal(err)
	}
	raw := rf.ct[:pkeskLen]
	for b.Loop() {
		var parts []*Partial
		for _, m := range rf.msgs[:2] {
			p, err := o.OpenPartial(rf.rk, m, testRequest, rf.seg, rf.ct)
			if err != nil {
				b.Fatal(err)
			}
			parts = append(parts, p)
		}
		sk, err := o.sessionKey(raw[pkeskEphemeral:pkeskEphemeral+32], raw[pkeskWrapped:], parts)
		if err != nil {
			b.Fatal(err)
		}
		clear(sk)
	}
}
