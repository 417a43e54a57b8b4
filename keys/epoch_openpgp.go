package keys

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
)

// Epoch keys and custodian keys share one OpenPGP shape (RFC 9580 v6): an
// Ed25519 primary key that only makes the self-signatures, and one X25519
// encryption subkey. The direct-key self-signature advertises SEIPDv2 and
// puts (AES-256, GCM) first among the AEAD cipher suites, so any RFC 9580
// implementation that encrypts to the key picks GCM; go-crypto's default
// (OCB) is more than ten times slower here. Custos itself does not rely on
// the preference: it writes GCM explicitly and refuses anything else.

// KeyFingerprint is a v6 OpenPGP fingerprint (SHA-256, 32 bytes). It is
// public; its text form is lower-case hex.
type KeyFingerprint [32]byte

func (f KeyFingerprint) String() string { return hex.EncodeToString(f[:]) }

// IsZero reports whether f is unset.
func (f KeyFingerprint) IsZero() bool { return f == KeyFingerprint{} }

// maxPublicKeyLen bounds a v6 public key read from untrusted bytes; ours are
// about 400 bytes (550 with a user ID).
const maxPublicKeyLen = 4096

// ErrBadPublicKey is wrapped when a public key is not the v6 Ed25519 +
// X25519 shape Custos makes.
var ErrBadPublicKey = errors.New("not a Custos v6 OpenPGP key")

// gcmSuite is the only AEAD suite Custos writes or reads.
var gcmSuite = packet.CipherSuite{Cipher: packet.CipherAES256, Mode: packet.AEADModeGCM}

func pgpConfig(now time.Time) *packet.Config {
	return &packet.Config{
		V6Keys:        true,
		Algorithm:     packet.PubKeyAlgoEd25519, // X25519 encryption subkey follows
		DefaultHash:   crypto.SHA256,
		DefaultCipher: packet.CipherAES256,
		AEADConfig:    &packet.AEADConfig{DefaultMode: packet.AEADModeGCM},
		Time:          func() time.Time { return now },
	}
}

// newV6Entity makes a fresh key; uid may be empty (v6 keys need none).
func newV6Entity(uid string, now time.Time) (*openpgp.Entity, error) {
	if uid == "" {
		return openpgp.NewEntityWithoutId(pgpConfig(now))
	}
	return openpgp.NewEntity(uid, "", "", pgpConfig(now))
}

func fingerprintOf(pk *packet.PublicKey) KeyFingerprint {
	var f KeyFingerprint
	copy(f[:], pk.Fingerprint)
	return f
}

// serializePublic returns the binary transferable public key.
func serializePublic(e *openpgp.Entity) ([]byte, error) {
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parseV6Public reads one binary v6 public key strictly: the Custos shape,
// valid self-signatures, no private parts, and canonical bytes (serializing
// it again gives exactly b, so nothing was skipped or tolerated).
func parseV6Public(b []byte, maxIdentities int) (*openpgp.Entity, *packet.PublicKey, error) {
	if len(b) == 0 || len(b) > maxPublicKeyLen {
		return nil, nil, fmt.Errorf("%d bytes: %w", len(b), ErrBadPublicKey)
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil || len(el) != 1 {
		return nil, nil, fmt.Errorf("not one OpenPGP key: %w", ErrBadPublicKey)
	}
	e := el[0]
	if e.PrivateKey != nil {
		return nil, nil, fmt.Errorf("holds a PRIVATE key where a public key belongs: %w", ErrBadPublicKey)
	}
	enc, err := checkV6Shape(e, maxIdentities)
	if err != nil {
		return nil, nil, err
	}
	again, err := serializePublic(e)
	if err != nil || !bytes.Equal(again, b) {
		return nil, nil, fmt.Errorf("non-canonical encoding: %w", ErrBadPublicKey)
	}
	return e, enc, nil
}

// checkV6Shape checks the key's structure and self-signatures and returns
// the encryption subkey. Validity is checked without a date: Custos keys
// never expire, and a store's clock must not decide whether footage opens.
func checkV6Shape(e *openpgp.Entity, maxIdentities int) (*packet.PublicKey, error) {
	p := e.PrimaryKey
	switch {
	case p.Version != 6 || p.PubKeyAlgo != packet.PubKeyAlgoEd25519:
		return nil, fmt.Errorf("primary key is not v6 Ed25519: %w", ErrBadPublicKey)
	case len(e.Subkeys) != 1:
		return nil, fmt.Errorf("%d subkeys, want one: %w", len(e.Subkeys), ErrBadPublicKey)
	case len(e.Identities) > maxIdentities:
		return nil, fmt.Errorf("%d user IDs: %w", len(e.Identities), ErrBadPublicKey)
	case len(e.Revocations) != 0 || len(e.Subkeys[0].Revocations) != 0:
		return nil, fmt.Errorf("revoked: %w", ErrBadPublicKey)
	}
	k, err := e.EncryptionKeyWithError(time.Time{}, nil)
	if err != nil {
		return nil, fmt.Errorf("no valid encryption subkey (%v): %w", err, ErrBadPublicKey)
	}
	sub := k.PublicKey
	if sub != e.Subkeys[0].PublicKey || sub.Version != 6 || sub.PubKeyAlgo != packet.PubKeyAlgoX25519 {
		return nil, fmt.Errorf("encryption subkey is not v6 X25519: %w", ErrBadPublicKey)
	}
	sig := k.PrimarySelfSignature
	if !sig.SEIPDv2 || len(sig.PreferredCipherSuites) == 0 ||
		sig.PreferredCipherSuites[0] != [2]uint8{uint8(gcmSuite.Cipher), uint8(gcmSuite.Mode)} {
		return nil, fmt.Errorf("does not prefer SEIPDv2 with AES-256-GCM: %w", ErrBadPublicKey)
	}
	return sub, nil
}

// x25519Secret returns the encryption subkey's secret scalar (aliasing the
// entity's own buffer), or nil.
func x25519Secret(e *openpgp.Entity) *x25519.PrivateKey {
	if len(e.Subkeys) != 1 || e.Subkeys[0].PrivateKey == nil {
		return nil
	}
	k, _ := e.Subkeys[0].PrivateKey.PrivateKey.(*x25519.PrivateKey)
	return k
}

// zeroEntity wipes every private byte go-crypto holds for e (the Ed25519
// seed‖public and the X25519 scalar, both single heap buffers that the
// generators and parsers hand over without copying) and drops the private
// packets.
func zeroEntity(e *openpgp.Entity) {
	if e == nil {
		return
	}
	if e.PrivateKey != nil {
		if k, ok := e.PrivateKey.PrivateKey.(*ed25519.PrivateKey); ok {
			clear(k.Key)
		}
		e.PrivateKey.PrivateKey = nil
		e.PrivateKey = nil
	}
	for i := range e.Subkeys {
		sk := &e.Subkeys[i]
		if sk.PrivateKey == nil {
			continue
		}
		if k, ok := sk.PrivateKey.PrivateKey.(*x25519.PrivateKey); ok {
			clear(k.Secret)
		}
		sk.PrivateKey.PrivateKey = nil
		sk.PrivateKey = nil
	}
}
