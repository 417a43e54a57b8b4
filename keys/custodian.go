package keys

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
)

// Custodians hold the shares of every epoch key: the two datacenters (dc-a,
// dc-b) and the controller's offline recovery key, which stands in for a
// lost datacenter. Each is a v6 OpenPGP key of the same shape as an epoch
// key (Ed25519 primary, X25519 encryption subkey, GCM preferred) whose one
// user ID is the custodian's name.

// Custodian is a custodian's public key: what a store encrypts shares to.
// The zero value is unusable (NewEpochKey refuses it).
type Custodian struct {
	name string
	pub  []byte
	fp   KeyFingerprint
	enc  *packet.PublicKey
}

// NewCustodian checks and wraps a custodian's public key (binary or
// armored v6 key, as CustodianKey.PublicKey writes it).
func NewCustodian(name string, publicKey []byte) (Custodian, error) {
	if err := validCustodianName(name); err != nil {
		return Custodian{}, fmt.Errorf("keys: custodian: %w", err)
	}
	bin, err := dearmorPublic(publicKey)
	if err != nil {
		return Custodian{}, fmt.Errorf("keys: custodian %s: %w", name, err)
	}
	fp, enc, err := parsedKeys.parse(bin)
	if err != nil {
		return Custodian{}, fmt.Errorf("keys: custodian %s: %w", name, err)
	}
	return Custodian{name: name, pub: bin, fp: fp, enc: enc}, nil
}

// parsedKeys keeps what parseV6Public made of a key's exact bytes (by
// their SHA-256): a recording store builds the custodians anew at every
// policy change, and parsing and checking a key's self-signatures cost
// more than the rest. The check is the same for the same bytes at any
// time (no date: custodian keys never expire), so a cached answer is the
// one a fresh parse gives. Only keys that passed are kept; the encryption
// key is only read, as every copy of a Custodian already shares it.
var parsedKeys parsedCustodians

// maxParsedCustodians bounds the cache: a policy names a few datacenters'
// keys and one recovery key.
const maxParsedCustodians = 64

type parsedCustodians struct {
	mu   sync.Mutex
	keys map[[sha256.Size]byte]parsedCustodian // guarded by mu
}

type parsedCustodian struct {
	fp  KeyFingerprint
	enc *packet.PublicKey
}

func (c *parsedCustodians) parse(bin []byte) (KeyFingerprint, *packet.PublicKey, error) {
	sum := sha256.Sum256(bin)
	c.mu.Lock()
	p, ok := c.keys[sum]
	c.mu.Unlock()
	if ok {
		return p.fp, p.enc, nil
	}
	e, enc, err := parseV6Public(bin, 1)
	if err != nil {
		return KeyFingerprint{}, nil, err
	}
	p = parsedCustodian{fp: fingerprintOf(e.PrimaryKey), enc: enc}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || len(c.keys) >= maxParsedCustodians {
		c.keys = make(map[[sha256.Size]byte]parsedCustodian) // start over: keys change rarely
	}
	c.keys[sum] = p
	return p.fp, p.enc, nil
}

// dearmorPublic returns b's binary form if it is armored, else b.
func dearmorPublic(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		return b, nil
	}
	blk, err := armor.Decode(bytes.NewReader(b))
	if err != nil || blk.Type != openpgp.PublicKeyType {
		return nil, fmt.Errorf("not an armored public key block: %w", ErrBadPublicKey)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(blk.Body); err != nil || out.Len() > maxPublicKeyLen {
		return nil, fmt.Errorf("unreadable armor: %w", ErrBadPublicKey)
	}
	return out.Bytes(), nil
}

// Name is the custodian's name.
func (c Custodian) Name() string { return c.name }

// Fingerprint is the custodian key's v6 fingerprint.
func (c Custodian) Fingerprint() KeyFingerprint { return c.fp }

// PublicKey returns the binary v6 public key.
func (c Custodian) PublicKey() []byte { return bytes.Clone(c.pub) }

// ArmoredPublicKey returns the ASCII-armored public key.
func (c Custodian) ArmoredPublicKey() []byte { return armorBytes(openpgp.PublicKeyType, c.pub) }

func (c Custodian) String() string { return "custodian:" + c.name + ":" + c.fp.String() }

// CustodianKey is a custodian's private key. On a datacenter it lives in an
// unprotected 0600 file beside node.key (WriteCustodianKey): the datacenter
// must open shares unattended, and one datacenter's shares alone open
// nothing. The recovery key is made on an admin's machine and kept offline
// in a passphrase-protected file (WriteRecoveryKey). It never prints; Zero
// wipes it.
type CustodianKey struct {
	_      [0]func()
	entity *openpgp.Entity
	pub    Custodian
}

