package keys

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// A manifest is signed by the exporter's admin key: a detached binary
// OpenPGP signature (admin.go) over manifestDomain followed by the canonical
// body. The prefix keeps a manifest signature from being passed off as an
// approval or any other admin signature, and back. To check one with GnuPG:
//
//	{ printf 'custos/manifest/v1\0'; cat manifest.json; } | gpg --verify manifest.sig -

const manifestDomain = "custos/manifest/v1\x00"

// maxManifestSigLen bounds a detached signature; an Ed25519 one is about 120
// bytes.
const maxManifestSigLen = 4096

// ErrManifestSignature is wrapped when a manifest's signature does not
// verify with the given key.
var ErrManifestSignature = errors.New("export manifest signature does not verify")

// ErrExportMismatch is wrapped when an export file is not the one its
// manifest describes.
var ErrExportMismatch = errors.New("export file does not match its manifest")

func manifestSigned(body []byte) []byte {
	return append([]byte(manifestDomain), body...)
}

// SignManifest encodes m canonically and signs it with the exporter's admin
// key. It returns the body to ship (manifest.json) and the detached signature.
func SignManifest(k *AdminKey, m *Manifest) (body, sig []byte, err error) {
	body, err = MarshalManifest(m)
	if err != nil {
		return nil, nil, err
	}
	sig, err = k.Sign(manifestSigned(body), time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("keys: sign manifest: %w", err)
	}
	return body, sig, nil
}

// VerifyManifest checks sig over body with signerPublicKey (binary OpenPGP,
// as ReadPublicKeyFile returns it), then decodes body strictly. It returns
// the signing key's fingerprint (hex) for the caller to compare with the
// admin the policy names as the exporter: a valid signature by someone else
// proves nothing.
func VerifyManifest(body, sig, signerPublicKey []byte) (*Manifest, string, error) {
	if len(body) > MaxManifestLen {
		return nil, "", fmt.Errorf("keys: verify manifest: %d bytes, at most %d: %w", len(body), MaxManifestLen, ErrBadManifest)
	}
	p, err := parseManifestSignature(sig)
	if err != nil {
		return nil, "", fmt.Errorf("keys: verify manifest: %w: %w", err, ErrManifestSignature)
	}
	signed := manifestSigned(body)
	fp, err := VerifyAdminSignature(signerPublicKey, signed, sig)
	if err == nil && !hashTagMatches(p, signed) {
		err = errors.New("hash tag does not match")
	}
	if err != nil {
		return nil, "", fmt.Errorf("keys: verify manifest: %w: %w", err, ErrManifestSignature)
	}
	m, err := ParseManifest(body)
	if err != nil {
		return nil, "", err
	}
	return m, fp, nil
}

// parseManifestSignature accepts exactly what AdminKey.Sign writes and
// nothing else: one v4 EdDSA SHA-256 signature of a binary document, in the
// encoding go-crypto writes, without unhashed subpackets. go-crypto alone
// would skip other packets, try every signature in the stream, and ignore
// the unhashed area; this keeps a signature from being reshaped into other
// bytes that still verify.
func parseManifestSignature(sig []byte) (*packet.Signature, error) {
	if len(sig) == 0 || len(sig) > maxManifestSigLen {
		return nil, fmt.Errorf("%d-byte signature, want 1 to %d", len(sig), maxManifestSigLen)
	}
	r := bytes.NewReader(sig)
	pkt, err := packet.Read(r)
	p, ok := pkt.(*packet.Signature)
	if err != nil || !ok || r.Len() != 0 {
		return nil, errors.New("not exactly one OpenPGP signature")
	}
	if p.Version != 4 || p.SigType != packet.SigTypeBinary || p.PubKeyAlgo != packet.PubKeyAlgoEdDSA || p.Hash != crypto.SHA256 {
		return nil, errors.New("not an admin key's Ed25519 SHA-256 document signature")
	}
	var again bytes.Buffer
	if err := p.Serialize(&again); err != nil || !bytes.Equal(again.Bytes(), sig) || !noUnhashedSubpackets(sig) ||
		!minimalMPI(p.EdDSASigR) || !minimalMPI(p.EdDSASigS) {
		return nil, errors.New("signature not in the form Custos writes")
	}
	return p, nil
}

// noUnhashedSubpackets reads the unhashed area's length in a v4 signature
// packet with a new-format header (as go-crypto writes them).
func noUnhashedSubpackets(sig []byte) bool {
	if len(sig) < 2 || sig[0] != 0xc2 {
		return false
	}
	hdr := 2 // one-octet body length
	switch {
	case sig[1] >= 192 && sig[1] < 224:
		hdr = 3
	case sig[1] == 255:
		hdr = 6
	case sig[1] >= 224:
		return false // partial body lengths
	}
	body := sig[hdr:]
	if len(body) < 6 {
		return false
	}
	n := int(binary.BigEndian.Uint16(body[4:6]))
	return len(body) >= 8+n && body[6+n] == 0 && body[7+n] == 0
}

// minimalMPI reports whether an MPI has no leading zero octet and states
// its exact bit length; go-crypto keeps whatever length it read, so the
// same signature could otherwise be written with other length bits.
func minimalMPI(f interface {
	Bytes() []byte
	BitLength() uint16
}) bool {
	if f == nil {
		return false
	}
	b := f.Bytes()
	return len(b) > 0 && b[0] != 0 && int(f.BitLength()) == 8*(len(b)-1)+bits.Len8(b[0])
}

// hashTagMatches checks the signature's two-octet hash tag, which go-crypto
// does not check for v4 signatures (go-crypto issue 107).
func hashTagMatches(p *packet.Signature, signed []byte) bool {
	h := sha256.New()
	h.Write(signed)
	h.Write(p.HashSuffix)
	return subtle.ConstantTimeCompare(h.Sum(nil)[:2], p.HashTag[:]) == 1
}

// CheckExport reads the export file and checks it is the one m describes:
// its size and SHA-256. It reads at most one byte more than the manifest
// says, so a huge file is refused quickly.
func CheckExport(m *Manifest, exportFile io.Reader) error {
	if m == nil || m.Output.Bytes < 0 || !validSHA256Hex(m.Output.SHA256) {
		return fmt.Errorf("keys: check export: no valid manifest: %w", ErrBadManifest)
	}
	if err := checkFile(m.Output, exportFile, ErrExportMismatch); err != nil {
		return fmt.Errorf("keys: check export %s: %w", m.Output.Name, err)
	}
	return nil
}
