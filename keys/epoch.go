package keys

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"filippo.io/edwards25519"
	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
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
	// Public is the public share K_i = [k_i]·B (an edwards25519 point),
	// which checks the custodian's answers (threshold.go). The record's
	// check makes sure the public shares interpolate to the epoch's public
	// key, so a record cannot carry public shares of another key.
	Public    [32]byte
	Encrypted []byte
}

// EpochThreshold is how many custodians' answers open a segment (DESIGN
// §7: 2 of 3). The shares are never combined into the key itself.
const EpochThreshold = 2

// DefaultEpochLength is the default time slice of one epoch key.
const DefaultEpochLength = 15 * time.Minute

// ErrKeyMismatch is returned when a share does not match its public share
// in the record (wrong or tampered).
var ErrKeyMismatch = errors.New("share does not match this epoch's key")

// ErrNotCustodian is returned when a record holds no share for a key.
var ErrNotCustodian = errors.New("no share for this custodian in the epoch record")

// shareContext starts every share envelope; the epoch's binding follows —
// its key's fingerprint, camera, start and end — so a share moved into
// another record, or a record relabelled with another camera or time (to
// have a custodian release an out-of-scope key as if it were in scope), is
// refused before the share is used.
const shareContext = "custos/epoch-share/v3\x00"

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
// EpochStart), splits the clamped X25519 private scalar, reduced mod L,
// 2-of-n over Z_L among custodians (share i to custodians[i]), encrypts each
// share to its custodian, records the public shares, wipes every private
// byte and returns the record. It takes about a millisecond;
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
	if _, _, err := rec.check(); err != nil {
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

// encryptShares splits the clamped X25519 scalar (mod L) and seals share i
// to custodians[i].
func encryptShares(scalar []byte, epoch []byte, custodians []Custodian) ([]EncryptedShare, error) {
	if len(scalar) != scalarLen {
		return nil, fmt.Errorf("%d-byte X25519 secret", len(scalar))
	}
	k, err := edwards25519.NewScalar().SetBytesWithClamping(scalar)
	if err != nil {
		return nil, err
	}
	shares, pubs, err := splitScalar(k, len(custodians), EpochThreshold)
	k.Set(edwards25519.NewScalar())
	if err != nil {
		return nil, err
	}
	defer func() {
		for i := range shares {
			shares[i].Zero()
		}
	}()
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
		out[i] = EncryptedShare{Custodian: c.name, Fingerprint: c.fp, Public: pubs[i], Encrypted: enc}
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
