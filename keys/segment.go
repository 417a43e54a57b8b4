package keys

import (
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Every recorded segment is one OpenPGP message (SEIPDv2, AES-256-GCM, no
// compression, no signature; see segment_message.go) to its epoch's public
// key, made before anything reaches a disk.

// SegmentEncrypter encrypts segments to one epoch's public key. Making one
// checks the record and parses its key once; it is then safe for
// concurrent use.
type SegmentEncrypter struct {
	rec *EpochRecord
	sub *packet.PublicKey
}

// NewSegmentEncrypter checks rec and returns an encrypter to its key.
func NewSegmentEncrypter(rec *EpochRecord) (*SegmentEncrypter, error) {
	_, sub, err := rec.check()
	if err != nil {
		return nil, fmt.Errorf("keys: segment encrypter: %w", err)
	}
	return &SegmentEncrypter{rec: rec, sub: sub}, nil
}

// Record is the epoch record whose key this encrypter uses.
func (e *SegmentEncrypter) Record() *EpochRecord { return e.rec }

// NewWriter starts one message on dst; write the plaintext, then Close,
// which writes the final authentication tag. Without Close the message is
// truncated and will not decrypt.
func (e *SegmentEncrypter) NewWriter(dst io.Writer) (io.WriteCloser, error) {
	w, err := sealWriter(dst, e.sub)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt segment: %w", err)
	}
	return w, nil
}

// Encrypt writes plaintext to dst as one message.
func (e *SegmentEncrypter) Encrypt(dst io.Writer, plaintext []byte) error {
	msg, err := e.Append(nil, plaintext)
	if err != nil {
		return err
	}
	_, err = dst.Write(msg)
	return err
}

// Append appends plaintext to dst as one message, in one pass over it
// (seipd.go), and returns the extended slice; with room in dst for
// SealedSize(len(plaintext)) it allocates nothing for the message.
func (e *SegmentEncrypter) Append(dst, plaintext []byte) ([]byte, error) {
	out, err := appendSealed(dst, e.sub, plaintext)
	if err != nil {
		return dst, fmt.Errorf("keys: encrypt segment: %w", err)
	}
	return out, nil
}

// SealedSize bounds the size of the message of n plaintext bytes.
func SealedSize(n int) int { return pkeskLen + seipdLen(n) }

// EncryptSegment writes plaintext to dst as one message to rec's key. To
// encrypt many segments of one epoch, make a SegmentEncrypter once.
func EncryptSegment(dst io.Writer, rec *EpochRecord, plaintext []byte) error {
	e, err := NewSegmentEncrypter(rec)
	if err != nil {
		return err
	}
	return e.Encrypt(dst, plaintext)
}

// DecryptSegmentAsCustodians decrypts one segment of rec's epoch with the
// answers of custodians a and b computed in this process (tests and tools
// that hold two custodian keys, such as a store's own checks in a test).
// It goes through the same threshold path as a release, so it too never
// rebuilds the epoch key.
func DecryptSegmentAsCustodians(rec *EpochRecord, ciphertext []byte, a, b *CustodianKey) ([]byte, error) {
	o, err := NewEpochOpener(rec)
	if err != nil {
		return nil, err
	}
	e, err := o.Ephemeral(ciphertext)
	if err != nil {
		return nil, err
	}
	ep, err := liftEphemeral(e[:])
	if err != nil {
		return nil, fmt.Errorf("keys: decrypt segment: %w", err)
	}
	var parts []*Partial
	defer func() {
		for _, p := range parts {
			p.Zero()
		}
	}()
	for _, c := range []*CustodianKey{a, b} {
		s, err := c.Share(rec)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s.partial(e, ep))
		s.Zero()
	}
	return o.DecryptSegment(ciphertext, parts...)
}
