package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The one OpenPGP message shape Custos writes and reads (segments and key
// shares alike), so that nothing is negotiated. The PKESK is go-crypto's;
// a whole message's SEIPDv2 packet is written and read in one pass by
// seipd.go (definite lengths), and a streamed one (NewWriter: partial
// lengths) by go-crypto's packet layer:
//
//	PKESK v6 (X25519, recipient's v6 fingerprint)
//	SEIPD v2 (AES-256, GCM, 64 KiB chunks: small buffers, fewer copies)
//	  └ Literal data ('b', no file name, time 0)
//
// No compression: it buys nothing on H.264 and opens compression side
// channels. No signature: SEIPDv2's AEAD already gives integrity, and
// authorship of a segment is the store's seal over its link, in front of
// the message (custody.go). The reader accepts exactly this shape and nothing
// else, so a message cannot be downgraded to SEIPDv1 (MDC), unprotected
// data, OCB/EAX, another cipher or a differently wrapped payload.

// ErrBadCiphertext is wrapped when a message is malformed, not of the one
// accepted shape, or fails authentication.
var ErrBadCiphertext = errors.New("not an intact Custos SEIPDv2/AES-256-GCM message")

// ErrWrongKey is wrapped when a message is encrypted to another key.
var ErrWrongKey = errors.New("encrypted to another key")

// messageConfig makes go-crypto write SEIPDv2 with GCM and default chunks.
var messageConfig = &packet.Config{AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM, ChunkSize: 64 << 10}}

// sealWriter starts a message to the X25519 key to; the caller writes the
// plaintext and closes the writer (Close writes the final AEAD tag).
func sealWriter(dst io.Writer, to *packet.PublicKey) (io.WriteCloser, error) {
	sessionKey := make([]byte, gcmSuite.Cipher.KeySize())
	defer clear(sessionKey) // go-crypto derives its keys from it and keeps no reference
	if _, err := rand.Read(sessionKey); err != nil {
		return nil, err
	}
	if err := packet.SerializeEncryptedKeyAEAD(dst, to, gcmSuite.Cipher, true, sessionKey, messageConfig); err != nil {
		return nil, err
	}
	w, err := packet.SerializeSymmetricallyEncrypted(dst, gcmSuite.Cipher, true, gcmSuite, sessionKey, messageConfig)
	if err != nil {
		return nil, err
	}
	return packet.SerializeLiteral(w, true, "", 0)
}

// seal encrypts plaintext to the X25519 key to as one message.
func seal(to *packet.PublicKey, plaintext []byte) ([]byte, error) {
	return appendSealed(nil, to, plaintext)
}

// open decrypts a message of the one accepted shape with priv (an X25519
// subkey). The plaintext is returned only once every chunk tag and the
// final tag have verified.
func open(priv *packet.PrivateKey, msg []byte) ([]byte, error) {
	r := bytes.NewReader(msg)
	ek, se, err := readMessageHeader(r, msg, priv.Fingerprint)
	if err != nil {
		return nil, err
	}
	if err := ek.Decrypt(priv, nil); err != nil {
		return nil, fmt.Errorf("session key: %w", ErrBadCiphertext)
	}
	defer clear(ek.Key)
	return openBody(r, msg, se, ek.Key)
}

// openBody decrypts the SEIPDv2 packet se, read from r (a reader over
// msg), with sessionKey and checks the one literal packet inside and that
// nothing follows. The plaintext is returned only once every chunk tag and
// the final tag have verified.
func openBody(r *bytes.Reader, msg []byte, se *packet.SymmetricallyEncrypted, sessionKey []byte) ([]byte, error) {
	if pt, ok, err := openSealed(msg, sessionKey); ok {
		return pt, err
	}
	return openWithGoCrypto(r, msg, se, sessionKey)
}

// openWithGoCrypto is openBody through go-crypto's reader: for a streamed
// message (partial lengths), and in tests for every shape.
func openWithGoCrypto(r *bytes.Reader, msg []byte, se *packet.SymmetricallyEncrypted, sessionKey []byte) ([]byte, error) {
	rc, err := se.Decrypt(se.Cipher, sessionKey)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadCiphertext)
	}
	pt, err := readLiteral(rc, len(msg))
	if err == nil && rc.Close() != nil {
		err = fmt.Errorf("final tag: %w", ErrBadCiphertext)
	}
	if err == nil {
		err = expectEOF(r, "after the encrypted data")
	}
	if err != nil {
		clear(pt)
		return nil, err
	}
	return pt, nil
}

