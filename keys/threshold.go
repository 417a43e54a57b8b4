package keys

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/ProtonMail/go-crypto/openpgp/aes/keywrap"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
	"golang.org/x/crypto/hkdf"
)

// Threshold X25519 decryption of one segment (DESIGN §7). A segment's PKESK
// carries the store's ephemeral E = X25519(e, 9); its key-encryption key
// comes from Z = X25519(k, E), k the epoch's clamped scalar. Z is the
// Montgomery u coordinate of [k]·E', E' the Edwards point of E with sign 0,
// and since E' has prime order, [k]·E' = [k mod L]·E' = Σ λ_i·[k_i]·E' for
// any two Shamir shares k_i of k mod L (shamir.go). So:
//
//   - a custodian, for one approved segment, answers P_i = [k_i]·E' with a
//     Chaum–Pedersen proof that log_B K_i = log_E' P_i, sealed to the
//     request's one-time key (SealPartial, wire form in release_wire.go);
//   - the requester checks each proof against the record's public share K_i
//     (a wrong answer names its custodian), combines two answers into Z,
//     derives the KEK as RFC 9580 §5.1.6 does (HKDF-SHA256 over E ‖ K_pub ‖
//     Z, info "OpenPGP X25519"), unwraps the session key and decrypts that
//     one segment (EpochOpener.DecryptSegment).
//
// Nobody ever holds k: the requester learns one session key per approved
// segment, and an answer for one segment's E is useless for any other.

// ErrBadEphemeral is wrapped when a segment's ephemeral key is not a point
// of the prime-order subgroup (malformed, small order, or with a torsion
// component): a custodian multiplies nothing with it.
var ErrBadEphemeral = errors.New("segment ephemeral key is not a prime-order point")

// ErrBadPartial is wrapped when a custodian's answer fails its proof: the
// custodian answered with something other than its share times the
// segment's ephemeral key. The error names the custodian.
var ErrBadPartial = errors.New("custodian's answer fails its proof")

// pkeskLen is the length of the one PKESK encoding Custos writes
// (checkPKESKBytes); the ephemeral key and the wrapped session key sit at
// fixed offsets in it.
const (
	pkeskLen       = 111
	pkeskFPAt      = 5
	pkeskEphemeral = 38
	pkeskWrapped   = 71
)

// lMinus1 is L − 1, little-endian: [L−1]·P + P is the identity exactly
// when P is in the prime-order subgroup.
var lMinus1 = func() *edwards25519.Scalar {
	s, err := edwards25519.NewScalar().SetCanonicalBytes([]byte{
		0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10})
	if err != nil {
		panic(err)
	}
	return s
}()

// primeOrder reports whether p is a point of the prime-order subgroup other
// than the identity. p is public.
func primeOrder(p *edwards25519.Point) bool {
	id := edwards25519.NewIdentityPoint()
	if p.Equal(id) == 1 || edwards25519.NewIdentityPoint().MultByCofactor(p).Equal(id) == 1 {
		return false // the identity, or of small order
	}
	q := edwards25519.NewIdentityPoint().ScalarMult(lMinus1, p)
	return q.Add(q, p).Equal(id) == 1
}

// liftEphemeral maps an X25519 public key u to the Edwards point with
// y = (u − 1)/(u + 1) and sign 0, after checking that u is canonical, lies
// on the curve (not the twist) and gives a point of prime order. Every
// custodian and the requester use the same lift.
func liftEphemeral(u []byte) (*edwards25519.Point, error) {
	if len(u) != 32 {
		return nil, fmt.Errorf("%d bytes: %w", len(u), ErrBadEphemeral)
	}
	y, err := edwardsY(u)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadEphemeral)
	}
	p, err := edwards25519.NewIdentityPoint().SetBytes(y) // sign bit 0
	if err != nil {
		return nil, fmt.Errorf("on the twist, not the curve: %w", ErrBadEphemeral)
	}
	if !primeOrder(p) {
		return nil, fmt.Errorf("small order or outside the prime-order subgroup: %w", ErrBadEphemeral)
	}
	return p, nil
}

// edwardsY returns the encoding, sign bit 0, of y = (u − 1)/(u + 1) for
// the Montgomery u-coordinate u: the Edwards form of an X25519 public key.
// It refuses a u that is not canonical, and u = −1, which has none. It
// does not check that the result is on the curve.
func edwardsY(u []byte) ([]byte, error) {
	fu, err := new(field.Element).SetBytes(u)
	if err != nil || !bytes.Equal(fu.Bytes(), u) {
		return nil, errors.New("not a canonical field element")
	}
	one := new(field.Element).One()
	den := new(field.Element).Add(fu, one)
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, errors.New("u = −1")
	}
	y := new(field.Element).Subtract(fu, one)
	return y.Multiply(y, den.Invert(den)).Bytes(), nil
}

