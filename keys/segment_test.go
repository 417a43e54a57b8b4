package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// testEpochKey stands for what tests used to rebuild: dc-a and dc-b,
// answering for f.rec's segments in this process.
type testEpochKey struct {
	rec  *EpochRecord
	a, b *CustodianKey
}

func epochKeyFor(t testing.TB, f *epochFixture) *testEpochKey {
	t.Helper()
	return &testEpochKey{rec: f.rec, a: f.keys[0], b: f.keys[1]}
}

// decryptWith decrypts ct through the threshold path, as a release does.
func decryptWith(k *testEpochKey, ct []byte) ([]byte, error) {
	return DecryptSegmentAsCustodians(k.rec, ct, k.a, k.b)
}

func recordEntity(t testing.TB, rec *EpochRecord) *openpgp.Entity {
	t.Helper()
	el, err := openpgp.ReadKeyRing(bytes.NewReader(rec.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return el[0]
}

// assertGCMMessage parses msg's packets: a v6 X25519 PKESK to the epoch's
// subkey, then SEIPDv2 with AES-256-GCM, then nothing.
func assertGCMMessage(t *testing.T, msg []byte, rec *EpochRecord) {
	t.Helper()
	sub := recordEntity(t, rec).Subkeys[0].PublicKey
	r := bytes.NewReader(msg)
	p, err := packet.Read(r)
	ek, ok := p.(*packet.EncryptedKey)
	if err != nil || !ok || ek.Version != 6 || ek.Algo != packet.PubKeyAlgoX25519 || !bytes.Equal(ek.KeyFingerprint, sub.Fingerprint) {
		t.Fatalf("first packet %T %v: want a v6 X25519 PKESK to the epoch subkey", p, err)
	}
	p, err = packet.Read(r)
	se, ok := p.(*packet.SymmetricallyEncrypted)
	if err != nil || !ok || se.Version != 2 || se.Cipher != packet.CipherAES256 || se.Mode != packet.AEADModeGCM {
		t.Fatalf("second packet %T %v: want SEIPDv2 AES-256 GCM", p, err)
	}
	io.Copy(io.Discard, se.Contents)
	if p, err := packet.Read(r); err != io.EOF {
		t.Fatalf("after SEIPD: %T %v, want EOF", p, err)
	}
}

func TestSegmentIsSEIPDv2GCM(t *testing.T) {
	f := newFixture(t)
	assertGCMMessage(t, f.ct, f.rec)
	assertGCMMessage(t, f.rec.Shares[0].Encrypted, &EpochRecord{PublicKey: f.custs[0].pub})
}

// go-crypto's own negotiation, reading only the key's preferences, picks
// SEIPDv2 with GCM, and DecryptSegment reads its output.
func TestKeyPreferencesSelectGCM(t *testing.T) {
	f := newFixture(t)
	var ct bytes.Buffer
	// An empty Config: no AEAD preference of the sender's own. (A nil one
	// panics in go-crypto v1.5.2 once the recipient advertises SEIPDv2.)
	w, err := openpgp.EncryptWithParams(&ct, []*openpgp.Entity{recordEntity(t, f.rec)}, nil,
		&openpgp.EncryptParams{Config: &packet.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(f.seg)
	w.Close()
	assertGCMMessage(t, ct.Bytes(), f.rec)
	if pt, err := decryptWith(epochKeyFor(t, f), ct.Bytes()); err != nil || !bytes.Equal(pt, f.seg) {
		t.Fatalf("go-crypto's message: %v", err)
	}
}

// craft writes a message to the epoch subkey with chosen parameters.
func craft(t *testing.T, rec *EpochRecord, aead bool, suite packet.CipherSuite, body func(io.WriteCloser) io.WriteCloser) []byte {
	t.Helper()
	sub := recordEntity(t, rec).Subkeys[0].PublicKey
	key := make([]byte, suite.Cipher.KeySize())
	rand.Read(key)
	var b bytes.Buffer
	cfg := &packet.Config{AEADConfig: &packet.AEADConfig{DefaultMode: suite.Mode}}
	if err := packet.SerializeEncryptedKeyAEAD(&b, sub, suite.Cipher, aead, key, cfg); err != nil {
		t.Fatal(err)
	}
	w, err := packet.SerializeSymmetricallyEncrypted(&b, suite.Cipher, aead, suite, key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w = body(w)
	w.Write([]byte("plaintext"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func literal(name string) func(io.WriteCloser) io.WriteCloser {
	return func(w io.WriteCloser) io.WriteCloser {
		lw, _ := packet.SerializeLiteral(w, true, name, 0)
		return lw
	}
}

func compressed(w io.WriteCloser) io.WriteCloser {
	cw, _ := packet.SerializeCompressed(w, packet.CompressionZLIB, nil)
	return literal("")(cw)
}

func TestDecryptSegmentRefusesOtherShapes(t *testing.T) {
	f := newFixture(t)
	key := epochKeyFor(t, f)
	ocb := packet.CipherSuite{Cipher: packet.CipherAES256, Mode: packet.AEADModeOCB}
	aes128 := packet.CipherSuite{Cipher: packet.CipherAES128, Mode: packet.AEADModeGCM}
	if _, err := decryptWith(key, craft(t, f.rec, true, gcmSuite, literal(""))); err != nil {
		t.Fatalf("the crafting itself is wrong: %v", err)
	}
	signed := func() []byte {
		var b bytes.Buffer
		w, _ := openpgp.EncryptWithParams(&b, []*openpgp.Entity{recordEntity(t, f.rec)}, nil,
			&openpgp.EncryptParams{Signers: []*openpgp.Entity{f.keys[2].entity}, Config: &packet.Config{}})
		w.Write(f.seg)
		w.Close()
		return b.Bytes()
	}()
	other := newFixture(t)
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"SEIPDv1 (MDC) with v3 PKESK", craft(t, f.rec, false, gcmSuite, literal("")), ErrBadCiphertext},
		{"OCB", craft(t, f.rec, true, ocb, literal("")), ErrBadCiphertext},
		{"AES-128", craft(t, f.rec, true, aes128, literal("")), ErrBadCiphertext},
		{"compressed", craft(t, f.rec, true, gcmSuite, compressed), ErrBadCiphertext},
		{"file name", craft(t, f.rec, true, gcmSuite, literal("x.ts")), ErrBadCiphertext},
		{"signed", signed, ErrBadCiphertext},
		{"appended packet", append(bytes.Clone(f.ct), 0xCB, 0x01, 'x'), ErrBadCiphertext},
		{"two messages", append(bytes.Clone(f.ct), f.ct...), ErrBadCiphertext},
		{"another epoch's key", other.ct, ErrWrongKey},
		{"empty", nil, ErrBadCiphertext},
	} {
		if pt, err := decryptWith(key, tc.msg); !errors.Is(err, tc.want) || pt != nil {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTamperedSegmentIsRefused(t *testing.T) {
	f := newFixture(t)
	key := epochKeyFor(t, f)
	var ct bytes.Buffer
	if err := EncryptSegment(&ct, f.rec, []byte("a short segment for flipping every byte")); err != nil {
		t.Fatal(err)
	}
	msg := ct.Bytes()
	for i := range msg {
		for _, bit := range []byte{0x01, 0x80} {
			m := bytes.Clone(msg)
			m[i] ^= bit
			if pt, err := decryptWith(key, m); err == nil {
				t.Fatalf("byte %d ^ %#x: decrypted to %q", i, bit, pt)
			}
		}
	}
	for n := 0; n < len(msg); n++ {
		if _, err := decryptWith(key, msg[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decrypted", n, len(msg))
		}
	}
	// A large, multi-chunk segment cut at a chunk boundary fails its final tag.
	big := make([]byte, 600<<10)
	ct.Reset()
	EncryptSegment(&ct, f.rec, big)
	if _, err := decryptWith(key, ct.Bytes()[:len(ct.Bytes())-16]); err == nil {
		t.Fatal("a segment without its final tag decrypted")
	}
	if pt, err := decryptWith(key, ct.Bytes()); err != nil || !bytes.Equal(pt, big) {
		t.Fatalf("multi-chunk segment: %v", err)
	}
}

var fuzzKey struct {
	once sync.Once
	f    *epochFixture
	key  *testEpochKey
}

func FuzzDecryptSegment(f *testing.F) {
	fuzzKey.once.Do(func() {
		fuzzKey.f = newFixture(f)
		fuzzKey.key = epochKeyFor(f, fuzzKey.f)
	})
	var small bytes.Buffer
	EncryptSegment(&small, fuzzKey.f.rec, []byte("seed"))
	f.Add(small.Bytes())
	f.Add(fuzzKey.f.rec.Shares[0].Encrypted)
	f.Add([]byte{0xC1, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := decryptWith(fuzzKey.key, b)
		if err == nil && !bytes.Equal(b, small.Bytes()) && len(pt) > 0 {
			// Only genuine messages decrypt; the fuzzer cannot forge GCM.
			t.Logf("decrypted %d bytes", len(pt))
		}
	})
}

const benchSegmentLen = 500 << 10 // a 4-second segment at ~1 Mbit/s

// BenchmarkEncryptSegment is the recorder's work for one segment: one
// message to the epoch key (an X25519 PKESK and SEIPDv2) appended to a
// reused buffer, as media's writer does.
func BenchmarkEncryptSegment(b *testing.B) {
	f := newFixture(b)
	enc := mustEncrypter(b, f.rec)
	seg := make([]byte, benchSegmentLen)
	rand.Read(seg)
	out := make([]byte, 0, SealedSize(benchSegmentLen))
	b.SetBytes(benchSegmentLen)
	for b.Loop() {
		var err error
		if out, err = enc.Append(out[:0], seg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawAESGCM(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(blk)
	seg := make([]byte, benchSegmentLen)
	rand.Read(seg)
	nonce := make([]byte, gcm.NonceSize())
	out := make([]byte, 0, benchSegmentLen+gcm.Overhead())
	b.SetBytes(benchSegmentLen)
	for b.Loop() {
		out = gcm.Seal(out[:0], nonce, seg, nil)
	}
}

// BenchmarkDecryptSegment is the requester's work for one segment once
// two custodians' answers are in: combine, unwrap, decrypt.
func BenchmarkDecryptSegment(b *testing.B) {
	f := newFixture(b)
	seg := make([]byte, benchSegmentLen)
	var ct bytes.Buffer
	EncryptSegment(&ct, f.rec, seg)
	o, parts := answersFor(b, f, ct.Bytes())
	b.SetBytes(benchSegmentLen)
	for b.Loop() {
		if _, err := o.DecryptSegment(ct.Bytes(), parts...); err != nil {
			b.Fatal(err)
		}
	}
}
