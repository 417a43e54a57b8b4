package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The sealer of a whole message in one pass (RFC 9580 §5.13.2, SEIPDv2).
//
// go-crypto's streaming writers copy the plaintext three times on its way
// out (the literal packet's partial-length buffer, the AEAD chunk buffer,
// the outer partial-length buffer), which made a segment's encryption
// 0.22× raw AES-GCM. A segment is whole in memory when it is encrypted, so
// its lengths are known in advance: appendSealed writes definite-length
// packets and has AES-GCM read each chunk straight from the plaintext and
// write it straight into the output, leaving the first chunk (which starts
// with the literal packet's header) as the only copy. The PKESK is still
// go-crypto's. The shape is the one go-crypto's reader accepts (the same
// packets, suite and 64 KiB chunks; only the lengths are definite), and the
// tests decrypt the sealer's output with go-crypto's reader as well as with
// openSealed.

const (
	seipdChunkByte = 10 // chunk size octet: 2^(10+6) = 64 KiB, as messageConfig
	seipdChunk     = 1 << (seipdChunkByte + 6)
	seipdSaltLen   = 32
	gcmNonceLen    = 12
)

// appendSealed appends to dst one message of the accepted shape to the
// X25519 key to, carrying plaintext.
func appendSealed(dst []byte, to *packet.PublicKey, plaintext []byte) ([]byte, error) {
	sessionKey := make([]byte, gcmSuite.Cipher.KeySize())
	defer clear(sessionKey)
	if _, err := rand.Read(sessionKey); err != nil {
		return nil, err
	}
	var pkesk bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&pkesk, to, gcmSuite.Cipher, true, sessionKey, messageConfig); err != nil {
		return nil, err
	}
	var salt [seipdSaltLen]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return nil, err
	}
	if n := seipdLen(len(plaintext)); n > 0 && cap(dst)-len(dst) < pkesk.Len()+n {
		dst = append(make([]byte, 0, len(dst)+pkesk.Len()+n), dst...) // one allocation, no regrowth
	}
	dst = append(dst, pkesk.Bytes()...)
	return appendSEIPD(dst, sessionKey, salt[:], plaintext)
}

// literalHeader is the header of a binary literal packet of n data bytes
// with no file name and time 0, which go-crypto's reader and readLiteral
// accept.
func literalHeader(n int) []byte {
	h := appendPacketLength([]byte{0xC0 | 11}, 6+n)
	return append(h, 'b', 0, 0, 0, 0, 0)
}

// seipdLen is the SEIPDv2 packet's size (header included) for a message
// of n plaintext bytes, or -1 if it exceeds what one packet can say.
func seipdLen(n int) int {
	_, body := seipdBody(len(literalHeader(n)) + n)
	if body > math.MaxUint32 {
		return -1
	}
	return len(appendPacketLength([]byte{0xD2}, body)) + body
}

// seipdBody is the number of chunks and the body length of the SEIPDv2
// packet of p plaintext octets (the literal packet, header included).
func seipdBody(p int) (chunks, body int) {
	chunks = (p + seipdChunk - 1) / seipdChunk
	return chunks, 4 + seipdSaltLen + p + chunks*gcmTagLen + gcmTagLen
}

// seipdAEAD derives the message key and IV of a SEIPDv2 packet whose header
// octets are prefix (RFC 9580 §5.13.2: HKDF-SHA256 of the session key with
// the salt, the header as info) and returns its AES-256-GCM and the nonce
// of chunk 0 (the IV, then a zero chunk index).
func seipdAEAD(sessionKey, salt, prefix []byte) (cipher.AEAD, [gcmNonceLen]byte, error) {
	var nonce [gcmNonceLen]byte
	keyIV, err := hkdf.Key(sha256.New, sessionKey, salt, string(prefix), 32+gcmNonceLen-8)
	if err != nil {
		return nil, nonce, err
	}
	defer clear(keyIV)
	block, err := aes.NewCipher(keyIV[:32])
	if err != nil {
		return nil, nonce, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nonce, err
	}
	copy(nonce[:], keyIV[32:])
	return gcm, nonce, nil
}

// appendSEIPD appends the SEIPDv2 packet (AES-256, GCM, 64 KiB chunks) of
// one binary literal packet of data, under sessionKey and salt.
func appendSEIPD(dst, sessionKey, salt, data []byte) ([]byte, error) {
	return appendSEIPDOf(dst, sessionKey, salt, literalHeader(len(data)), data)
}