// SegmentRef names one segment: its camera and footage span. A custodian
// takes it from its own index, never from the requester.
type SegmentRef struct {
	Camera     string
	Start, End time.Time
}

// SegmentEphemeral reads a segment's PKESK (the first bytes of its
// ciphertext; the rest may be absent) strictly, checks that it is
// encrypted to rec's key, and returns its ephemeral X25519 key.
func SegmentEphemeral(rec *EpochRecord, ciphertext []byte) ([32]byte, error) {
	_, sub, err := rec.check()
	if err != nil {
		return [32]byte{}, fmt.Errorf("keys: segment ephemeral: %w", err)
	}
	return ephemeralOf(ciphertext, sub)
}

func ephemeralOf(ct []byte, sub *packet.PublicKey) ([32]byte, error) {
	var e [32]byte
	if len(ct) < pkeskLen {
		return e, fmt.Errorf("keys: segment ephemeral: %d bytes, no PKESK: %w", len(ct), ErrBadCiphertext)
	}
	if err := checkPKESKBytes(ct[:pkeskLen]); err != nil {
		return e, fmt.Errorf("keys: segment ephemeral: %w", err)
	}
	if !bytes.Equal(ct[pkeskFPAt:pkeskFPAt+32], sub.Fingerprint) {
		return e, fmt.Errorf("keys: segment ephemeral: %w", ErrWrongKey)
	}
	copy(e[:], ct[pkeskEphemeral:pkeskEphemeral+32])
	return e, nil
}

// EpochShare is a custodian's opened share of one epoch key, checked
// against the record's public share, for answering segments of that epoch.
// It never prints and is wiped by Zero.
type EpochShare struct {
	_   [0]func()
	rec *EpochRecord
	sub *packet.PublicKey
	x   byte
	k   *edwards25519.Scalar
	pub *edwards25519.Point // K_i
	cus string
	fp  KeyFingerprint
}

// Share opens this custodian's share of rec's key and checks it against
// its public share in rec. The caller wipes the result (Zero).
func (k *CustodianKey) Share(rec *EpochRecord) (*EpochShare, error) {
	s, err := k.OpenShare(rec)
	if err != nil {
		return nil, err
	}
	defer s.Zero()
	_, sub, err := rec.check()
	if err != nil {
		return nil, err
	}
	v, err := s.scalar()
	if err != nil {
		return nil, fmt.Errorf("keys: share of epoch %s: %w", rec.Fingerprint, err)
	}
	i := rec.shareIndex(k.pub.fp)
	pub, err := edwards25519.NewIdentityPoint().SetBytes(rec.Shares[i].Public[:])
	if err != nil || edwards25519.NewIdentityPoint().ScalarBaseMult(v).Equal(pub) != 1 {
		v.Set(edwards25519.NewScalar())
		return nil, fmt.Errorf("keys: share of epoch %s for %s: %w", rec.Fingerprint, k.pub.name, ErrKeyMismatch)
	}
	return &EpochShare{rec: rec, sub: sub, x: s.X, k: v, pub: pub, cus: k.pub.name, fp: k.pub.fp}, nil
}

// Zero wipes the share; it answers nothing afterwards.
func (s *EpochShare) Zero() {
	if s != nil && s.k != nil {
		s.k.Set(edwards25519.NewScalar())
		s.k = nil
	}
}

// String never reveals the share.
func (s EpochShare) String() string { return "epochshare:" + s.cus + ":[redacted]" }

// GoString never reveals the share, also under %#v.
func (s EpochShare) GoString() string { return s.String() }