// NewCustodianKey makes a custodian key pair named name.
func NewCustodianKey(name string) (*CustodianKey, error) {
	if err := validCustodianName(name); err != nil {
		return nil, fmt.Errorf("keys: new custodian key: %w", err)
	}
	e, err := newV6Entity(name, time.Now())
	if err != nil {
		return nil, fmt.Errorf("keys: new custodian key: %w", err)
	}
	k, err := custodianKeyFrom(e)
	if err != nil {
		zeroEntity(e)
		return nil, fmt.Errorf("keys: new custodian key: %w", err)
	}
	return k, nil
}

// custodianKeyFrom checks a private entity's shape and wraps it.
func custodianKeyFrom(e *openpgp.Entity) (*CustodianKey, error) {
	if _, err := checkV6Shape(e, 1); err != nil {
		return nil, err
	}
	if len(e.Identities) != 1 {
		return nil, fmt.Errorf("a custodian key has exactly one user ID (its name): %w", ErrBadPublicKey)
	}
	sk := x25519Secret(e)
	if e.PrivateKey == nil || e.PrivateKey.Encrypted || e.Subkeys[0].PrivateKey.Encrypted ||
		sk == nil || len(sk.Secret) != x25519.KeySize || x25519.Validate(sk) != nil {
		return nil, errors.New("not an unlocked custodian private key")
	}
	var name string
	for n := range e.Identities {
		name = n
	}
	pub, err := serializePublic(e)
	if err != nil {
		return nil, err
	}
	c, err := NewCustodian(name, pub)
	if err != nil {
		return nil, err
	}
	return &CustodianKey{entity: e, pub: c}, nil
}

// Custodian returns the public half, to give to stores.
func (k *CustodianKey) Custodian() Custodian { return k.pub }

// Name is the custodian's name.
func (k *CustodianKey) Name() string { return k.pub.name }

// Fingerprint is the key's v6 fingerprint.
func (k *CustodianKey) Fingerprint() KeyFingerprint { return k.pub.fp }

// Zero wipes the private key; the key is unusable afterwards.
func (k *CustodianKey) Zero() {
	if k != nil {
		zeroEntity(k.entity)
	}
}

// String never reveals the key.
func (k CustodianKey) String() string { return "custodiankey:" + k.pub.name + ":[redacted]" }

// GoString never reveals the key, also under %#v.
func (k CustodianKey) GoString() string { return k.String() }

// Format never reveals the key under any verb.
func (k CustodianKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// OpenShare decrypts this custodian's share of rec's key. It refuses a
// record that holds no share for this key's fingerprint, a share that was
// sealed for another epoch key, and a share whose x is not its position in
// the record. The caller wipes the share (Share.Zero) after use.
func (k *CustodianKey) OpenShare(rec *EpochRecord) (Share, error) {
	if _, _, err := rec.check(); err != nil {
		return Share{}, fmt.Errorf("keys: open share: %w", err)
	}
	if k == nil || k.entity == nil || k.entity.PrivateKey == nil {
		return Share{}, errors.New("keys: open share: the custodian key is wiped")
	}
	i := rec.shareIndex(k.pub.fp)
	if i < 0 {
		return Share{}, fmt.Errorf("keys: open share of epoch %s for %s: %w", rec.Fingerprint, k.pub.name, ErrNotCustodian)
	}
	env, err := open(k.entity.Subkeys[0].PrivateKey, rec.Shares[i].Encrypted)
	if err != nil {
		return Share{}, fmt.Errorf("keys: open share of epoch %s for %s: %w", rec.Fingerprint, k.pub.name, err)
	}
	defer clear(env)
	s, err := parseShareEnvelope(env, rec.binding())
	if err == nil && int(s.X) != i+1 {
		s.Zero()
		err = fmt.Errorf("share for position %d carries x = %d: %w", i+1, s.X, ErrBadShare)
	}
	if err != nil {
		return Share{}, fmt.Errorf("keys: open share of epoch %s for %s: %w", rec.Fingerprint, k.pub.name, err)
	}
	return s, nil
}

func (r *EpochRecord) shareIndex(fp KeyFingerprint) int {
	for i, s := range r.Shares {
		if s.Fingerprint == fp {
			return i
		}
	}
	return -1
}

// armorBytes armors b as one block of type typ.
func armorBytes(typ string, b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b)*4/3 + 256) // one allocation: no stale copies of secrets
	w, _ := armor.Encode(&out, typ, nil)
	w.Write(b)
	w.Close()
	return out.Bytes()
}