// appendSEIPDOf appends the SEIPDv2 packet whose plaintext is lit followed
// by data (lit is at most a chunk: a literal packet's header).
func appendSEIPDOf(dst, sessionKey, salt, lit, data []byte) ([]byte, error) {
	p := len(lit) + len(data) // the encrypted plaintext: the literal packet
	chunks, body := seipdBody(p)
	if body > math.MaxUint32 {
		return nil, errors.New("keys: seal: message too large for one packet")
	}
	// The header octets are the AEAD's associated data and the HKDF's info.
	prefix := []byte{0xD2, 2, byte(gcmSuite.Cipher), byte(gcmSuite.Mode), seipdChunkByte}
	gcm, nonce, err := seipdAEAD(sessionKey, salt, prefix)
	if err != nil {
		return nil, err
	}

	dst = appendPacketLength(append(dst, prefix[0]), body)
	dst = append(dst, prefix[1:]...)
	dst = append(dst, salt...)

	// Chunk 0: the literal header and the start of data, assembled in
	// place and sealed there.
	first := min(len(data), seipdChunk-len(lit))
	start := len(dst)
	dst = append(dst, lit...)
	dst = append(dst, data[:first]...)
	dst = gcm.Seal(dst[:start], nonce[:], dst[start:], prefix)
	// The rest straight from data into dst.
	for i, off := uint64(1), first; off < len(data); i++ {
		binary.BigEndian.PutUint64(nonce[4:], i)
		end := min(off+seipdChunk, len(data))
		dst = gcm.Seal(dst, nonce[:], data[off:end], prefix)
		off = end
	}
	// The final tag: no plaintext; the associated data ends with the
	// number of plaintext octets.
	binary.BigEndian.PutUint64(nonce[4:], uint64(chunks))
	ad := binary.BigEndian.AppendUint64(prefix, uint64(p))
	return gcm.Seal(dst, nonce[:], nil, ad), nil
}

// appendPacketLength appends a new-format body length (RFC 9580 §4.2.1),
// in its shortest form.
func appendPacketLength(dst []byte, n int) []byte {
	switch {
	case n < 192:
		return append(dst, byte(n))
	case n < 8384:
		n -= 192
		return append(dst, byte(n>>8)+192, byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xFF), uint32(n))
}

// openSealed decrypts the SEIPDv2 packet of msg, the accepted message
// shape whose PKESK readMessageHeader checked, in one pass: each chunk
// straight from msg into the plaintext. It handles what appendSealed
// writes (definite lengths, 64 KiB chunks) and reports ok false for
// anything else — messages go-crypto's streaming writer made, with partial
// lengths — which openBody then reads with go-crypto. The plaintext is
// returned only once every chunk tag and the final tag verified.
func openSealed(msg, sessionKey []byte) (pt []byte, ok bool, err error) {
	// On a failure, everything decrypted so far is zeroed: gcm.Open
	// returns nil on a bad tag, but the chunks before it are in pt's array.
	bad := func(what string) ([]byte, bool, error) {
		clear(pt[:cap(pt)])
		return nil, true, fmt.Errorf("%s: %w", what, ErrBadCiphertext)
	}
	if len(msg) < pkeskLen+2 || msg[pkeskLen] != 0xD2 {
		return nil, false, nil
	}
	n, hdr, final := packetLength(msg[pkeskLen+1:])
	body := msg[pkeskLen+1+hdr:]
	if hdr == 0 || !final || n != len(body) || len(body) < 4+seipdSaltLen+gcmTagLen+gcmTagLen ||
		body[0] != 2 || body[1] != byte(gcmSuite.Cipher) || body[2] != byte(gcmSuite.Mode) || body[3] != seipdChunkByte {
		return nil, false, nil
	}
	prefix := []byte{0xD2, body[0], body[1], body[2], body[3]}
	gcm, nonce, err := seipdAEAD(sessionKey, body[4:4+seipdSaltLen], prefix)
	if err != nil {
		return nil, true, err
	}

	chunks := body[4+seipdSaltLen : len(body)-gcmTagLen]
	finalTag := body[len(body)-gcmTagLen:]
	pt = make([]byte, 0, len(chunks))
	var i uint64
	for ; len(chunks) > 0; i++ {
		c := chunks[:min(len(chunks), seipdChunk+gcmTagLen)]
		chunks = chunks[len(c):]
		if len(c) <= gcmTagLen { // an empty chunk: this shape never has one
			return bad("empty chunk")
		}
		binary.BigEndian.PutUint64(nonce[4:], i)
		out, err := gcm.Open(pt, nonce[:], c, prefix)
		if err != nil {
			return bad(fmt.Sprintf("chunk %d", i))
		}
		pt = out
	}
	binary.BigEndian.PutUint64(nonce[4:], i)
	if _, err := gcm.Open(nil, nonce[:], finalTag, binary.BigEndian.AppendUint64(prefix, uint64(len(pt)))); err != nil || i == 0 {
		return bad("final tag")
	}
	// One binary literal packet, no file name, time 0, filling the rest.
	if len(pt) < 2 || pt[0] != 0xC0|11 {
		return bad("decrypted data is not a literal packet")
	}
	ln, lhdr, lfinal := packetLength(pt[1:])
	if lhdr == 0 || !lfinal {
		clear(pt[:cap(pt)])
		return nil, false, nil // partial lengths inside: go-crypto's shape
	}
	lit := pt[1+lhdr:]
	if ln != len(lit) || len(lit) < 6 || lit[0] != 'b' || lit[1] != 0 || lit[2]|lit[3]|lit[4]|lit[5] != 0 {
		return bad("decrypted data is not one plain binary literal packet")
	}
	return lit[6:], true, nil
}