// Format never reveals the share under any verb.
func (s EpochShare) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// SealPartial is a custodian's answer for one segment of its epoch: it
// reads E from ciphertext (the custodian's own copy of the segment; only
// its PKESK is needed), refuses an E that is not a prime-order point,
// computes P = [k_i]·E' with a proof, and seals both to recipient, bound to
// the request, the custodian, the epoch, seg and E. The caller must have
// checked that the request is approved and that seg — from its own index —
// is in its scope.
func (s *EpochShare) SealPartial(requestID string, seg SegmentRef, ciphertext []byte, recipient [32]byte) ([]byte, error) {
	if s == nil || s.k == nil {
		return nil, errors.New("keys: seal partial: the share is wiped")
	}
	if seg.Camera != s.rec.Camera {
		return nil, fmt.Errorf("keys: seal partial: segment of %s, epoch of %s", seg.Camera, s.rec.Camera)
	}
	e, err := ephemeralOf(ciphertext, s.sub)
	if err != nil {
		return nil, err
	}
	ep, err := liftEphemeral(e[:])
	if err != nil {
		return nil, fmt.Errorf("keys: seal partial: %w", err)
	}
	ctx := ReleaseContext{RequestID: requestID, Custodian: s.cus, CustodianFP: s.fp,
		Camera: s.rec.Camera, EpochStart: s.rec.Start, EpochEnd: s.rec.End, EpochFP: s.rec.Fingerprint,
		SegmentStart: seg.Start, SegmentEnd: seg.End, Ephemeral: e}
	if err := ctx.check(); err != nil {
		return nil, fmt.Errorf("keys: seal partial: %w", err)
	}
	head := ctx.encode()
	p := edwards25519.NewIdentityPoint().ScalarMult(s.k, ep)
	c, z, err := proveDLEQ(s.k, s.pub, ep, p, head)
	if err != nil {
		return nil, fmt.Errorf("keys: seal partial: %w", err)
	}
	pt := make([]byte, 0, partialLen)
	pt = append(append(append(pt, p.Bytes()...), c.Bytes()...), z.Bytes()...)
	defer clear(pt)
	return sealRelease(recipient, head, pt)
}

// partial is the unsealed, unproven answer for ephemeral e (lifted: ep).
func (s *EpochShare) partial(e [32]byte, ep *edwards25519.Point) *Partial {
	ctx := ReleaseContext{Custodian: s.cus, CustodianFP: s.fp, Camera: s.rec.Camera,
		EpochStart: s.rec.Start, EpochEnd: s.rec.End, EpochFP: s.rec.Fingerprint, Ephemeral: e}
	return &Partial{ctx: ctx, x: s.x, p: edwards25519.NewIdentityPoint().ScalarMult(s.k, ep)}
}

// dleqDomain starts every proof's challenge hash.
const dleqDomain = "custos/dleq/v1\x00"

// proveDLEQ proves log_B K = log_E P (= k) non-interactively, bound to
// bind: c = H(bind, K, E, P, [r]B, [r]E), z = r + c·k.
func proveDLEQ(k *edwards25519.Scalar, K, E, P *edwards25519.Point, bind []byte) (c, z *edwards25519.Scalar, err error) {
	var wide [64]byte
	defer clear(wide[:])
	if _, err := rand.Read(wide[:]); err != nil {
		return nil, nil, err
	}
	r, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
	if err != nil {
		return nil, nil, err
	}
	defer r.Set(edwards25519.NewScalar())
	a1 := edwards25519.NewIdentityPoint().ScalarBaseMult(r)
	a2 := edwards25519.NewIdentityPoint().ScalarMult(r, E)
	c = dleqChallenge(bind, K, E, P, a1, a2)
	z = edwards25519.NewScalar().MultiplyAdd(c, k, r)
	return c, z, nil
}

// verifyDLEQ checks a proof from proveDLEQ. Everything here is public.
func verifyDLEQ(K, E, P *edwards25519.Point, c, z *edwards25519.Scalar, bind []byte) bool {
	negC := edwards25519.NewScalar().Negate(c)
	a1 := edwards25519.NewIdentityPoint().VarTimeDoubleScalarBaseMult(negC, K, z) // [z]B − [c]K
	a2 := edwards25519.NewIdentityPoint().ScalarMult(z, E)
	a2.Add(a2, edwards25519.NewIdentityPoint().ScalarMult(negC, P)) // [z]E − [c]P
	return dleqChallenge(bind, K, E, P, a1, a2).Equal(c) == 1
}

func dleqChallenge(bind []byte, pts ...*edwards25519.Point) *edwards25519.Scalar {
	h := sha512.New()
	h.Write([]byte(dleqDomain))
	var n [2]byte
	n[0], n[1] = byte(len(bind)>>8), byte(len(bind))
	h.Write(n[:])
	h.Write(bind)
	for _, p := range pts {
		h.Write(p.Bytes())
	}
	c, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err) // SHA-512 gives 64 bytes
	}
	return c
}

// Partial is a custodian's verified answer for one segment, opened by the
// requester. It is secret (two of them open the segment): it never prints
// and is wiped by Zero.
type Partial struct {
	_   [0]func()
	ctx ReleaseContext
	x   byte
	p   *edwards25519.Point
}

// Context is what the partial is bound to (all public).
func (p *Partial) Context() ReleaseContext { return p.ctx }

