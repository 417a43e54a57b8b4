package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The one-pass sealer writes what go-crypto's reader reads, at every chunk
// edge: the literal header fills the first chunk's start, so sizes around
// 64 KiB minus it, and whole multiples of 64 KiB, are where an
// off-by-one would show. Its size is exactly SealedSize, and a flipped bit
// anywhere fails.
func TestSealAtChunkEdges(t *testing.T) {
	f := newFixture(t)
	enc := mustEncrypter(t, f.rec)
	k := epochKeyFor(t, f)
	for _, n := range edgeSizes() {
		data := make([]byte, n)
		rand.Read(data)
		msg, err := enc.Append(nil, data)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(msg) != SealedSize(n) || cap(msg) != len(msg) {
			t.Errorf("%d bytes: message of %d bytes (cap %d), SealedSize says %d", n, len(msg), cap(msg), SealedSize(n))
		}
		assertGCMMessage(t, msg, f.rec)
		got, err := decryptWith(k, msg)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: decrypt: %v (equal %v)", n, err, bytes.Equal(got, data))
		}
		// Appending keeps what dst held.
		pre := []byte("kept")
		if out, err := enc.Append(pre, data); err != nil || !bytes.Equal(out[:4], pre) || len(out) != 4+SealedSize(n) {
			t.Errorf("%d bytes after a prefix: %v, %d bytes", n, err, len(out))
		}
		if n > 0 {
			for _, at := range []int{0, pkeskLen + 3, pkeskLen + 40, len(msg) / 2, len(msg) - 1} {
				bad := bytes.Clone(msg)
				bad[at] ^= 0x04
				if _, err := decryptWith(k, bad); err == nil {
					t.Errorf("%d bytes: a bit flipped at %d decrypted", n, at)
				}
			}
		}
	}
	// A message is not its own prefix: truncated at a chunk edge, it fails.
	data := make([]byte, 3*seipdChunk)
	msg, _ := enc.Append(nil, data)
	if _, err := decryptWith(k, msg[:len(msg)-gcmTagLen]); !errors.Is(err, ErrBadCiphertext) {
		t.Errorf("without its final tag: %v", err)
	}
}

// edgeSizes are plaintext sizes around the chunk edges: the literal header
// fills the first chunk's start.
func edgeSizes() []int {
	lit := len(literalHeader(seipdChunk))
	return []int{0, 1, 185, 186, 8000, seipdChunk - lit - 1, seipdChunk - lit, seipdChunk - lit + 1, seipdChunk,
		2*seipdChunk - lit, 2 * seipdChunk, 500 << 10, 1<<20 + 3}
}

// go-crypto's reader, a second implementation, decrypts what the sealer
// writes at every chunk edge, to the same plaintext as openSealed.
func TestGoCryptoReadsTheSealer(t *testing.T) {
	key := make([]byte, 32)
	salt := make([]byte, seipdSaltLen)
	for _, n := range edgeSizes() {
		rand.Read(key)
		rand.Read(salt)
		data := make([]byte, n)
		rand.Read(data)
		msg, err := appendSEIPD(make([]byte, pkeskLen), key, salt, data)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(msg[pkeskLen:])
		p, err := packet.Read(r)
		se, ok := p.(*packet.SymmetricallyEncrypted)
		if err != nil || !ok || se.Version != 2 {
			t.Fatalf("%d bytes: go-crypto reads %T %v", n, p, err)
		}
		got, err := openWithGoCrypto(r, msg, se, key)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: go-crypto's reader: %v (equal %v)", n, err, bytes.Equal(got, data))
		}
		if fast, ok, err := openSealed(msg, key); !ok || err != nil || !bytes.Equal(fast, data) {
			t.Fatalf("%d bytes: openSealed: ok %v %v", n, ok, err)
		}
	}
}

// Lengths are written in their shortest form (RFC 9580 §4.2.1).
func TestPacketLengthShortest(t *testing.T) {
	for n, want := range map[int][]byte{0: {0}, 191: {191}, 192: {192, 0}, 8383: {223, 255}, 8384: {255, 0, 0, 0x20, 0xC0}, 1 << 20: {255, 0, 0x10, 0, 0}} {
		if got := appendPacketLength(nil, n); !bytes.Equal(got, want) {
			t.Errorf("length %d: % x, want % x", n, got, want)
		}
		if m, hdr, final := packetLength(appendPacketLength(nil, n)); m != n || hdr != len(want) || !final {
			t.Errorf("length %d reads back as %d (%d octets, final %v)", n, m, hdr, final)
		}
	}
}

// openSealed reads only the shape appendSealed writes; what else decrypts
// is refused, or handed to go-crypto's reader (ok false) when it is the
// streaming writer's shape.
func TestOpenSealedShapes(t *testing.T) {
	key := make([]byte, 32)
	salt := make([]byte, seipdSaltLen)
	rand.Read(key)
	data := []byte("an access unit")
	fakePKESK := make([]byte, pkeskLen)
	msgOf := func(lit []byte) []byte {
		t.Helper()
		m, err := appendSEIPDOf(bytes.Clone(fakePKESK), key, salt, lit, data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if pt, ok, err := openSealed(msgOf(literalHeader(len(data))), key); !ok || err != nil || !bytes.Equal(pt, data) {
		t.Fatalf("the sealer's own shape: %q %v %v", pt, ok, err)
	}
	text := literalHeader(len(data))
	text[len(text)-6] = 'u'
	partial := []byte{0xC0 | 11, 0xE0 | 4, 'b', 0, 0, 0, 0, 0} // a 16-byte partial length: go-crypto's shape
	for name, c := range map[string]struct {
		msg    []byte
		key    []byte
		ok     bool
		reason string
	}{
		"a text literal":        {msgOf(text), key, true, "plain binary literal"},
		"a literal too long":    {msgOf(literalHeader(len(data) + 1)), key, true, "plain binary literal"},
		"not a literal":         {msgOf([]byte{0xC0 | 8, 1}), key, true, "not a literal packet"},
		"another key":           {msgOf(literalHeader(len(data))), make([]byte, 32), true, "chunk 0"},
		"a partial literal":     {msgOf(partial), key, false, ""},
		"a byte after the tag":  {append(msgOf(literalHeader(len(data))), 0), key, false, ""},
		"too short for a chunk": {append(bytes.Clone(fakePKESK), 0xD2, 3, 2, 9, 3), key, false, ""},
	} {
		pt, ok, err := openSealed(c.msg, c.key)
		if ok != c.ok || pt != nil || (c.ok && (err == nil || !errors.Is(err, ErrBadCiphertext) || !bytes.Contains([]byte(err.Error()), []byte(c.reason)))) {
			t.Errorf("%s: %q ok %v err %v, want ok %v and %q", name, pt, ok, err, c.ok, c.reason)
		}
	}
}

// A message from go-crypto's streaming writer (NewWriter: partial lengths)
// still decrypts, through go-crypto's reader.
func TestStreamedMessageStillOpens(t *testing.T) {
	f := newFixture(t)
	enc := mustEncrypter(t, f.rec)
	data := make([]byte, 3*seipdChunk+5)
	rand.Read(data)
	var b bytes.Buffer
	w, err := enc.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	if _, ok, _ := openSealed(b.Bytes(), make([]byte, 32)); ok {
		t.Fatal("the fast path took a streamed message")
	}
	if got, err := decryptWith(epochKeyFor(t, f), b.Bytes()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a streamed message: %v", err)
	}
}
