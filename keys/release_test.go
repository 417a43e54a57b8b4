package keys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const testRequest = "req-2026-05-01:0042"

// releaseFixture: an epoch, a requester's one-time key, and dc-a's and
// dc-b's shares released to it under testRequest.
type releaseFixture struct {
	*epochFixture
	rk   *ReleaseKey
	msgs [][]byte // from dc-a, dc-b
}

func newReleaseFixture(t testing.TB) *releaseFixture {
	t.Helper()
	rf := &releaseFixture{epochFixture: newFixture(t), rk: mustReleaseKey(t)}
	for _, k := range rf.keys[:2] {
		msg, err := k.ReleaseShare(rf.rec, testRequest, rf.rk.Public())
		if err != nil {
			t.Fatalf("%s releases its share: %v", k.Name(), err)
		}
		rf.msgs = append(rf.msgs, msg)
	}
	return rf
}

func mustReleaseKey(t testing.TB) *ReleaseKey {
	t.Helper()
	k, err := NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestReleaseRoundTrip: two custodians' released shares, opened by the
// requester, rebuild the epoch key, which decrypts the epoch's segment.
func TestReleaseRoundTrip(t *testing.T) {
	f := newReleaseFixture(t)
	var shares []Share
	for i, msg := range f.msgs {
		ctx, s, err := f.rk.OpenShare(msg)
		if err != nil {
			t.Fatal(err)
		}
		want := ReleaseContext{RequestID: testRequest, Custodian: f.keys[i].Name(), CustodianFP: f.keys[i].Fingerprint(),
			Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochEnd: f.rec.End, EpochFP: f.rec.Fingerprint}
		if ctx != want {
			t.Fatalf("context %+v, want %+v", ctx, want)
		}
		s.Zero()
		if s, err = f.rk.OpenShareFor(msg, testRequest, f.rec); err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	ek, err := CombineEpochKey(f.rec, shares...)
	if err != nil {
		t.Fatal(err)
	}
	defer ek.Zero()
	got, err := DecryptSegment(ek, f.ct)
	if err != nil || !bytes.Equal(got, f.seg) {
		t.Fatalf("decrypt with released shares: %v", err)
	}
}

func TestReleaseWrongRecipient(t *testing.T) {
	f := newReleaseFixture(t)
	other := mustReleaseKey(t)
	if _, _, err := other.OpenShare(f.msgs[0]); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("another requester's key opens the share: %v", err)
	}
}

// TestReleaseContextIsBound: a share's clear context cannot be rewritten to
// move it into another request, epoch, camera or custodian slot: each
// rewritten message is well formed but does not open.
func TestReleaseContextIsBound(t *testing.T) {
	f := newReleaseFixture(t)
	ctx, _, sealed, err := parseRelease(f.msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(c *ReleaseContext){
		"request":        func(c *ReleaseContext) { c.RequestID = "req-other" },
		"custodian":      func(c *ReleaseContext) { c.Custodian = "dc-b" },
		"custodian key":  func(c *ReleaseContext) { c.CustodianFP = f.keys[1].Fingerprint() },
		"camera":         func(c *ReleaseContext) { c.Camera = "store-1/exit" },
		"epoch":          func(c *ReleaseContext) { c.EpochStart, c.EpochEnd = c.EpochEnd, c.EpochEnd.Add(DefaultEpochLength) },
		"epoch end":      func(c *ReleaseContext) { c.EpochEnd = c.EpochStart.Add(5 * time.Minute) },
		"epoch key":      func(c *ReleaseContext) { c.EpochFP[0] ^= 1 },
		"epoch key tail": func(c *ReleaseContext) { c.EpochFP[31] ^= 0x80 },
	} {
		c := ctx
		change(&c)
		if err := c.check(); err != nil {
			t.Fatalf("%s: the rewritten context is invalid, so the test proves nothing: %v", name, err)
		}
		msg := appendRelease(c.encode(), sealed)
		if _, _, err := f.rk.OpenShare(msg); !errors.Is(err, ErrBadRelease) || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("%s rewritten: %v", name, err)
		}
	}
}

// TestOpenShareForRefusesOthers: a genuine share for another request or
// epoch, or sealed into another custodian's slot, is refused by the check.
func TestOpenShareForRefusesOthers(t *testing.T) {
	f := newReleaseFixture(t)
	if _, err := f.rk.OpenShareFor(f.msgs[0], "req-other", f.rec); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("share of %s opened for another request: %v", testRequest, err)
	}
	other := newFixture(t) // same custodians and camera, another key
	if _, err := f.rk.OpenShareFor(f.msgs[0], testRequest, other.rec); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("share opened for another epoch: %v", err)
	}
	// dc-b's share sealed under dc-a's name: the x coordinate gives it away.
	s := openShare(t, f.keys[1], f.rec)
	ctx := ReleaseContext{RequestID: testRequest, Custodian: "dc-a", CustodianFP: f.keys[0].Fingerprint(),
		Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochEnd: f.rec.End, EpochFP: f.rec.Fingerprint}
	msg, err := SealShare(f.rk.Public(), ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.rk.OpenShareFor(msg, testRequest, f.rec); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("dc-b's share in dc-a's slot: %v", err)
	}
	// A custodian not in the record.
	ctx.Custodian, ctx.CustodianFP = "dc-z", KeyFingerprint{1}
	if msg, err = SealShare(f.rk.Public(), ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rk.OpenShareFor(msg, testRequest, f.rec); !errors.Is(err, ErrReleaseMismatch) {
		t.Errorf("share from an outsider: %v", err)
	}
}