// Zero wipes the partial.
func (p *Partial) Zero() {
	if p != nil && p.p != nil {
		p.p.Set(edwards25519.NewIdentityPoint())
		p.p = nil
	}
}

// String never reveals the partial.
func (p Partial) String() string { return "partial:" + p.ctx.Custodian + ":[redacted]" }

// GoString never reveals the partial, also under %#v.
func (p Partial) GoString() string { return p.String() }

// Format never reveals the partial under any verb.
func (p Partial) Format(f fmt.State, _ rune) { fmt.Fprint(f, p.String()) }

// EpochOpener is the requester's view of one epoch record: checked once,
// with its public shares decoded, it checks custodians' answers for the
// epoch's segments and decrypts each segment from two of them. It holds
// nothing secret.
type EpochOpener struct {
	rec  *EpochRecord
	sub  *packet.PublicKey
	pubs []*edwards25519.Point
}

// NewEpochOpener checks rec and prepares its public shares.
func NewEpochOpener(rec *EpochRecord) (*EpochOpener, error) {
	_, sub, err := rec.check()
	if err != nil {
		return nil, fmt.Errorf("keys: epoch opener: %w", err)
	}
	o := &EpochOpener{rec: rec, sub: sub}
	for _, s := range rec.Shares {
		p, err := edwards25519.NewIdentityPoint().SetBytes(s.Public[:])
		if err != nil {
			return nil, fmt.Errorf("keys: epoch opener: %w", ErrBadRecord)
		}
		o.pubs = append(o.pubs, p)
	}
	return o, nil
}

// Record is the epoch record.
func (o *EpochOpener) Record() *EpochRecord { return o.rec }

// Ephemeral returns the segment's ephemeral key after checking that its
// PKESK is the one shape and is to this epoch's key.
func (o *EpochOpener) Ephemeral(ciphertext []byte) ([32]byte, error) {
	return ephemeralOf(ciphertext, o.sub)
}

// OpenPartial opens a custodian's sealed answer with the request's key and
// checks it is the one expected — for requestID, this epoch, seg and the
// ephemeral key of ciphertext, from one of the record's custodians — and
// that its proof verifies against that custodian's public share. A failed
// proof is ErrBadPartial, naming the custodian.
func (o *EpochOpener) OpenPartial(rk *ReleaseKey, msg []byte, requestID string, seg SegmentRef, ciphertext []byte) (*Partial, error) {
	e, err := o.Ephemeral(ciphertext)
	if err != nil {
		return nil, err
	}
	ctx, head, pt, err := rk.openRelease(msg)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	i := o.rec.shareIndex(ctx.CustodianFP)
	switch {
	case ctx.RequestID != requestID:
		return nil, fmt.Errorf("keys: answer is for request %q, not %q: %w", ctx.RequestID, requestID, ErrReleaseMismatch)
	case ctx.EpochFP != o.rec.Fingerprint || ctx.Camera != o.rec.Camera ||
		!ctx.EpochStart.Equal(o.rec.Start) || !ctx.EpochEnd.Equal(o.rec.End):
		return nil, fmt.Errorf("keys: answer is for epoch %s, not %s: %w", ctx.EpochFP, o.rec.Fingerprint, ErrReleaseMismatch)
	case i < 0 || o.rec.Shares[i].Custodian != ctx.Custodian:
		return nil, fmt.Errorf("keys: answer comes from %s (%s), not a custodian of epoch %s: %w", ctx.Custodian, ctx.CustodianFP, o.rec.Fingerprint, ErrReleaseMismatch)
	case seg.Camera != ctx.Camera || !seg.Start.Equal(ctx.SegmentStart) || !seg.End.Equal(ctx.SegmentEnd):
		return nil, fmt.Errorf("keys: %s's answer is for segment %s…%s, not %s…%s: %w", ctx.Custodian,
			ctx.SegmentStart.Format(time.RFC3339Nano), ctx.SegmentEnd.Format(time.RFC3339Nano),
			seg.Start.UTC().Format(time.RFC3339Nano), seg.End.UTC().Format(time.RFC3339Nano), ErrReleaseMismatch)
	case ctx.Ephemeral != e:
		return nil, fmt.Errorf("keys: %s's answer is for another ephemeral key than the segment's: %w", ctx.Custodian, ErrReleaseMismatch)
	}
	ep, err := liftEphemeral(e[:])
	if err != nil {
		return nil, fmt.Errorf("keys: open partial: %w", err)
	}
	bad := fmt.Errorf("keys: custodian %s (%s), segment %s: %w", ctx.Custodian, ctx.CustodianFP, ctx.SegmentStart.Format(time.RFC3339Nano), ErrBadPartial)
	p, err := edwards25519.NewIdentityPoint().SetBytes(pt[:32])
	if err != nil {
		return nil, bad
	}
	c, err1 := edwards25519.NewScalar().SetCanonicalBytes(pt[32:64])
	z, err2 := edwards25519.NewScalar().SetCanonicalBytes(pt[64:96])
	if err1 != nil || err2 != nil || !verifyDLEQ(o.pubs[i], ep, p, c, z, head) {
		return nil, bad
	}
	return &Partial{ctx: ctx, x: byte(i + 1), p: p}, nil
}

