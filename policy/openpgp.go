package policy

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// Users sign with OpenPGP keys (RFC 9580; Custos makes v6 Ed25519 keys, see
// package keys), so any standard OpenPGP tool can check what an admin signed.

// maxPublicKey bounds a user's public key in the policy.
const maxPublicKey = 16 << 10

func readPublicKey(pub []byte) (*openpgp.Entity, error) {
	if len(pub) == 0 || len(pub) > maxPublicKey {
		return nil, fmt.Errorf("public key of %d bytes (want 1..%d)", len(pub), maxPublicKey)
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(pub))
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP public key: %w", err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("want exactly one OpenPGP key, got %d", len(el))
	}
	if el[0].PrivateKey != nil {
		return nil, errors.New("this is a PRIVATE key; the policy takes only public keys")
	}
	return el[0], nil
}

// publicKeyFingerprint returns the hex fingerprint of a binary public key.
func publicKeyFingerprint(pub []byte) (string, error) {
	e, err := readPublicKey(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(e.PrimaryKey.Fingerprint), nil
}

// SignatureSkew is how far a signature's creation time may be from the time
// it signs for (a command's time): a signature made for one moment is not
// accepted as another's, and a key is judged valid at the signed moment.
const SignatureSkew = 2 * time.Minute

// maxSignature bounds a detached signature: one Ed25519 packet is ~120 bytes.
const maxSignature = 4 << 10

// VerifySignature checks a detached signature over msg by the key pub, made
// for time at (a command's own time, so that every replica decides alike
// whatever its clock), and returns the fingerprint of the signing key.
//
// It accepts exactly one v4 binary-document signature packet with every
// subpacket hashed, created within SignatureSkew of at, by a key valid at
// at. go-crypto alone would skip other packets, try every signature in the
// stream, accept text-mode signatures and ignore the unhashed area, so one
// signature could be reshaped into other bytes that still verify.
func VerifySignature(pub, msg, sig []byte, at time.Time) (string, error) {
	if len(sig) == 0 {
		return "", errors.New("no signature")
	}
	p, err := parseOneSignature(sig)
	if err != nil {
		return "", err
	}
	if d := p.CreationTime.Sub(at); d > SignatureSkew || d < -SignatureSkew {
		return "", fmt.Errorf("signature made at %s, not at the signed time %s (allowed skew %v)",
			p.CreationTime.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), SignatureSkew)
	}
	e, err := verifiedKeys.entity(pub) // readPublicKey, cached (keycache.go)
	if err != nil {
		return "", err
	}
	// go-crypto judges the key and the signature at the signature's own
	// time, which is within SignatureSkew of at.
	created := p.CreationTime
	cfg := &packet.Config{Time: func() time.Time { return created }}
	_, signer, err := openpgp.VerifyDetachedSignature(openpgp.EntityList{e}, bytes.NewReader(msg), bytes.NewReader(sig), cfg)
	if err != nil {
		return "", fmt.Errorf("bad signature: %w", err)
	}
	if !hashTagMatches(p, msg) {
		return "", errors.New("bad signature: hash tag does not match")
	}
	return hex.EncodeToString(signer.PrimaryKey.Fingerprint), nil
}

// parseOneSignature accepts one v4 binary signature packet, written in the
// encoding it was read from (no trailing data, no unhashed subpackets).
func parseOneSignature(sig []byte) (*packet.Signature, error) {
	if len(sig) > maxSignature {
		return nil, fmt.Errorf("%d-byte signature, at most %d", len(sig), maxSignature)
	}
	r := bytes.NewReader(sig)
	pkt, err := packet.Read(r)
	p, ok := pkt.(*packet.Signature)
	if err != nil || !ok || r.Len() != 0 {
		return nil, errors.New("not exactly one OpenPGP signature packet")
	}
	if p.Version != 4 || p.SigType != packet.SigTypeBinary {
		return nil, fmt.Errorf("want a v4 signature of a binary document, got v%d type %#x", p.Version, p.SigType)
	}
	if p.Hash != crypto.SHA256 && p.Hash != crypto.SHA384 && p.Hash != crypto.SHA512 {
		return nil, fmt.Errorf("signature hash %v: want SHA-256, SHA-384 or SHA-512", p.Hash)
	}
	if !noUnhashedSubpackets(sig) {
		return nil, errors.New("signature carries unhashed subpackets (or an old-format header)")
	}
	return p, nil
}

// noUnhashedSubpackets reads the unhashed area's length of a v4 signature
// packet with a new-format header (what go-crypto and GnuPG write). keys
// has the same check for manifests: keys and policy import nothing of the
// project, so each keeps its copy of these few lines.
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

// hashTagMatches checks the signature's two-octet hash tag, which go-crypto
// does not check for v4 signatures.
func hashTagMatches(p *packet.Signature, signed []byte) bool {
	h := p.Hash.New()
	h.Write(signed)
	h.Write(p.HashSuffix)
	return subtle.ConstantTimeCompare(h.Sum(nil)[:2], p.HashTag[:]) == 1
}

// checkCustodianKey accepts the public half of a custodian key exactly as
// the stores will use it (package keys, NewCustodian): RFC 9580 v6 with an
// Ed25519 primary key, at most one user ID, one X25519 encryption subkey,
// nothing revoked, a self-signature that prefers SEIPDv2 with AES-256-GCM,
// in its canonical encoding. A key the policy accepted but the stores
// refused would stop recording on every store, so the rules are the same
// here, where the command can still be refused. (policy imports nothing of
// the project, so it states them again; a test holds the two together.)
func checkCustodianKey(pub []byte) error {
	e, err := readPublicKey(pub)
	if err != nil {
		return err
	}
	p := e.PrimaryKey
	switch {
	case p.Version != 6 || p.PubKeyAlgo != packet.PubKeyAlgoEd25519:
		return fmt.Errorf("custodian key is OpenPGP v%d, want a v6 Ed25519 primary key", p.Version)
	case len(e.Subkeys) != 1:
		return fmt.Errorf("custodian key has %d subkeys, want one X25519 encryption subkey", len(e.Subkeys))
	case len(e.Identities) > 1:
		return fmt.Errorf("custodian key has %d user IDs, want at most one", len(e.Identities))
	case len(e.Revocations) != 0 || len(e.Subkeys[0].Revocations) != 0:
		return errors.New("custodian key is revoked")
	}
	k, err := e.EncryptionKeyWithError(time.Time{}, nil)
	if err != nil {
		return fmt.Errorf("custodian key has no valid encryption subkey: %v", err)
	}
	if k.PublicKey != e.Subkeys[0].PublicKey || k.PublicKey.Version != 6 || k.PublicKey.PubKeyAlgo != packet.PubKeyAlgoX25519 {
		return errors.New("custodian key has no X25519 encryption subkey")
	}
	sig := k.PrimarySelfSignature
	if !sig.SEIPDv2 || len(sig.PreferredCipherSuites) == 0 ||
		sig.PreferredCipherSuites[0] != [2]uint8{uint8(packet.CipherAES256), uint8(packet.AEADModeGCM)} {
		return errors.New("custodian key does not prefer SEIPDv2 with AES-256-GCM")
	}
	var again bytes.Buffer
	if err := e.Serialize(&again); err != nil || !bytes.Equal(again.Bytes(), pub) {
		return errors.New("custodian key is not in its canonical encoding")
	}
	return nil
}