// TestReleaseTamperedOrReframed: every flipped bit position tried, every
// truncation and every extension is refused.
func TestReleaseTamperedOrReframed(t *testing.T) {
	f := newReleaseFixture(t)
	msg := f.msgs[0]
	for i := range msg {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(msg)
			bad[i] ^= bit
			if _, s, err := f.rk.OpenShare(bad); err == nil {
				t.Fatalf("byte %d ^ %#x: opened a share %v", i, bit, s)
			}
		}
	}
	for n := range len(msg) {
		if _, _, err := f.rk.OpenShare(msg[:n]); !errors.Is(err, ErrBadRelease) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	for _, tail := range [][]byte{{0}, {1}, msg} {
		if _, _, err := f.rk.OpenShare(append(bytes.Clone(msg), tail...)); !errors.Is(err, ErrBadRelease) {
			t.Fatalf("extended by %d bytes: %v", len(tail), err)
		}
	}
	if _, _, err := f.rk.OpenShare(make([]byte, MaxReleaseLen+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversize: %v", err)
	}
	// A ciphertext length field that disagrees with the bytes present.
	bad := bytes.Clone(msg)
	bad[len(bad)-50-1]++ // low byte of the u16 length of a 50-byte ciphertext
	if _, _, err := f.rk.OpenShare(bad); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("bad length: %v", err)
	}
}

