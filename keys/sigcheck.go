package keys

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// ErrSignatureForm is wrapped when a signature is not in the one form an
// admin key writes (see VerifyAdminSignatureStrict).
var ErrSignatureForm = errors.New("signature not in the form an admin key writes")

// ErrSignatureInFuture is wrapped when a signature is dated later than the
// checker's clock allows.
var ErrSignatureInFuture = errors.New("signature dated in the future")

// VerifyAdminSignatureStrict checks a detached signature over msg by the
// binary OpenPGP public key pub, accepting exactly what AdminKey.Sign
// writes: one signature packet and nothing after it, a v4 EdDSA SHA-256
// signature of a binary document (not text mode, whose line-ending
// canonicalization lets other bytes verify), every subpacket in the hashed
// area (the unhashed one is empty), and a matching hash tag. VerifyAdminSignature
// alone follows go-crypto, which skips extra packets, tries every signature
// in the stream and ignores the unhashed area. The signature's creation time
// must not lie after now+skew: a signature dated in the future was made by
// a wrong clock or to outlive a revocation. It returns the signer's
// fingerprint and the signature's creation time.
func VerifyAdminSignatureStrict(pub, msg, sig []byte, now time.Time, skew time.Duration) (string, time.Time, error) {
	p, err := parseManifestSignature(sig)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("keys: %w: %w", ErrSignatureForm, err)
	}
	if p.CreationTime.After(now.Add(skew)) {
		return "", time.Time{}, fmt.Errorf("keys: %w: made at %s, later than now (%s) by more than %v", ErrSignatureInFuture,
			p.CreationTime.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(pub))
	if err != nil || len(el) != 1 {
		return "", time.Time{}, errors.New("keys: not one OpenPGP public key")
	}
	// go-crypto refuses a signature dated even a second after its clock;
	// judged at the signature's own time when that is within the skew.
	at := now
	if p.CreationTime.After(at) {
		at = p.CreationTime
	}
	_, signer, err := openpgp.VerifyDetachedSignature(el, bytes.NewReader(msg), bytes.NewReader(sig), &packet.Config{Time: func() time.Time { return at }})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("keys: bad signature: %w", err)
	}
	if !hashTagMatches(p, msg) {
		return "", time.Time{}, errors.New("keys: bad signature: hash tag does not match")
	}
	return hex.EncodeToString(signer.PrimaryKey.Fingerprint), p.CreationTime, nil
}
