package keys

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// Admin keys are OpenPGP keys (RFC 4880 v4, EdDSA over Ed25519) made with
// go-crypto. Version 4 rather than 6 so that the standard tools in Debian
// stable — GnuPG 2.2 and Sequoia's sq 0.27 — can check every signature an
// admin made; neither reads v6 keys yet. The private key file is armored and
// encrypted with the passphrase (iterated-and-salted S2K, AES-256, which
// GnuPG 2.2 also reads), mode 0600.

// AdminKey is an admin's unlocked signing key. Zero it with Close.
type AdminKey struct {
	entity *openpgp.Entity
}

// ErrBadPassphrase is returned when a key does not open with the passphrase.
var ErrBadPassphrase = errors.New("wrong passphrase")

// NewAdminKey makes a key for name.
func NewAdminKey(name string, now time.Time) (*AdminKey, error) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return now }}
	e, err := openpgp.NewEntity(name, "Custos admin", "", cfg)
	if err != nil {
		return nil, fmt.Errorf("keys: admin key: %w", err)
	}
	return &AdminKey{entity: e}, nil
}

// Fingerprint is the hex fingerprint of the primary key.
func (k *AdminKey) Fingerprint() string { return hex.EncodeToString(k.entity.PrimaryKey.Fingerprint) }

// PublicKey returns the binary OpenPGP public key.
func (k *AdminKey) PublicKey() []byte {
	var b bytes.Buffer
	k.entity.Serialize(&b) // writing to a bytes.Buffer cannot fail
	return b.Bytes()
}

// ArmoredPublicKey returns the ASCII-armored public key (what FILE.pub holds).
func (k *AdminKey) ArmoredPublicKey() []byte {
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	k.entity.Serialize(w)
	w.Close()
	return b.Bytes()
}

// Sign makes a detached binary signature over msg, dated at.
func (k *AdminKey) Sign(msg []byte, at time.Time) ([]byte, error) {
	if k == nil || k.entity == nil || k.entity.PrivateKey == nil {
		return nil, errors.New("keys: sign: the admin key is closed")
	}
	var sig bytes.Buffer
	cfg := &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return at }}
	if err := openpgp.DetachSign(&sig, []*openpgp.Entity{k.entity}, bytes.NewReader(msg), cfg); err != nil {
		return nil, fmt.Errorf("keys: sign: %w", err)
	}
	return sig.Bytes(), nil
}

// Close wipes the private key material.
func (k *AdminKey) Close() {
	if k.entity == nil {
		return
	}
	if k.entity.PrivateKey != nil {
		if p, ok := k.entity.PrivateKey.PrivateKey.(*eddsa.PrivateKey); ok {
			clear(p.D)
		}
		k.entity.PrivateKey = nil
	}
	for i := range k.entity.Subkeys {
		sk := &k.entity.Subkeys[i]
		if sk.PrivateKey != nil {
			if p, ok := sk.PrivateKey.PrivateKey.(*ecdh.PrivateKey); ok {
				clear(p.D)
			}
			sk.PrivateKey = nil
		}
	}
	k.entity = nil
}