func TestSealShareRefuses(t *testing.T) {
	f := newReleaseFixture(t)
	s := openShare(t, f.keys[0], f.rec)
	good := ReleaseContext{RequestID: testRequest, Custodian: "dc-a", CustodianFP: f.keys[0].Fingerprint(),
		Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochEnd: f.rec.End, EpochFP: f.rec.Fingerprint}
	if _, err := SealShare(f.rk.Public(), good, s); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(c *ReleaseContext){
		"no request":       func(c *ReleaseContext) { c.RequestID = "" },
		"request with nul": func(c *ReleaseContext) { c.RequestID = "a\x00b" },
		"long request":     func(c *ReleaseContext) { c.RequestID = strings.Repeat("r", 128) },
		"bad custodian":    func(c *ReleaseContext) { c.Custodian = "dc a" },
		"bad camera":       func(c *ReleaseContext) { c.Camera = "" },
		"no custodian fp":  func(c *ReleaseContext) { c.CustodianFP = KeyFingerprint{} },
		"no epoch fp":      func(c *ReleaseContext) { c.EpochFP = KeyFingerprint{} },
		"end before start": func(c *ReleaseContext) { c.EpochEnd = c.EpochStart.Add(-time.Minute) },
		"off boundary":     func(c *ReleaseContext) { c.EpochStart = c.EpochStart.Add(time.Second) },
		"sub-second":       func(c *ReleaseContext) { c.EpochEnd = c.EpochEnd.Add(time.Millisecond) },
	} {
		c := good
		change(&c)
		if _, err := SealShare(f.rk.Public(), c, s); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
	for name, sh := range map[string]Share{"x = 0": {X: 0, Y: s.Y}, "empty": {X: 1}, "huge": {X: 1, Y: make([]byte, MaxSecretLen+1)}} {
		if _, err := SealShare(f.rk.Public(), good, sh); err == nil {
			t.Errorf("%s share: sealed", name)
		}
	}
	// All-zero and other low-order points give an all-zero shared secret.
	for _, pub := range [][32]byte{{}, {1}} {
		if _, err := SealShare(pub, good, s); err == nil {
			t.Errorf("sealed to low-order point %x", pub[:1])
		}
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
	if _, _, err := f.rk.OpenShare(f.msgs[0]); err == nil {
		t.Fatal("a wiped release key still opens")
	}
	var nilKey *ReleaseKey
	if _, _, err := nilKey.OpenShare(f.msgs[0]); err == nil {
		t.Fatal("a nil release key opens")
	}
	if _, _, err := new(ReleaseKey).OpenShare(f.msgs[0]); err == nil {
		t.Fatal("the zero release key opens")
	}
}

func TestReleaseKeyNeverPrints(t *testing.T) {
	f := newReleaseFixture(t)
	scalar := bytes.Clone(f.rk.scalar[:])
	assertNoSecret(t, scalar, f.rk, *f.rk, []*ReleaseKey{f.rk}, struct{ K *ReleaseKey }{f.rk})
	_, s, err := f.rk.OpenShare(f.msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, _, _ := f.rk.OpenShare(f.msgs[0])
	assertNoSecret(t, s.Y, s, ctx)
	// Errors say what was wrong without the bytes that were wrong.
	bad := bytes.Clone(f.msgs[0])
	bad[len(bad)-1] ^= 1
	if _, _, err := f.rk.OpenShare(bad); err != nil {
		assertNoSecret(t, scalar, err.Error())
		assertNoSecret(t, bad[len(bad)-20:], err.Error())
	}
}

// FuzzOpenReleasedShare: garbage never panics and never opens; with the
// right key only the exact genuine messages open (the encoding is
// canonical and the ciphertext authenticated).
func FuzzOpenReleasedShare(f *testing.F) {
	rf := newReleaseFixture(f)
	other := mustReleaseKey(f)
	for _, m := range rf.msgs {
		f.Add(m)
		f.Add(m[:len(m)-1])
		f.Add(append(bytes.Clone(m), 0))
	}
	f.Add([]byte("CSRS\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := other.OpenShare(b); err == nil {
			t.Fatal("opened without the key")
		}
		_, s, err := rf.rk.OpenShare(b)
		if err == nil && !bytes.Equal(b, rf.msgs[0]) && !bytes.Equal(b, rf.msgs[1]) {
			t.Fatalf("a message that was never sealed opened to %v", s)
		}
	})
}

// BenchmarkSealOpenShare: one custodian release and one requester open.
func BenchmarkSealOpenShare(b *testing.B) {
	f := newFixture(b)
	rk := mustReleaseKey(b)
	s := openShare(b, f.keys[0], f.rec)
	ctx := ReleaseContext{RequestID: testRequest, Custodian: "dc-a", CustodianFP: f.keys[0].Fingerprint(),
		Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochEnd: f.rec.End, EpochFP: f.rec.Fingerprint}
	b.ReportAllocs()
	for b.Loop() {
		msg, err := SealShare(rk.Public(), ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		if _, got, err := rk.OpenShare(msg); err != nil {
			b.Fatal(err)
		} else {
			got.Zero()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
