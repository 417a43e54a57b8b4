package keys

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

func mustSigner(t testing.TB, name string) (*CustodySigner, NodePrivate) {
	t.Helper()
	k := NewNodePrivate()
	s, err := NewCustodySigner(name, &k)
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

// XEdDSA signatures from the X25519 node key verify as plain Ed25519
// signatures against the Edwards form of the node's public key, for keys
// of either Edwards sign (about half of all keys need k negated), and for
// nothing else.
func TestXEdDSAVerifiesAsEd25519(t *testing.T) {
	negated := 0
	for i := range 64 {
		s, k := mustSigner(t, "store-1")
		raw := k.Raw32()
		sc, _ := edwards25519.NewScalar().SetBytesWithClamping(raw[:])
		if edwards25519.NewIdentityPoint().ScalarBaseMult(sc).Bytes()[31]&0x80 != 0 {
			negated++
		}
		ed, err := edwardsOf(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ed, s.ed) {
			t.Fatalf("key %d: Edwards form of the public key %x, signer uses %x", i, ed, s.ed)
		}
		msg := []byte("segment link")
		sig, err := s.sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(ed, msg, sig[:]) {
			t.Fatalf("key %d: signature does not verify with crypto/ed25519", i)
		}
		if verifyXEdDSA(s.Public(), []byte("segment linK"), sig) == nil {
			t.Fatalf("key %d: signature verifies for another message", i)
		}
		other, _ := mustSigner(t, "store-2")
		if verifyXEdDSA(other.Public(), msg, sig) == nil {
			t.Fatalf("key %d: signature verifies under another node's key", i)
		}
		sig2, _ := s.sign(msg)
		if sig2 == sig {
			t.Fatalf("key %d: two signatures of one message are equal; the nonce is not random", i)
		}
	}
	if negated == 0 || negated == 64 {
		t.Errorf("%d of 64 keys had Edwards sign 1; both cases must be exercised", negated)
	}
}

func TestCustodySignerZeroAndBadKeys(t *testing.T) {
	s, _ := mustSigner(t, "store-1")
	named, err := s.Named("praha-1")
	if err != nil || named.Name() != "praha-1" || s.Name() != "store-1" {
		t.Fatalf("Named: %v", err)
	}
	s.Zero()
	if _, err := s.sign([]byte("x")); err == nil {
		t.Error("a zeroed signer signed")
	}
	if _, err := named.sign([]byte("x")); err == nil {
		t.Error("a signer sharing a zeroed key signed")
	}
	if _, err := NewCustodySigner("store 1", new(NodePrivate)); err == nil {
		t.Error("a signer with a bad name or no key was made")
	}
	k := NewNodePrivate()
	if _, err := NewCustodySigner("", &k); err == nil {
		t.Error("a signer without a name was made")
	}
	// u = p − 1 (= −1) has no Edwards form; a non-canonical u is refused.
	var minus1 [32]byte
	for i := range minus1 {
		minus1[i] = 0xff
	}
	minus1[0], minus1[31] = 0xec, 0x7f
	if _, err := edwardsOf(NodePublicFromRaw32(minus1)); err == nil {
		t.Error("u = −1 was given an Edwards form")
	}
	nonCanon := minus1
	nonCanon[0] = 0xee // p + 1
	if _, err := edwardsOf(NodePublicFromRaw32(nonCanon)); err == nil {
		t.Error("a non-canonical u was accepted")
	}
}

func TestSealedEpochRoundTripAndAttacks(t *testing.T) {
	f := newFixture(t)
	s, _ := mustSigner(t, "store-1")
	b, err := SealEpochRecord(s, f.rec)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseSealedEpoch(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Store != "store-1" || e.Record.Fingerprint != f.rec.Fingerprint || e.Verify(s.Public()) != nil {
		t.Fatalf("round trip: store %q, verify %v", e.Store, e.Verify(s.Public()))
	}
	rb, _ := f.rec.Marshal()
	if _, err := ParseSealedEpoch(rb); !errors.Is(err, ErrBadRecord) {
		t.Errorf("an unsealed record parsed as sealed: %v", err)
	}
	if _, err := ParseSealedEpoch(append(bytes.Clone(b), 0)); err == nil {
		t.Error("trailing bytes accepted")
	}
	if _, err := ParseSealedEpoch(b[:len(b)-1]); err == nil {
		t.Error("truncated signature accepted")
	}

	// Whoever holds only the custodians' public keys can mint a record;
	// it verifies under nobody's store key but their own.
	forger, _ := mustSigner(t, "store-1")
	minted, err := NewEpochKey(f.rec.Camera, f.rec.Start, DefaultEpochLength, f.custs)
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := SealEpochRecord(forger, minted)
	fe, err := ParseSealedEpoch(fb)
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.Verify(s.Public()); !errors.Is(err, ErrBadCustody) {
		t.Errorf("a record sealed by another key verified under the store's key: %v", err)
	}

	// Relabelled signer name, or a byte of the record changed: no longer
	// the store's signature (or no longer a record).
	relabel := bytes.Clone(b)
	copy(relabel[len(sealedEpochMagic)+1:], "store-2")
	if re, err := ParseSealedEpoch(relabel); err != nil || re.Verify(s.Public()) == nil {
		t.Errorf("a relabelled seal verified (parse err %v)", err)
	}
	swapped := bytes.Clone(b)
	copy(swapped[len(b)-64-len(rb):], mustMarshal(t, minted))
	if se, err := ParseSealedEpoch(swapped); err == nil && se.Verify(s.Public()) == nil {
		t.Error("the store's signature verified over another record")
	}
}

func mustMarshal(t testing.TB, r *EpochRecord) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLink(f *epochFixture, seq uint64, start time.Time, prev [32]byte) SegmentLink {
	return SegmentLink{Camera: f.rec.Camera, EpochStart: f.rec.Start, EpochHash: [32]byte{1},
		Seq: seq, Start: start, End: start.Add(4 * time.Second), Prev: prev}
}

func TestSealedSegmentRoundTripAndAttacks(t *testing.T) {
	f := newFixture(t)
	s, _ := mustSigner(t, "store-1")
	start := f.rec.Start.Add(8*time.Second + 123)
	b, l, err := SealSegment(s, testLink(f, 7, start, [32]byte{9}), f.ct)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseSealedSegment(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.Link != l || !bytes.Equal(g.Ciphertext, f.ct) || g.Verify(s.Public()) != nil {
		t.Fatalf("round trip: %+v vs %+v, verify %v", g.Link, l, g.Verify(s.Public()))
	}
	if l.Store != "store-1" || l.Size != int64(len(f.ct)) || !l.Start.Equal(start) {
		t.Errorf("link as signed: %+v", l)
	}
	// The ciphertext is the unchanged OpenPGP message.
	if pt, err := DecryptSegmentAsCustodians(f.rec, g.Ciphertext, f.keys[0], f.keys[1]); err != nil || !bytes.Equal(pt, f.seg) {
		t.Errorf("the sealed ciphertext does not decrypt: %v", err)
	}

	if _, err := ParseSealedSegment(f.ct); !errors.Is(err, ErrBadCustody) {
		t.Errorf("a bare ciphertext parsed as sealed: %v", err)
	}
	bad := bytes.Clone(b)
	bad[len(bad)-1] ^= 1
	if _, err := ParseSealedSegment(bad); !errors.Is(err, ErrBadCustody) {
		t.Errorf("a changed ciphertext parsed: %v", err)
	}
	if _, err := ParseSealedSegment(b[:len(b)-1]); err == nil {
		t.Error("a cut ciphertext parsed")
	}
	// Each field of the link is signed: change the sequence number, the
	// time, the camera: it parses but does not verify.
	hdr := len(sealedSegmentMagic) + 1 + len("store-1")
	for name, mutate := range map[string]func([]byte){
		"camera": func(x []byte) { x[hdr+1+len("store-1")] ^= 0x01 },
		"seq":    func(x []byte) { x[hdr+1+len(f.rec.Camera)+8+32+7] ^= 1 },
		"start":  func(x []byte) { x[hdr+1+len(f.rec.Camera)+8+32+8+7] ^= 0x10 },
		"prev":   func(x []byte) { x[hdr+1+len(f.rec.Camera)+8+32+8*4+32] ^= 1 },
	} {
		x := bytes.Clone(b)
		mutate(x)
		if g, err := ParseSealedSegment(x); err == nil && g.Verify(s.Public()) == nil {
			t.Errorf("link with a changed %s verified", name)
		}
	}
	other, _ := mustSigner(t, "store-1")
	if err := g.Verify(other.Public()); !errors.Is(err, ErrBadCustody) {
		t.Errorf("verified under another key: %v", err)
	}
	// An epoch seal's signature is not a segment's and vice versa.
	eb, _ := SealEpochRecord(s, f.rec)
	e, _ := ParseSealedEpoch(eb)
	g.Signature = e.Signature
	if g.Verify(s.Public()) == nil {
		t.Error("an epoch signature verified as a segment's")
	}

	// Links chain by hash.
	b2, l2, err := SealSegment(s, testLink(f, 8, l.End, l.Hash()), f.ct)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := ParseSealedSegment(b2)
	if g2.Link.Prev != l.Hash() || l2.Hash() == l.Hash() {
		t.Error("links do not chain")
	}

	if _, _, err := SealSegment(s, SegmentLink{Camera: "c", EpochStart: start, Start: start, End: start}, f.ct); err == nil {
		t.Error("an empty span was sealed")
	}
}

func FuzzParseSealed(f *testing.F) {
	fx := newFixture(f)
	s, _ := mustSigner(f, "store-1")
	eb, _ := SealEpochRecord(s, fx.rec)
	sb, _, _ := SealSegment(s, testLink(fx, 1, fx.rec.Start.Add(time.Second), [32]byte{}), fx.ct[:200])
	f.Add(eb)
	f.Add(sb)
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := ParseSealedEpoch(b); err == nil {
			if !bytes.Equal(e.encode(), b) {
				t.Fatal("sealed epoch encoding is not canonical")
			}
		}
		if g, err := ParseSealedSegment(b); err == nil {
			if g.Link.Size != int64(len(g.Ciphertext)) {
				t.Fatal("ciphertext size differs from the link")
			}
		}
	})
}

// The seal's cost per segment, beside the Ed25519 verification it is made
// of (crypto/ed25519 over the same message) and the segment's encryption.
func BenchmarkSealSegment(b *testing.B) {
	fx := newFixture(b)
	s, _ := mustSigner(b, "store-1")
	l := testLink(fx, 1, fx.rec.Start.Add(time.Second), [32]byte{})
	b.SetBytes(int64(len(fx.ct)))
	for b.Loop() {
		if _, _, err := SealSegment(s, l, fx.ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySealedSegment(b *testing.B) {
	fx := newFixture(b)
	s, _ := mustSigner(b, "store-1")
	sealed, _, err := SealSegment(s, testLink(fx, 1, fx.rec.Start.Add(time.Second), [32]byte{}), fx.ct)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(sealed)))
	for b.Loop() {
		g, err := ParseSealedSegment(sealed)
		if err != nil || g.Verify(s.Public()) != nil {
			b.Fatal("does not verify")
		}
	}
}

// Baseline: a plain Ed25519 signature check of a message of a link's size.
func BenchmarkEd25519VerifyBaseline(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("does not verify")
		}
	}
}
