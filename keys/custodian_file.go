package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

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

// ArmoredRecoveryKey returns the private key as an armored OpenPGP block,
// to be printed once (the controller's recovery key at custos init) and
// kept offline. The caller wipes the result after use.
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

// ParseRecoveryKey reads back ArmoredRecoveryKey's block. Errors never echo
// the input. go-crypto's armor and packet parsers keep transient copies of
// the key that this package cannot wipe.
func ParseRecoveryKey(armored []byte) (*CustodianKey, error) {
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil || len(el) != 1 {
		return nil, errors.New("keys: recovery key: not one armored OpenPGP private key (the block custos init printed)")
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
