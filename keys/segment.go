package keys

import (
	"errors"
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
	w, err := e.NewWriter(dst)
	if err != nil {
		return err
	}
	// go-crypto's packet writers buffer each Write whole and flush on the
	// next one; feeding them pieces keeps their buffers small, which makes
	// encryption several times faster than one big Write.
	for p := plaintext; len(p) > 0; {
		n := min(len(p), writePiece)
		if _, err := w.Write(p[:n]); err != nil {
			return fmt.Errorf("keys: encrypt segment: %w", err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("keys: encrypt segment: %w", err)
	}
	return nil
}

// writePiece is the size of the writes Encrypt makes (see there).
const writePiece = 16 << 10

// EncryptSegment writes plaintext to dst as one message to rec's key. To
// encrypt many segments of one epoch, make a SegmentEncrypter once.
func EncryptSegment(dst io.Writer, rec *EpochRecord, plaintext []byte) error {
	e, err := NewSegmentEncrypter(rec)
	if err != nil {
		return err
	}
	return e.Encrypt(dst, plaintext)
}

// DecryptSegment decrypts one segment with its epoch's private key. It
// refuses, before returning any plaintext, a message encrypted to another
// key (ErrWrongKey) and anything but the exact shape EncryptSegment writes
// or any failed tag (ErrBadCiphertext): no SEIPDv1, no unprotected data, no
// other AEAD mode or cipher, no truncation, nothing appended.
func DecryptSegment(key *EpochPrivateKey, ciphertext []byte) ([]byte, error) {
	if key.IsZero() {
		return nil, errors.New("keys: decrypt segment: the epoch key is wiped")
	}
	pt, err := open(key.privateKey(), ciphertext)
	if err != nil {
		return nil, fmt.Errorf("keys: decrypt segment (epoch %s): %w", key.fp, err)
	}
	return pt, nil
}
