package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"filippo.io/edwards25519"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
)

// Binary form of an EpochRecord, version 2. Every field has one encoding,
// lengths are exact and bounded, and nothing may follow the last share, so
// the encoding is canonical: one record, one byte string (the decoder
// re-encodes and compares to make sure). There are no optional or unknown
// fields; a change of layout is a new version, which old decoders refuse.
//
//	"CSEP" 0x01
//	u8  len | camera
//	i64 start, i64 end                 Unix seconds, big-endian
//	u16 len | public key               binary v6 OpenPGP key
//	[32] fingerprint
//	u8  n shares, then n times:
//	    u8 len | custodian name, [32] custodian fingerprint,
//	    [32] public share              edwards25519 point [k_i]·B
//	    u16 len | encrypted share      one OpenPGP message
//
// Version 1 (byte-wise shares, no public shares) is not read any more.

var recordMagic = []byte("CSEP\x02")

const (
	maxShares           = 16
	maxEncryptedShare   = 1024
	maxEpochLength      = 24 * time.Hour
	maxCameraLen        = 127
	maxCustodianNameLen = 63
	// MaxEpochRecordLen bounds an encoded record.
	MaxEpochRecordLen = 64 << 10
)

// ErrBadRecord is wrapped by every error about a malformed epoch record.
var ErrBadRecord = errors.New("bad epoch record")

// Marshal returns the record's canonical binary form. It refuses a record
// that UnmarshalEpochRecord would refuse.
func (r *EpochRecord) Marshal() ([]byte, error) {
	if _, _, err := r.check(); err != nil {
		return nil, fmt.Errorf("keys: marshal epoch record: %w", err)
	}
	return r.encode(), nil
}

func (r *EpochRecord) encode() []byte {
	b := append([]byte(nil), recordMagic...)
	b = append(b, byte(len(r.Camera)))
	b = append(b, r.Camera...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Start.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.End.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.PublicKey)))
	b = append(b, r.PublicKey...)
	b = append(b, r.Fingerprint[:]...)
	b = append(b, byte(len(r.Shares)))
	for _, s := range r.Shares {
		b = append(b, byte(len(s.Custodian)))
		b = append(b, s.Custodian...)
		b = append(b, s.Fingerprint[:]...)
		b = append(b, s.Public[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s.Encrypted)))
		b = append(b, s.Encrypted...)
	}
	return b
}

// UnmarshalEpochRecord decodes and checks an untrusted record: layout,
// bounds, names, times, and that the public key is a valid Custos v6 key
// with the stated fingerprint. The result does not alias b.
func UnmarshalEpochRecord(b []byte) (*EpochRecord, error) {
	if len(b) > MaxEpochRecordLen {
		return nil, fmt.Errorf("keys: epoch record: %d bytes, at most %d: %w", len(b), MaxEpochRecordLen, ErrBadRecord)
	}
	r, err := decodeRecord(&reader{b: b})
	if err == nil {
		_, _, err = r.check()
	}
	if err == nil && !bytes.Equal(r.encode(), b) {
		err = fmt.Errorf("non-canonical encoding: %w", ErrBadRecord)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: epoch record: %w", err)
	}
	return r, nil
}

func decodeRecord(d *reader) (*EpochRecord, error) {
	if !bytes.Equal(d.next(len(recordMagic)), recordMagic) {
		return nil, fmt.Errorf("not a version 2 epoch record: %w", ErrBadRecord)
	}
	r := &EpochRecord{Camera: string(d.next(int(d.u8())))}
	r.Start = time.Unix(int64(d.u64()), 0).UTC()
	r.End = time.Unix(int64(d.u64()), 0).UTC()
	r.PublicKey = bytes.Clone(d.next(int(d.u16())))
	copy(r.Fingerprint[:], d.next(len(r.Fingerprint)))
	n := int(d.u8())
	if n > maxShares {
		return nil, fmt.Errorf("%d shares: %w", n, ErrBadRecord)
	}
	for range n {
		s := EncryptedShare{Custodian: string(d.next(int(d.u8())))}
		copy(s.Fingerprint[:], d.next(len(s.Fingerprint)))
		copy(s.Public[:], d.next(len(s.Public)))
		s.Encrypted = bytes.Clone(d.next(int(d.u16())))
		r.Shares = append(r.Shares, s)
	}
	if d.short {
		return nil, fmt.Errorf("truncated: %w", ErrBadRecord)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last share: %w", len(d.b), ErrBadRecord)
	}
	return r, nil
}

// check validates the record and parses its public key; it returns the key
// and its X25519 encryption subkey.
func (r *EpochRecord) check() (*openpgp.Entity, *packet.PublicKey, error) {
	if r == nil {
		return nil, nil, fmt.Errorf("no record: %w", ErrBadRecord)
	}
	if err := validCamera(r.Camera); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", err, ErrBadRecord)
	}
	if err := r.checkTimes(); err != nil {
		return nil, nil, err
	}
	e, sub, err := parseV6Public(r.PublicKey, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("public key: %w: %w", err, ErrBadRecord)
	}
	if fingerprintOf(e.PrimaryKey) != r.Fingerprint {
		return nil, nil, fmt.Errorf("fingerprint does not match the public key: %w", ErrBadRecord)
	}
	if err := r.checkShares(); err != nil {
		return nil, nil, err
	}
	if err := r.checkPublicShares(sub); err != nil {
		return nil, nil, err
	}
	return e, sub, nil
}

