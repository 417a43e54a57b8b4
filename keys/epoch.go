package keys

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	x25519lib "github.com/cloudflare/circl/dh/x25519"

	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
)

// EpochRecord is what a store keeps and replicates for one (camera, epoch):
// the epoch's public key and its private key's shares, each encrypted to
// one custodian. It holds nothing secret. Read from disk or the network it
// is untrusted: UnmarshalEpochRecord checks it, and every function here that
// takes one checks it again.
type EpochRecord struct {
	Camera      string
	Start, End  time.Time      // UTC, whole seconds; End = Start + epoch length
	PublicKey   []byte         // binary RFC 9580 v6 public key: Ed25519 primary, X25519 subkey
	Fingerprint KeyFingerprint // of PublicKey's primary key
	Shares      []EncryptedShare
}

// EncryptedShare is one custodian's share of an epoch's private key,
// encrypted to that custodian as one OpenPGP message.
type EncryptedShare struct {
	Custodian   string         // the custodian's name ("dc-a", "dc-b", "recovery")
	Fingerprint KeyFingerprint // the custodian key's fingerprint
	Encrypted   []byte
}

// EpochThreshold is how many shares rebuild an epoch key (DESIGN §7: 2 of 3).
const EpochThreshold = 2

// DefaultEpochLength is the default time slice of one epoch key.
const DefaultEpochLength = 15 * time.Minute

// ErrKeyMismatch is returned when shares rebuild a key that does not match
// the record's public key (wrong, tampered or too few shares).
var ErrKeyMismatch = errors.New("shares do not rebuild this epoch's key")

// ErrNotCustodian is returned when a record holds no share for a key.
var ErrNotCustodian = errors.New("no share for this custodian in the epoch record")

// shareContext starts every share envelope; the epoch's binding follows —
// its key's fingerprint, camera, start and end — so a share moved into
// another record, or a record relabelled with another camera or time (to
// have a custodian release an out-of-scope key as if it were in scope), is
// refused before the share is used.
const shareContext = "custos/epoch-share/v2\x00"

// binding is what every share of r is bound to.
func (r *EpochRecord) binding() []byte {
	b := make([]byte, 0, len(r.Fingerprint)+1+len(r.Camera)+16)
	b = append(b, r.Fingerprint[:]...)
	b = append(b, byte(len(r.Camera)))
	b = append(b, r.Camera...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Start.Unix()))
	return binary.BigEndian.AppendUint64(b, uint64(r.End.Unix()))
}

// testHookWiped, when set by a test, sees each secret buffer NewEpochKey
// wiped, after wiping.
var testHookWiped func(what string, b []byte)

func wiped(what string, b []byte) {
	if testHookWiped != nil {
		testHookWiped(what, b)
	}
}

// EpochStart is the start of the epoch of the given length containing t:
// t in UTC, truncated to a multiple of length since the Unix epoch.
func EpochStart(t time.Time, length time.Duration) time.Time {
	l := int64(length / time.Second)
	s := t.Unix()
	s -= ((s % l) + l) % l
	return time.Unix(s, 0).UTC()
}

// NewEpochKey makes the key pair of camera's epoch containing start (see
// EpochStart), splits the X25519 private scalar 2-of-n among custodians
// (share i to custodians[i]), encrypts each share to its custodian, wipes
// every private byte and returns the record. It takes about a millisecond;
// EpochKeys makes them ahead so that recording never waits.
func NewEpochKey(camera string, start time.Time, length time.Duration, custodians []Custodian) (*EpochRecord, error) {
	if err := checkEpochArgs(camera, length, custodians); err != nil {
		return nil, fmt.Errorf("keys: new epoch key: %w", err)
	}
	e, err := newV6Entity("", time.Now())
	if err != nil {
		return nil, fmt.Errorf("keys: new epoch key: %w", err)
	}
	seed := e.PrivateKey.PrivateKey.(*ed25519.PrivateKey).Key
	scalar := x25519Secret(e).Secret
	defer func() {
		zeroEntity(e)
		wiped("ed25519", seed)
		wiped("x25519", scalar)
	}()
	pub, err := serializePublic(e)
	if err != nil {
		return nil, fmt.Errorf("keys: new epoch key: %w", err)
	}
	s := EpochStart(start, length)
	rec := &EpochRecord{Camera: camera, Start: s, End: s.Add(length), PublicKey: pub, Fingerprint: fingerprintOf(e.PrimaryKey)}
	if rec.Shares, err = encryptShares(scalar, rec.binding(), custodians); err != nil {
		return nil, fmt.Errorf("keys: new epoch key: %w", err)
	}
	return rec, nil
}

func checkEpochArgs(camera string, length time.Duration, custodians []Custodian) error {
	if err := validCamera(camera); err != nil {
		return err
	}
	if err := validEpochLength(length); err != nil {
		return err
	}
	if len(custodians) < EpochThreshold || len(custodians) > maxShares {
		return fmt.Errorf("%d custodians; want %d to %d", len(custodians), EpochThreshold, maxShares)
	}
	for i, c := range custodians {
		if c.enc == nil {
			return fmt.Errorf("custodian %d is empty; make it with NewCustodian", i)
		}
		for _, d := range custodians[:i] {
			if c.name == d.name || c.fp == d.fp {
				return fmt.Errorf("custodian %q appears twice", c.name)
			}
		}
	}
	return nil
}

