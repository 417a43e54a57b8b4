package policy

import (
	"bytes"
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

// verifySignature checks a detached signature over msg by the key pub, as of
// time at (the command's own time, so that every replica decides alike
// whatever its clock), and returns the fingerprint of the signing key.
func verifySignature(pub, msg, sig []byte, at time.Time) (string, error) {
	if len(sig) == 0 {
		return "", errors.New("no signature")
	}
	e, err := readPublicKey(pub)
	if err != nil {
		return "", err
	}
	cfg := &packet.Config{Time: func() time.Time { return at }}
	_, signer, err := openpgp.VerifyDetachedSignature(openpgp.EntityList{e}, bytes.NewReader(msg), bytes.NewReader(sig), cfg)
	if err != nil {
		return "", fmt.Errorf("bad signature: %w", err)
	}
	return hex.EncodeToString(signer.PrimaryKey.Fingerprint), nil
}

// checkCustodianKey accepts the public half of a custodian key (package
// keys makes them: RFC 9580 v6, an X25519 encryption subkey), which stores
// encrypt epoch-key shares to.
func checkCustodianKey(pub []byte) error {
	e, err := readPublicKey(pub)
	if err != nil {
		return err
	}
	if e.PrimaryKey.Version != 6 {
		return fmt.Errorf("custodian key is OpenPGP v%d, want v6", e.PrimaryKey.Version)
	}
	for _, sk := range e.Subkeys {
		if sk.PublicKey.PubKeyAlgo == packet.PubKeyAlgoX25519 {
			return nil
		}
	}
	return errors.New("custodian key has no X25519 encryption subkey")
}
