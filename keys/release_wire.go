package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Wire form of a released answer (a custodian's partial for one segment),
// version 2. Every field has one encoding,
// lengths are exact and bounded, and nothing may follow the ciphertext. The
// context travels in clear; the HPKE info is releaseInfoDomain followed by
// exactly the context bytes below, so changing any of them makes the
// ciphertext fail to open.
//
//	"CSRS" 0x01
//	u8  len | request ID
//	u8  len | custodian name
//	[32] custodian key fingerprint
//	u8  len | camera
//	i64 epoch start, i64 epoch end     Unix seconds, big-endian
//	[32] epoch key fingerprint
//	i64 segment start, i64 segment end Unix nanoseconds, big-endian
//	[32] segment ephemeral key         X25519, from the segment's PKESK
//	[32] HPKE encapsulated key         ephemeral X25519 public key
//	u16 len | ciphertext               AES-256-GCM, 16-byte tag, of
//	                                   P ‖ c ‖ z: the partial [k_i]·E'
//	                                   and its proof's challenge and
//	                                   response (threshold.go)

var releaseMagic = []byte("CSRP\x02")

const (
	hpkeEncLen = 32 // DHKEM(X25519) encapsulated key
	gcmTagLen  = 16
	partialLen = 3 * 32
	sealedLen  = partialLen + gcmTagLen
	// MaxReleaseLen bounds a released answer's wire form.
	MaxReleaseLen = 5 + 1 + maxRequestIDLen + 1 + maxCustodianNameLen + 32 +
		1 + maxCameraLen + 16 + 32 + 16 + 32 + hpkeEncLen + 2 + sealedLen
)

// encode is the context's canonical form: the head of the wire message and
// the tail of the HPKE info. The caller has checked c.
func (c ReleaseContext) encode() []byte {
	b := make([]byte, 0, 3+len(c.RequestID)+len(c.Custodian)+len(c.Camera)+3*32+16)
	b = append(b, byte(len(c.RequestID)))
	b = append(b, c.RequestID...)
	b = append(b, byte(len(c.Custodian)))
	b = append(b, c.Custodian...)
	b = append(b, c.CustodianFP[:]...)
	b = append(b, byte(len(c.Camera)))
	b = append(b, c.Camera...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.EpochStart.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.EpochEnd.Unix()))
	b = append(b, c.EpochFP[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.SegmentStart.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.SegmentEnd.UnixNano()))
	return append(b, c.Ephemeral[:]...)
}

// check validates c as an EpochRecord's fields are validated.
func (c ReleaseContext) check() error {
	if err := validRequestID(c.RequestID); err != nil {
		return err
	}
	if err := validCustodianName(c.Custodian); err != nil {
		return err
	}
	if err := validCamera(c.Camera); err != nil {
		return err
	}
	if c.CustodianFP.IsZero() || c.EpochFP.IsZero() {
		return errors.New("a fingerprint is missing")
	}
	l := c.EpochEnd.Sub(c.EpochStart)
	if err := validEpochLength(l); err != nil {
		return err
	}
	if c.EpochStart.Nanosecond() != 0 || !c.EpochStart.Equal(EpochStart(c.EpochStart, l)) {
		return errors.New("epoch start is not on an epoch boundary")
	}
	// A segment starts in its epoch (it is encrypted to the key of the
	// epoch of its start) and lasts a positive time; times stay inside
	// what UnixNano can carry.
	if c.SegmentStart.Before(c.EpochStart) || !c.SegmentStart.Before(c.EpochEnd) ||
		!c.SegmentEnd.After(c.SegmentStart) || c.SegmentEnd.Sub(c.SegmentStart) > maxEpochLength ||
		c.SegmentEnd.Year() > 2200 {
		return errors.New("segment span is not inside its epoch")
	}
	if c.Ephemeral == [32]byte{} {
		return errors.New("no ephemeral key")
	}
	return nil
}

// validRequestID accepts 1–127 letters, digits, '-', '_', '.' and ':'.
func validRequestID(s string) error {
	if s == "" || len(s) > maxRequestIDLen {
		return fmt.Errorf("request ID must have 1 to %d characters", maxRequestIDLen)
	}
	if !nameChars(s, "-_.:") {
		return errors.New("request ID may hold only letters, digits, dash, underscore, dot and colon")
	}
	return nil
}

func releaseInfo(head []byte) []byte {
	return append([]byte(releaseInfoDomain), head...)
}

// appendRelease frames head and HPKE's output (enc || ciphertext).
func appendRelease(head, sealed []byte) []byte {
	ct := sealed[hpkeEncLen:]
	b := make([]byte, 0, len(releaseMagic)+len(head)+len(sealed)+2)
	b = append(b, releaseMagic...)
	b = append(b, head...)
	b = append(b, sealed[:hpkeEncLen]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ct)))
	return append(b, ct...)
}

// parseRelease decodes the wire form strictly and returns the context, its
// encoded bytes (for the info) and enc || ciphertext (for hpke.Open). Errors
// name lengths, never bytes.
func parseRelease(msg []byte) (ReleaseContext, []byte, []byte, error) {
	if len(msg) > MaxReleaseLen {
		return ReleaseContext{}, nil, nil, fmt.Errorf("%d bytes, at most %d: %w", len(msg), MaxReleaseLen, ErrBadRelease)
	}
	d := &reader{b: msg}
	if !bytes.Equal(d.next(len(releaseMagic)), releaseMagic) {
		return ReleaseContext{}, nil, nil, fmt.Errorf("not a version 2 released answer: %w", ErrBadRelease)
	}
	headStart := len(msg) - len(d.b)
	var c ReleaseContext
	c.RequestID = string(d.next(int(d.u8())))
	c.Custodian = string(d.next(int(d.u8())))
	copy(c.CustodianFP[:], d.next(32))
	c.Camera = string(d.next(int(d.u8())))
	c.EpochStart = time.Unix(int64(d.u64()), 0).UTC()
	c.EpochEnd = time.Unix(int64(d.u64()), 0).UTC()
	copy(c.EpochFP[:], d.next(32))
	c.SegmentStart = time.Unix(0, int64(d.u64())).UTC()
	c.SegmentEnd = time.Unix(0, int64(d.u64())).UTC()
	copy(c.Ephemeral[:], d.next(32))
	head := msg[headStart : len(msg)-len(d.b)]
	enc := d.next(hpkeEncLen)
	n := int(d.u16())
	ct := d.next(n)
	switch {
	case d.short:
		return ReleaseContext{}, nil, nil, fmt.Errorf("truncated: %w", ErrBadRelease)
	case len(d.b) != 0:
		return ReleaseContext{}, nil, nil, fmt.Errorf("%d bytes after the ciphertext: %w", len(d.b), ErrBadRelease)
	case n != sealedLen:
		return ReleaseContext{}, nil, nil, fmt.Errorf("%d-byte ciphertext: %w", n, ErrBadRelease)
	}
	if err := c.check(); err != nil {
		return ReleaseContext{}, nil, nil, fmt.Errorf("context: %w: %w", err, ErrBadRelease)
	}
	sealed := make([]byte, 0, len(enc)+len(ct))
	sealed = append(append(sealed, enc...), ct...)
	return c, bytes.Clone(head), sealed, nil
}
