package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// A custodian key file holds the armored, unprotected private key (the
// same text ArmoredRecoveryKey prints), mode 0600, written and read with the
// same care as node.key: temp file, fsync, hard link (never replacing an
// existing key); read without following symlinks, refusing a file that is
// not regular, not ours, or open to group or others.
//
// keyfile.go's writer is specific to node keys, so the two helpers below
// repeat its steps for arbitrary bytes; node keys could move onto them.

const maxCustodianKeyFile = 64 << 10

// ArmoredRecoveryKey returns the private key as an unprotected armored
// OpenPGP block: what a datacenter's custodian.key holds. The controller's
// recovery key is never kept in this form (see WriteRecoveryKey). The
// caller wipes the result after use.
func (k *CustodianKey) ArmoredRecoveryKey() ([]byte, error) {
	if k == nil || k.entity == nil || k.entity.PrivateKey == nil {
		return nil, errors.New("keys: export custodian key: the key is wiped")
	}
	var raw bytes.Buffer
	raw.Grow(4096) // one allocation: no stale copies of the key
	if err := k.entity.SerializePrivateWithoutSigning(&raw, nil); err != nil {
		return nil, fmt.Errorf("keys: export custodian key: %w", err)
	}
	defer clear(raw.Bytes())
	return armorBytes(openpgp.PrivateKeyType, raw.Bytes()), nil
}

// ParseRecoveryKey reads back ArmoredRecoveryKey's block (an unprotected
// custodian key). Errors never echo the input. go-crypto's armor and packet parsers keep transient copies of
// the key that this package cannot wipe.
func ParseRecoveryKey(armored []byte) (*CustodianKey, error) {
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(el) != 1 {
		return nil, errors.New("keys: recovery key: not one armored OpenPGP private key")
	}
	k, err := custodianKeyFrom(el[0])
	if err != nil {
		zeroEntity(el[0])
		return nil, fmt.Errorf("keys: recovery key: %w", err)
	}
	return k, nil
}

// WriteCustodianKey writes k's private key to path (0600, refusing to
// replace an existing file) and its armored public key to path+".pub".
func WriteCustodianKey(path string, k *CustodianKey) error {
	text, err := k.ArmoredRecoveryKey()
	if err != nil {
		return err
	}
	defer clear(text)
	if err := writeSecretBytes(path, text); err != nil {
		return fmt.Errorf("keys: write custodian key: %w", err)
	}
	if err := os.WriteFile(path+".pub", k.pub.ArmoredPublicKey(), 0o644); err != nil {
		return fmt.Errorf("keys: write custodian public key: %w", err)
	}
	return nil
}

// LoadCustodianKey reads a custodian key file written by WriteCustodianKey.
func LoadCustodianKey(path string) (*CustodianKey, error) {
	b, err := readSecretFile(path, maxCustodianKeyFile)
	if err != nil {
		return nil, fmt.Errorf("keys: custodian key: %w", err)
	}
	defer clear(b)
	k, err := ParseRecoveryKey(b)
	if err != nil {
		return nil, fmt.Errorf("keys: custodian key %s: %w", path, err)
	}
	return k, nil
}

// writeSecretBytes writes b to a new file at path, mode 0600, atomically:
// a crash leaves no half-written key, and an existing file is never replaced.
func writeSecretBytes(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Link, not rename: never replace a key that appeared meanwhile.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("%w (refusing to replace a key)", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// readSecretFile reads a key file without following symlinks and checks the
// open file itself (no check-then-open race): regular, owned by this
// process's user, no group or other permissions. The caller wipes the result.
func readSecretFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink; a key file must be a regular file", path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %#o: %w; run: chmod 600 %s", path, perm, ErrKeyFilePermissions, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%s belongs to uid %d, not to this process (uid %d): %w", path, st.Uid, os.Geteuid(), ErrKeyFilePermissions)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than a key file (%d bytes)", path, fi.Size())
	}
	// One allocation of the stated size, one byte more to notice growth:
	// no regrown buffers leave stale copies of the key behind.
	b := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, b)
	if err == nil {
		err = fmt.Errorf("%s changed while being read", path)
	} else if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err != nil {
		clear(b)
		return nil, err
	}
	return b[:n], nil
}

// The controller's recovery key is made on an admin's machine (custos
// recovery keygen), never on a node: a datacenter that also saw it would
// hold two shares of every epoch key. Its file holds the armored private
// key encrypted with a passphrase, the way RFC 9580 protects a v6 key:
// Argon2id (64 MiB, 3 passes, 4 lanes: RFC 9106's second recommended
// setting) and AES-256 in GCM mode, so a copied file opens only with the
// passphrase, and a wrong one fails its authentication tag instead of
// yielding a wrong key. The public half goes to FILE.pub, armored, for
// custos init.

// ErrRecoveryKeyUnprotected is wrapped when a recovery key file holds an
// unencrypted private key.
var ErrRecoveryKeyUnprotected = errors.New("the recovery key file is not passphrase-protected")

// MinRecoveryPassphrase is the shortest passphrase WriteRecoveryKey takes.
const MinRecoveryPassphrase = 8

// recoveryKeyEncryption is how WriteRecoveryKey protects the key.
func recoveryKeyEncryption() *packet.Config {
	return &packet.Config{
		DefaultCipher: packet.CipherAES256,
		AEADConfig:    &packet.AEADConfig{DefaultMode: packet.AEADModeGCM},
		S2KConfig:     &s2k.Config{S2KMode: s2k.Argon2S2K, Argon2Config: &s2k.Argon2Config{NumberOfPasses: 3, DegreeOfParallelism: 4, Memory: 64 << 10}},
	}
}