// DecryptSegment decrypts one segment of this epoch from the answers of at
// least EpochThreshold distinct custodians for it (OpenPartial): it
// combines them into the segment's X25519 shared secret, derives the
// key-encryption key, unwraps the session key and decrypts. Only this
// segment's session key is ever known. It refuses, before returning any
// plaintext, a message to another key (ErrWrongKey), anything but the one
// shape EncryptSegment writes or a failed tag (ErrBadCiphertext).
func (o *EpochOpener) DecryptSegment(ciphertext []byte, parts ...*Partial) ([]byte, error) {
	r := bytes.NewReader(ciphertext)
	_, se, err := readMessageHeader(r, ciphertext, o.sub.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("keys: decrypt segment (epoch %s): %w", o.rec.Fingerprint, err)
	}
	raw := ciphertext[:pkeskLen]
	e := raw[pkeskEphemeral : pkeskEphemeral+32]
	sk, err := o.sessionKey(e, raw[pkeskWrapped:pkeskLen], parts)
	if err != nil {
		return nil, fmt.Errorf("keys: decrypt segment (epoch %s): %w", o.rec.Fingerprint, err)
	}
	defer clear(sk)
	pt, err := openBody(r, ciphertext, se, sk)
	if err != nil {
		return nil, fmt.Errorf("keys: decrypt segment (epoch %s): %w", o.rec.Fingerprint, err)
	}
	return pt, nil
}

// sessionKey combines the partials for ephemeral e and unwraps wrapped.
func (o *EpochOpener) sessionKey(e, wrapped []byte, parts []*Partial) ([]byte, error) {
	xs := make([]byte, 0, len(parts))
	for _, p := range parts {
		if p == nil || p.p == nil {
			return nil, errors.New("a wiped or missing answer")
		}
		if subtle.ConstantTimeCompare(p.ctx.Ephemeral[:], e) != 1 || p.ctx.EpochFP != o.rec.Fingerprint {
			return nil, fmt.Errorf("%s's answer is for another segment: %w", p.ctx.Custodian, ErrReleaseMismatch)
		}
		xs = append(xs, p.x)
	}
	if len(parts) < EpochThreshold {
		return nil, fmt.Errorf("%d custodians' answers, %d needed: %w", len(parts), EpochThreshold, ErrBadShare)
	}
	if err := checkXs(xs); err != nil {
		return nil, err
	}
	z := edwards25519.NewIdentityPoint()
	for i, p := range parts {
		z.Add(z, edwards25519.NewIdentityPoint().ScalarMult(lagrangeAt(xs, i, 0), p.p))
	}
	defer z.Set(edwards25519.NewIdentityPoint())
	if z.Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, fmt.Errorf("the answers combine to the identity: %w", ErrBadShare)
	}
	shared := z.BytesMontgomery()
	defer clear(shared)
	kek := x25519KEK(e, o.sub.PublicKey.(*x25519.PublicKey).Point, shared)
	defer clear(kek)
	sk, err := keywrap.Unwrap(kek, wrapped)
	if err != nil || len(sk) != gcmSuite.Cipher.KeySize() {
		clear(sk)
		return nil, fmt.Errorf("session key does not unwrap: %w", ErrBadCiphertext)
	}
	return sk, nil
}

// x25519KEK is RFC 9580 §5.1.6's key-encryption key, as go-crypto's
// openpgp/x25519 derives it: HKDF-SHA256, no salt, over ephemeral ‖
// recipient public key ‖ shared secret, info "OpenPGP X25519", 16 bytes
// (AES-128 key wrap).
func x25519KEK(ephemeral, pub, shared []byte) []byte {
	ikm := make([]byte, 0, 96)
	ikm = append(append(append(ikm, ephemeral...), pub...), shared...)
	defer clear(ikm)
	kek := make([]byte, 16)
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, nil, []byte("OpenPGP X25519")), kek); err != nil {
		panic(err) // 16 bytes of HKDF-SHA256 cannot fail
	}
	return kek
}