// WriteAdminKey writes the encrypted private key to path (0600, refusing to
// replace an existing file) and the armored public key to path+".pub".
func WriteAdminKey(path string, k *AdminKey, passphrase []byte) error {
	if len(passphrase) < 8 {
		return errors.New("keys: passphrase shorter than 8 characters")
	}
	enc := &packet.Config{DefaultCipher: packet.CipherAES256,
		S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 65011712}}
	// Encrypt a copy so that k stays usable.
	var raw bytes.Buffer
	if err := k.entity.SerializePrivate(&raw, nil); err != nil {
		return fmt.Errorf("keys: admin key: %w", err)
	}
	defer clear(raw.Bytes())
	el, err := openpgp.ReadKeyRing(bytes.NewReader(raw.Bytes()))
	if err != nil || len(el) != 1 {
		return fmt.Errorf("keys: admin key: re-read: %v", err)
	}
	if err := el[0].EncryptPrivateKeys(passphrase, enc); err != nil {
		return fmt.Errorf("keys: encrypt admin key: %w", err)
	}
	var armored bytes.Buffer
	w, err := armor.Encode(&armored, openpgp.PrivateKeyType, nil)
	if err != nil {
		return err
	}
	if err := el[0].SerializePrivateWithoutSigning(w, nil); err != nil {
		return fmt.Errorf("keys: admin key: %w", err)
	}
	w.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keys: admin key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keys: admin key: %w (refusing to overwrite a key)", err)
	}
	if _, err := f.Write(armored.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("keys: admin key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: admin key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: admin key: %w", err)
	}
	if err := os.WriteFile(path+".pub", k.ArmoredPublicKey(), 0o644); err != nil {
		return fmt.Errorf("keys: admin public key: %w", err)
	}
	return nil
}

// LoadAdminKey reads and unlocks an admin key file, with the checks every
// secret file gets (no symlink, a regular file, owned by this user, mode
// 0600). A key that is not passphrase-protected is refused: whoever copies
// the file would hold the admin's signature.
func LoadAdminKey(path string, passphrase []byte) (*AdminKey, error) {
	b, err := readSecretFile(path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("keys: admin key: %w", err)
	}
	defer clear(b)
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil || len(el) != 1 || el[0].PrivateKey == nil {
		return nil, fmt.Errorf("keys: %s is not an armored OpenPGP private key (made by custos admin keygen)", path)
	}
	e := el[0]
	if !e.PrivateKey.Encrypted {
		zeroAdminEntity(e)
		return nil, fmt.Errorf("keys: admin key %s is not passphrase-protected: %w; make a new one with custos admin keygen", path, ErrKeyUnprotected)
	}
	if err := e.DecryptPrivateKeys(passphrase); err != nil {
		return nil, fmt.Errorf("keys: admin key %s: %w", path, ErrBadPassphrase)
	}
	return &AdminKey{entity: e}, nil
}

// ErrKeyUnprotected is wrapped when a private key file is not encrypted.
var ErrKeyUnprotected = errors.New("the private key is stored without a passphrase")

// zeroAdminEntity drops a refused key's private parts.
func zeroAdminEntity(e *openpgp.Entity) { (&AdminKey{entity: e}).Close() }

// ReadPublicKeyFile reads an armored (or binary) OpenPGP public key file and
// returns it in binary form with its fingerprint.
func ReadPublicKeyFile(path string) (pub []byte, fingerprint string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("keys: public key: %w", err)
	}
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil || len(el) != 1 {
		return nil, "", fmt.Errorf("keys: %s is not one OpenPGP public key", path)
	}
	if el[0].PrivateKey != nil {
		return nil, "", fmt.Errorf("keys: %s holds a PRIVATE key; give the .pub file", path)
	}
	var out bytes.Buffer
	if err := el[0].Serialize(&out); err != nil {
		return nil, "", fmt.Errorf("keys: public key: %w", err)
	}
	return out.Bytes(), hex.EncodeToString(el[0].PrimaryKey.Fingerprint), nil
}

// VerifyAdminSignature checks a detached signature over msg by the binary
// OpenPGP public key pub and returns the signer's fingerprint.
func VerifyAdminSignature(pub, msg, sig []byte) (string, error) {
	el, err := openpgp.ReadKeyRing(bytes.NewReader(pub))
	if err != nil || len(el) != 1 {
		return "", errors.New("keys: not one OpenPGP public key")
	}
	_, signer, err := openpgp.VerifyDetachedSignature(el, bytes.NewReader(msg), bytes.NewReader(sig), nil)
	if err != nil {
		return "", fmt.Errorf("keys: bad signature: %w", err)
	}
	return hex.EncodeToString(signer.PrimaryKey.Fingerprint), nil
}