// WriteRecoveryKey writes k's private key to path encrypted with the
// passphrase (0600, refusing to replace an existing file) and its armored
// public key to path+".pub" (0644, also never replaced).
func WriteRecoveryKey(path string, k *CustodianKey, passphrase []byte) error {
	if len(passphrase) < MinRecoveryPassphrase {
		return fmt.Errorf("keys: recovery key: passphrase shorter than %d characters", MinRecoveryPassphrase)
	}
	if k == nil || k.entity == nil || k.entity.PrivateKey == nil {
		return errors.New("keys: recovery key: the key is wiped")
	}
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keys: recovery key: %s exists; refusing to overwrite a key", p)
		}
	}
	// Encrypt a copy so that k stays usable.
	var raw bytes.Buffer
	raw.Grow(4096) // one allocation: no stale copies of the key
	if err := k.entity.SerializePrivateWithoutSigning(&raw, nil); err != nil {
		return fmt.Errorf("keys: recovery key: %w", err)
	}
	defer clear(raw.Bytes())
	el, err := openpgp.ReadKeyRing(bytes.NewReader(raw.Bytes()))
	if err != nil || len(el) != 1 {
		return fmt.Errorf("keys: recovery key: re-read: %v", err)
	}
	defer zeroEntity(el[0])
	if err := el[0].EncryptPrivateKeys(passphrase, recoveryKeyEncryption()); err != nil {
		return fmt.Errorf("keys: recovery key: encrypt: %w", err)
	}
	var enc bytes.Buffer
	if err := el[0].SerializePrivateWithoutSigning(&enc, nil); err != nil {
		return fmt.Errorf("keys: recovery key: %w", err)
	}
	if err := writeSecretBytes(path, armorBytes(openpgp.PrivateKeyType, enc.Bytes())); err != nil {
		return fmt.Errorf("keys: write recovery key: %w", err)
	}
	f, err := os.OpenFile(path+".pub", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		_, err = f.Write(k.pub.ArmoredPublicKey())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("keys: write recovery public key: %w", err)
	}
	return nil
}

// LoadRecoveryKey reads a file WriteRecoveryKey wrote, with the checks every
// secret file gets (regular, not a symlink, this user's, mode 0600 or
// tighter), and unlocks it with the passphrase. It refuses an unencrypted
// key (ErrRecoveryKeyUnprotected): such a file may have sat on a node. A
// wrong passphrase gives ErrBadPassphrase. Errors never echo the file.
func LoadRecoveryKey(path string, passphrase []byte) (*CustodianKey, error) {
	b, err := readSecretFile(path, maxCustodianKeyFile)
	if err != nil {
		return nil, fmt.Errorf("keys: recovery key: %w", err)
	}
	defer clear(b)
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil || len(el) != 1 || el[0].PrivateKey == nil {
		return nil, fmt.Errorf("keys: recovery key %s: not one armored OpenPGP private key (made by custos recovery keygen)", path)
	}
	e := el[0]
	if !e.PrivateKey.Encrypted || len(e.Subkeys) != 1 || e.Subkeys[0].PrivateKey == nil || !e.Subkeys[0].PrivateKey.Encrypted {
		zeroEntity(e)
		return nil, fmt.Errorf("keys: recovery key %s: %w; make one with custos recovery keygen", path, ErrRecoveryKeyUnprotected)
	}
	if err := e.DecryptPrivateKeys(passphrase); err != nil {
		zeroEntity(e)
		return nil, fmt.Errorf("keys: recovery key %s: %w", path, ErrBadPassphrase)
	}
	k, err := custodianKeyFrom(e)
	if err != nil {
		zeroEntity(e)
		return nil, fmt.Errorf("keys: recovery key %s: %w", path, err)
	}
	return k, nil
}

// ReadRecoveryPublicKey reads the public half of a recovery key (the
// FILE.pub custos recovery keygen wrote, armored or binary) and checks it
// is a custodian key. A file holding a private key is refused: the private
// half never goes near a node.
func ReadRecoveryPublicKey(path string) (Custodian, error) {
	f, err := os.Open(path)
	if err != nil {
		return Custodian{}, fmt.Errorf("keys: recovery public key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCustodianKeyFile+1))
	if err != nil {
		return Custodian{}, fmt.Errorf("keys: recovery public key: %w", err)
	}
	// Wiped in case it was a private key after all.
	defer clear(b)
	if len(b) > maxCustodianKeyFile {
		return Custodian{}, fmt.Errorf("keys: %s is larger than a key file", path)
	}
	if holdsPrivateKey(b) {
		return Custodian{}, fmt.Errorf("keys: %s holds a PRIVATE key; give the public FILE.pub that custos recovery keygen wrote, and keep the private file offline", path)
	}
	c, err := NewCustodian("recovery", b)
	if err != nil {
		return Custodian{}, fmt.Errorf("keys: %s is not a recovery public key (made by custos recovery keygen): %w", path, err)
	}
	return c, nil
}

// holdsPrivateKey reports whether b is an armored private key block or
// binary OpenPGP starting with a secret-key packet.
func holdsPrivateKey(b []byte) bool {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		blk, err := armor.Decode(bytes.NewReader(b))
		if err != nil {
			return bytes.Contains(b, []byte("PRIVATE KEY"))
		}
		io.Copy(io.Discard, blk.Body)
		return blk.Type == openpgp.PrivateKeyType
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		return false
	}
	tag := (b[0] & 0x3f) // new format
	if b[0]&0x40 == 0 {
		tag = (b[0] & 0x3f) >> 2 // old format
	}
	return tag == 5 // secret-key packet
}