func (r *EpochRecord) checkTimes() error {
	l := r.End.Sub(r.Start)
	if err := validEpochLength(l); err != nil {
		return fmt.Errorf("%w: %w", err, ErrBadRecord)
	}
	if r.Start.Nanosecond() != 0 || !r.Start.Equal(EpochStart(r.Start, l)) {
		return fmt.Errorf("start is not on an epoch boundary: %w", ErrBadRecord)
	}
	return nil
}

func (r *EpochRecord) checkShares() error {
	if len(r.Shares) < EpochThreshold || len(r.Shares) > maxShares {
		return fmt.Errorf("%d shares, want %d to %d: %w", len(r.Shares), EpochThreshold, maxShares, ErrBadRecord)
	}
	for i, s := range r.Shares {
		if err := validCustodianName(s.Custodian); err != nil {
			return fmt.Errorf("share %d: %w: %w", i, err, ErrBadRecord)
		}
		if s.Fingerprint.IsZero() || len(s.Encrypted) == 0 || len(s.Encrypted) > maxEncryptedShare {
			return fmt.Errorf("share %d is empty or too long: %w", i, ErrBadRecord)
		}
		for _, t := range r.Shares[:i] {
			if s.Custodian == t.Custodian || s.Fingerprint == t.Fingerprint {
				return fmt.Errorf("custodian %q has two shares: %w", s.Custodian, ErrBadRecord)
			}
		}
	}
	return nil
}

// validCamera accepts 1–127 letters, digits, '-', '_', '.', '/' and ':'
// (room for "site/camera").
func validCamera(s string) error {
	if s == "" || len(s) > maxCameraLen {
		return fmt.Errorf("camera name must have 1 to %d characters", maxCameraLen)
	}
	if !nameChars(s, "-_./:") {
		return errors.New("camera name may hold only letters, digits, dash, underscore, dot, slash and colon")
	}
	return nil
}

// validCustodianName accepts 1–63 letters, digits, '-', '_' and '.', like
// the policy's names.
func validCustodianName(s string) error {
	if s == "" || len(s) > maxCustodianNameLen {
		return fmt.Errorf("custodian name must have 1 to %d characters", maxCustodianNameLen)
	}
	if !nameChars(s, "-_.") {
		return errors.New("custodian name may hold only letters, digits, dash, underscore and dot")
	}
	return nil
}

func nameChars(s, extra string) bool {
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte(extra), c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func validEpochLength(l time.Duration) error {
	if l < time.Second || l > maxEpochLength || l%time.Second != 0 {
		return fmt.Errorf("epoch length %v: want whole seconds up to %v", l, maxEpochLength)
	}
	return nil
}

// reader is a bounds-checked cursor; after a short read every further read
// returns zeros and short stays set.
type reader struct {
	b     []byte
	short bool
}

func (d *reader) next(n int) []byte {
	if n > len(d.b) {
		d.short, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) u8() uint8 {
	if v := d.next(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *reader) u16() uint16 {
	if v := d.next(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *reader) u32() uint32 {
	if v := d.next(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *reader) u64() uint64 {
	if v := d.next(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// checkPublicShares checks that the public shares are prime-order points
// on one line (degree EpochThreshold−1 = 1) whose value at 0 is the epoch's
// X25519 public key: so they are the public shares of this key's scalar,
// and a custodian's answer checked against them is an answer about this
// key.
func (r *EpochRecord) checkPublicShares(sub *packet.PublicKey) error {
	pts := make([]*edwards25519.Point, len(r.Shares))
	for i, s := range r.Shares {
		p, err := edwards25519.NewIdentityPoint().SetBytes(s.Public[:])
		if err != nil || !bytes.Equal(p.Bytes(), s.Public[:]) || !primeOrder(p) {
			return fmt.Errorf("share %d: public share is not a prime-order point: %w", i, ErrBadRecord)
		}
		pts[i] = p
	}
	xs := []byte{1, 2}
	at := func(x byte) *edwards25519.Point {
		v := edwards25519.NewIdentityPoint().ScalarMult(lagrangeAt(xs, 0, x), pts[0])
		return v.Add(v, edwards25519.NewIdentityPoint().ScalarMult(lagrangeAt(xs, 1, x), pts[1]))
	}
	pub, ok := sub.PublicKey.(*x25519.PublicKey)
	if !ok || !bytes.Equal(at(0).BytesMontgomery(), pub.Point) {
		return fmt.Errorf("public shares are not of the epoch's key: %w", ErrBadRecord)
	}
	for i := 2; i < len(pts); i++ {
		if at(byte(i+1)).Equal(pts[i]) != 1 {
			return fmt.Errorf("share %d: public share is not on the others' line: %w", i, ErrBadRecord)
		}
	}
	return nil
}
