package keys

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
)

// fixture: three custodians and one epoch record with a segment.
type epochFixture struct {
	keys  []*CustodianKey // dc-a, dc-b, recovery
	custs []Custodian
	rec   *EpochRecord
	seg   []byte // plaintext
	ct    []byte // EncryptSegment(seg)
}

var (
	fixtureOnce sync.Once
	fixtureKeys []*CustodianKey
)

// custodianKeys makes dc-a, dc-b and recovery once per test binary (tests
// that wipe a key make their own).
func custodianKeys(t testing.TB) ([]*CustodianKey, []Custodian) {
	t.Helper()
	fixtureOnce.Do(func() {
		for _, n := range []string{"dc-a", "dc-b", "recovery"} {
			k, err := NewCustodianKey(n)
			if err != nil {
				panic(err)
			}
			fixtureKeys = append(fixtureKeys, k)
		}
	})
	var cs []Custodian
	for _, k := range fixtureKeys {
		cs = append(cs, k.Custodian())
	}
	return fixtureKeys, cs
}

func newFixture(t testing.TB) *epochFixture {
	t.Helper()
	keys, custs := custodianKeys(t)
	rec, err := NewEpochKey("store-1/entrance", time.Date(2026, 5, 1, 10, 7, 33, 5, time.UTC), DefaultEpochLength, custs)
	if err != nil {
		t.Fatal(err)
	}
	seg := bytes.Repeat([]byte("\x00\x00\x00\x01 h264 access unit "), 1000)
	var ct bytes.Buffer
	if err := EncryptSegment(&ct, rec, seg); err != nil {
		t.Fatal(err)
	}
	return &epochFixture{keys: keys, custs: custs, rec: rec, seg: seg, ct: ct.Bytes()}
}

func openShare(t testing.TB, k *CustodianKey, rec *EpochRecord) Share {
	t.Helper()
	s, err := k.OpenShare(rec)
	if err != nil {
		t.Fatalf("%s opens its share: %v", k.Name(), err)
	}
	return s
}

func TestEpochRoundTripAnyTwoCustodians(t *testing.T) {
	f := newFixture(t)
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}, {2, 0}} {
		a, b := f.keys[pair[0]], f.keys[pair[1]]
		pt, err := DecryptSegmentAsCustodians(f.rec, f.ct, a, b)
		if err != nil || !bytes.Equal(pt, f.seg) {
			t.Fatalf("%s+%s: %v", a.Name(), b.Name(), err)
		}
	}
}

func TestOneCustodianCannotDecrypt(t *testing.T) {
	f := newFixture(t)
	o, parts := answersFor(t, f, f.ct)
	if _, err := o.DecryptSegment(f.ct, parts[0]); !errors.Is(err, ErrBadShare) {
		t.Fatalf("one answer: %v, want ErrBadShare", err)
	}
	if _, err := o.DecryptSegment(f.ct, parts[0], parts[0]); !errors.Is(err, ErrBadShare) {
		t.Fatalf("the same answer twice: %v, want ErrBadShare", err)
	}
	// One custodian answering twice under two names is no second answer.
	if _, err := DecryptSegmentAsCustodians(f.rec, f.ct, f.keys[0], f.keys[0]); !errors.Is(err, ErrBadShare) {
		t.Fatalf("one custodian twice: %v, want ErrBadShare", err)
	}
	// Its own share does not open the others'.
	moved := *f.rec
	moved.Shares = append([]EncryptedShare(nil), f.rec.Shares...)
	moved.Shares[1].Encrypted, moved.Shares[0].Encrypted = f.rec.Shares[0].Encrypted, f.rec.Shares[1].Encrypted
	if _, err := f.keys[0].OpenShare(&moved); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("dc-a opening dc-b's share: %v, want ErrWrongKey", err)
	}
}

func TestOutsiderHasNoShare(t *testing.T) {
	f := newFixture(t)
	other, err := NewCustodianKey("dc-c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.OpenShare(f.rec); !errors.Is(err, ErrNotCustodian) {
		t.Fatalf("outsider: %v, want ErrNotCustodian", err)
	}
}