// encryptShares splits scalar and seals share i to custodians[i].
func encryptShares(scalar []byte, epoch []byte, custodians []Custodian) ([]EncryptedShare, error) {
	shares, err := Split(scalar, len(custodians), EpochThreshold)
	if err != nil {
		return nil, err
	}
	out := make([]EncryptedShare, len(custodians))
	for i, c := range custodians {
		env := shareEnvelope(epoch, shares[i])
		enc, err := seal(c.enc, env)
		clear(env)
		wiped("envelope", env)
		shares[i].Zero()
		wiped("share", shares[i].Y)
		if err != nil {
			return nil, fmt.Errorf("encrypt share to %s: %w", c.name, err)
		}
		out[i] = EncryptedShare{Custodian: c.name, Fingerprint: c.fp, Encrypted: enc}
	}
	return out, nil
}

// shareEnvelope is the plaintext sealed to a custodian: context, epoch
// fingerprint, share. The caller wipes it.
func shareEnvelope(epoch []byte, s Share) []byte {
	b := make([]byte, 0, len(shareContext)+len(epoch)+2+len(s.Y))
	b = append(b, shareContext...)
	b = append(b, epoch...)
	b = append(b, shareVersion, s.X)
	return append(b, s.Y...)
}

// parseShareEnvelope checks the context and epoch and returns the share.
func parseShareEnvelope(b []byte, epoch []byte) (Share, error) {
	rest, ok := bytes.CutPrefix(b, []byte(shareContext))
	if !ok || len(rest) < len(epoch) {
		return Share{}, fmt.Errorf("not a Custos share envelope: %w", ErrBadShare)
	}
	if subtle.ConstantTimeCompare(rest[:len(epoch)], epoch) != 1 {
		return Share{}, fmt.Errorf("the share belongs to another epoch key, camera or time: %w", ErrBadShare)
	}
	return ParseShare(rest[len(epoch):])
}

// EpochPrivateKey is an epoch's X25519 private key rebuilt from shares, held
// in memory only until a request expires. It never prints, cannot be
// compared with ==, and is wiped by Zero.
type EpochPrivateKey struct {
	_      [0]func()
	fp     KeyFingerprint
	sub    *packet.PublicKey // the record's X25519 subkey
	scalar [32]byte
	zeroed bool
}

// CombineEpochKey rebuilds rec's private key from at least EpochThreshold
// shares and checks, in constant time, that its public point is the one in
// rec.PublicKey before returning it. Wrong, tampered or too few shares give
// ErrKeyMismatch (or ErrBadShare), never a key.
func CombineEpochKey(rec *EpochRecord, shares ...Share) (*EpochPrivateKey, error) {
	_, sub, err := rec.check()
	if err != nil {
		return nil, fmt.Errorf("keys: combine epoch key: %w", err)
	}
	secret, err := Combine(shares)
	if err != nil {
		return nil, fmt.Errorf("keys: combine epoch key: %w", err)
	}
	defer clear(secret)
	k := &EpochPrivateKey{fp: rec.Fingerprint, sub: sub}
	if len(secret) != len(k.scalar) {
		return nil, fmt.Errorf("keys: combine epoch key: %d-byte secret: %w", len(secret), ErrKeyMismatch)
	}
	copy(k.scalar[:], secret)
	if !k.matches(sub.PublicKey.(*x25519.PublicKey).Point) {
		k.Zero()
		return nil, fmt.Errorf("keys: combine epoch key for %s: %w", rec.Fingerprint, ErrKeyMismatch)
	}
	return k, nil
}

// matches derives the public point from the scalar and compares it with
// point in constant time.
func (k *EpochPrivateKey) matches(point []byte) bool {
	var sk, pk x25519lib.Key
	copy(sk[:], k.scalar[:])
	x25519lib.KeyGen(&pk, &sk)
	clear(sk[:])
	return subtle.ConstantTimeCompare(pk[:], point) == 1
}

// Fingerprint is the epoch key's (public) fingerprint.
func (k *EpochPrivateKey) Fingerprint() KeyFingerprint { return k.fp }

// Zero wipes the key; it cannot decrypt afterwards.
func (k *EpochPrivateKey) Zero() {
	clear(k.scalar[:])
	k.zeroed = true
}

// IsZero reports whether the key was wiped (or never made).
func (k *EpochPrivateKey) IsZero() bool { return k == nil || k.zeroed || k.sub == nil }

// String never reveals the key.
func (k EpochPrivateKey) String() string { return "epochkey:[redacted]" }

// GoString never reveals the key, also under %#v.
func (k EpochPrivateKey) GoString() string { return k.String() }

// Format never reveals the key under any verb.
func (k EpochPrivateKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// privateKey wraps the scalar for go-crypto without copying it; go-crypto's
// X25519 copies it to a stack array it does not wipe, which Go cannot
// prevent anyway.
func (k *EpochPrivateKey) privateKey() *packet.PrivateKey {
	pub := k.sub.PublicKey.(*x25519.PublicKey)
	return &packet.PrivateKey{
		PublicKey:  *k.sub,
		PrivateKey: &x25519.PrivateKey{PublicKey: *pub, Secret: k.scalar[:]},
	}
}