// readMessageHeader reads the PKESK and the SEIPD header and checks both
// against the accepted shape before any decryption.
func readMessageHeader(r *bytes.Reader, msg, fingerprint []byte) (*packet.EncryptedKey, *packet.SymmetricallyEncrypted, error) {
	p, err := packet.Read(r)
	if err != nil {
		return nil, nil, fmt.Errorf("first packet: %w", ErrBadCiphertext)
	}
	ek, ok := p.(*packet.EncryptedKey)
	if !ok || ek.Version != 6 || ek.Algo != packet.PubKeyAlgoX25519 || ek.KeyVersion != 6 {
		return nil, nil, fmt.Errorf("first packet is not a v6 X25519 PKESK: %w", ErrBadCiphertext)
	}
	if err := checkPKESKBytes(msg[:len(msg)-r.Len()]); err != nil {
		return nil, nil, err
	}
	if err := checkSEIPDFraming(msg[len(msg)-r.Len():]); err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(ek.KeyFingerprint, fingerprint) {
		return nil, nil, ErrWrongKey
	}
	p, err = packet.Read(r)
	if err != nil {
		return nil, nil, fmt.Errorf("second packet: %w", ErrBadCiphertext)
	}
	se, ok := p.(*packet.SymmetricallyEncrypted)
	if !ok || !se.IntegrityProtected || se.Version != 2 {
		return nil, nil, fmt.Errorf("second packet is not SEIPDv2: %w", ErrBadCiphertext)
	}
	if se.Cipher != gcmSuite.Cipher || se.Mode != gcmSuite.Mode {
		return nil, nil, fmt.Errorf("AEAD suite is not AES-256-GCM: %w", ErrBadCiphertext)
	}
	return ek, se, nil
}

// readLiteral reads the single literal packet inside the decrypted data and
// checks that nothing follows it. max bounds the plaintext (it cannot exceed
// the ciphertext), so the buffer is allocated once and never regrown into
// stray copies.
func readLiteral(rc io.Reader, max int) ([]byte, error) {
	p, err := packet.Read(rc)
	if err != nil {
		return nil, fmt.Errorf("decrypted data: %w", ErrBadCiphertext)
	}
	lit, ok := p.(*packet.LiteralData)
	if !ok || !lit.IsBinary || lit.FileName != "" || lit.Time != 0 {
		return nil, fmt.Errorf("decrypted data is not one plain binary literal packet: %w", ErrBadCiphertext)
	}
	buf := make([]byte, max+1)
	n, err := io.ReadFull(lit.Body, buf)
	buf = buf[:n]
	if err == nil {
		clear(buf)
		return nil, fmt.Errorf("plaintext longer than its ciphertext: %w", ErrBadCiphertext)
	}
	if err != io.ErrUnexpectedEOF && err != io.EOF {
		clear(buf)
		return nil, fmt.Errorf("decrypt: %w", ErrBadCiphertext)
	}
	if err := expectEOF(rc, "after the literal data"); err != nil {
		clear(buf)
		return nil, err
	}
	return buf, nil
}

// expectEOF fails unless r has nothing left, not even a packet go-crypto
// would skip.
func expectEOF(r io.Reader, where string) error {
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n != 0 || err != io.EOF {
		return fmt.Errorf("trailing data %s: %w", where, ErrBadCiphertext)
	}
	return nil
}

// checkPKESKBytes insists on the one encoding of the v6 X25519 PKESK that
// Custos writes. The PKESK is not covered by the AEAD tag and go-crypto's
// parser ignores some of its bytes (the key-field size octet, anything
// after the wrapped key), so without this check those bytes are malleable.
//
//	0xC1 len | 6 | 33 | 6 | fingerprint[32] | 25 | ephemeral[32] | 40 | wrapped[40]
func checkPKESKBytes(raw []byte) error {
	const wrapped = 40 // AES key wrap of a 32-byte session key
	const bodyLen = 3 + 32 + 1 + 32 + 1 + wrapped
	if len(raw) != 2+bodyLen || raw[0] != 0xC1 || raw[1] != bodyLen ||
		raw[2] != 6 || raw[3] != 33 || raw[4] != 6 || raw[37] != byte(packet.PubKeyAlgoX25519) || raw[70] != wrapped {
		return fmt.Errorf("non-canonical PKESK: %w", ErrBadCiphertext)
	}
	return nil
}

// checkSEIPDFraming checks that rest is exactly one SEIPD packet (new
// format, tag 18) whose length fields, partial or not, end exactly at the
// end of the message. go-crypto tolerates a length that claims more bytes
// than there are.
func checkSEIPDFraming(rest []byte) error {
	bad := fmt.Errorf("SEIPD packet framing: %w", ErrBadCiphertext)
	if len(rest) < 2 || rest[0] != 0xD2 {
		return bad
	}
	for i := 1; ; {
		n, hdr, final := packetLength(rest[i:])
		if hdr == 0 || n > len(rest)-i-hdr {
			return bad
		}
		i += hdr + n
		if final {
			if i != len(rest) {
				return bad
			}
			return nil
		}
	}
}

// packetLength decodes a new-format length at the start of b: the body
// length, the header size (0 if b is too short) and whether it is the last
// part (not a partial length).
func packetLength(b []byte) (n, hdr int, final bool) {
	switch {
	case len(b) < 1:
		return 0, 0, false
	case b[0] < 192:
		return int(b[0]), 1, true
	case b[0] < 224:
		if len(b) < 2 {
			return 0, 0, false
		}
		return (int(b[0])-192)<<8 + int(b[1]) + 192, 2, true
	case b[0] < 255:
		return 1 << (b[0] & 0x1f), 1, false
	default:
		if len(b) < 5 {
			return 0, 0, false
		}
		return int(binary.BigEndian.Uint32(b[1:5])), 5, true
	}
}