func TestTamperedShareIsRefused(t *testing.T) {
	f := newFixture(t)
	enc := f.rec.Shares[0].Encrypted
	for i := 0; i < len(enc); i++ {
		rec := *f.rec
		rec.Shares = append([]EncryptedShare(nil), f.rec.Shares...)
		rec.Shares[0].Encrypted = bytes.Clone(enc)
		rec.Shares[0].Encrypted[i] ^= 0x01
		if s, err := f.keys[0].OpenShare(&rec); err == nil {
			t.Fatalf("byte %d of the encrypted share flipped, still opened (x=%d)", i, s.X)
		}
	}
	// Shares swapped between positions (names and all) are refused too.
	rec := *f.rec
	rec.Shares = []EncryptedShare{f.rec.Shares[1], f.rec.Shares[0], f.rec.Shares[2]}
	if _, err := f.keys[0].OpenShare(&rec); !errors.Is(err, ErrBadShare) && !errors.Is(err, ErrBadRecord) {
		t.Fatalf("share at the wrong position: %v, want ErrBadShare or ErrBadRecord", err)
	}
}

func TestTamperedRecordPublicKey(t *testing.T) {
	f := newFixture(t)
	g := newFixture(t)
	// Another epoch's key and fingerprint, this epoch's shares.
	rec := *f.rec
	rec.PublicKey, rec.Fingerprint = g.rec.PublicKey, g.rec.Fingerprint
	if _, err := f.keys[0].OpenShare(&rec); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("share of another epoch key: %v, want ErrBadRecord", err)
	}
	// With the other key's public shares too, the record checks but the
	// share is sealed to another epoch.
	rec.Shares = append([]EncryptedShare(nil), f.rec.Shares...)
	for i := range rec.Shares {
		rec.Shares[i].Public = g.rec.Shares[i].Public
	}
	if _, err := f.keys[0].OpenShare(&rec); !errors.Is(err, ErrBadShare) {
		t.Fatalf("share of another epoch key: %v, want ErrBadShare", err)
	}
	// Answers for one epoch's segment against another's record.
	g2 := newFixture(t)
	_, parts := answersFor(t, f, f.ct)
	og, err := NewEpochOpener(g2.rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := og.DecryptSegment(f.ct, parts...); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("answers used against another record: %v, want ErrWrongKey", err)
	}
	// Key swapped but fingerprint kept, or any byte of the key changed.
	rec = *f.rec
	rec.PublicKey = g.rec.PublicKey
	if _, err := NewEpochOpener(&rec); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("fingerprint mismatch: %v, want ErrBadRecord", err)
	}
	for i := range f.rec.PublicKey {
		rec.PublicKey = bytes.Clone(f.rec.PublicKey)
		rec.PublicKey[i] ^= 0x80
		if _, err := NewEpochOpener(&rec); err == nil {
			t.Fatalf("byte %d of the public key flipped, still accepted", i)
		}
	}
}

func TestNewEpochKeyRefuses(t *testing.T) {
	_, custs := custodianKeys(t)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		camera string
		length time.Duration
		custs  []Custodian
	}{
		{"empty camera", "", time.Minute, custs},
		{"camera with space", "a b", time.Minute, custs},
		{"sub-second", "cam", time.Millisecond, custs},
		{"two days", "cam", 48 * time.Hour, custs},
		{"one custodian", "cam", time.Minute, custs[:1]},
		{"twice the same", "cam", time.Minute, []Custodian{custs[0], custs[0]}},
		{"zero custodian", "cam", time.Minute, []Custodian{custs[0], {}}},
	} {
		if _, err := NewEpochKey(tc.camera, now, tc.length, tc.custs); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestEpochStart(t *testing.T) {
	berlin := time.FixedZone("CEST", 2*3600)
	for _, tc := range []struct {
		t      time.Time
		length time.Duration
		want   time.Time
	}{
		{time.Date(2026, 1, 1, 0, 14, 59, 999, time.UTC), 15 * time.Minute, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC), 15 * time.Minute, time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC)},
		{time.Date(2026, 1, 1, 2, 20, 0, 0, berlin), 15 * time.Minute, time.Date(2026, 1, 1, 0, 15, 0, 0, time.UTC)},
		{time.Unix(-1, 0), time.Minute, time.Unix(-60, 0).UTC()},
	} {
		got := EpochStart(tc.t, tc.length)
		if !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("EpochStart(%v, %v) = %v, want %v", tc.t, tc.length, got, tc.want)
		}
	}
}

func TestNewEpochKeyWipesEverything(t *testing.T) {
	_, custs := custodianKeys(t)
	seen := map[string][][]byte{}
	testHookWiped = func(what string, b []byte) { seen[what] = append(seen[what], b) }
	t.Cleanup(func() { testHookWiped = nil })
	if _, err := NewEpochKey("cam", time.Now(), time.Minute, custs); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"ed25519": 1, "x25519": 1, "share": 3, "envelope": 3}
	for what, n := range want {
		if len(seen[what]) != n {
			t.Fatalf("%s: %d buffers wiped, want %d", what, len(seen[what]), n)
		}
		for _, b := range seen[what] {
			if len(b) == 0 || !allZero(b) {
				t.Fatalf("%s buffer (%d bytes) is not zero after NewEpochKey", what, len(b))
			}
		}
	}
	if len(seen["ed25519"][0]) != 64 || len(seen["x25519"][0]) != 32 {
		t.Fatal("the hook did not see the real key buffers")
	}
}

func TestEpochShareAndPartialZeroAndNoPrint(t *testing.T) {
	f := newFixture(t)
	es, err := f.keys[0].Share(f.rec)
	if err != nil {
		t.Fatal(err)
	}
	secret := es.k.Bytes()
	assertNoSecret(t, secret, es, *es, []*EpochShare{es}, struct{ S *EpochShare }{es})
	es.Zero()
	if _, err := es.SealPartial(testRequest, SegmentRef{Camera: f.rec.Camera, Start: f.rec.Start, End: f.rec.Start.Add(4 * time.Second)}, f.ct, mustReleaseKey(t).Public()); err == nil {
		t.Fatal("a wiped share still answers")
	}
	_, parts := answersFor(t, f, f.ct)
	pb := parts[0].p.Bytes()
	assertNoSecret(t, pb, parts[0], *parts[0], struct{ P *Partial }{parts[0]})
	parts[0].Zero()
	o, _ := NewEpochOpener(f.rec)
	if _, err := o.DecryptSegment(f.ct, parts...); err == nil {
		t.Fatal("a wiped answer still decrypts")
	}
}

func TestCustodianKeyNeverPrints(t *testing.T) {
	k, err := NewCustodianKey("dc-x")
	if err != nil {
		t.Fatal(err)
	}
	scalar := bytes.Clone(x25519Secret(k.entity).Secret)
	seed := bytes.Clone(k.entity.PrivateKey.PrivateKey.(*ed25519.PrivateKey).Key[:32])
	for _, secret := range [][]byte{scalar, seed} {
		assertNoSecret(t, secret, k, *k, k.Custodian(), struct{ K *CustodianKey }{k})
	}
	f := newFixture(t)
	// Records and encrypters hold nothing secret, but print no key either.
	assertNoSecret(t, scalar, f.rec, mustEncrypter(t, f.rec))
}

func mustEncrypter(t testing.TB, rec *EpochRecord) *SegmentEncrypter {
	t.Helper()
	e, err := NewSegmentEncrypter(rec)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func BenchmarkNewEpochKey(b *testing.B) {
	_, custs := custodianKeys(b)
	now := time.Now()
	for b.Loop() {
		if _, err := NewEpochKey("store-1/entrance", now, DefaultEpochLength, custs); err != nil {
			b.Fatal(err)
		}
	}
}

// A record relabelled with another camera or epoch — to make a custodian
// release an out-of-scope key as if it were in scope — is refused: every
// share is bound to its camera and time as well as its key.
func TestRelabelledRecordIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		change func(r *EpochRecord)
	}{
		{"camera", func(r *EpochRecord) { r.Camera = "store-2/till" }},
		{"epoch", func(r *EpochRecord) { r.Start, r.End = r.Start.Add(DefaultEpochLength), r.End.Add(DefaultEpochLength) }},
		{"end", func(r *EpochRecord) { r.End = r.End.Add(DefaultEpochLength) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *f.rec
			tc.change(&r)
			b, err := r.Marshal()
			if err != nil {
				t.Skipf("the record encoder refuses the change itself: %v", err)
			}
			rr, err := UnmarshalEpochRecord(b)
			if err != nil {
				t.Skipf("the record decoder refuses the change itself: %v", err)
			}
			if _, err := f.keys[0].OpenShare(rr); !errors.Is(err, ErrBadShare) {
				t.Fatalf("OpenShare of a relabelled record: %v, want ErrBadShare", err)
			}
		})
	}
	// The untouched record still opens.
	sh := openShare(t, f.keys[0], f.rec)
	sh.Zero()
}
