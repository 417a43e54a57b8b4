package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecoveryKeyFile(t *testing.T) {
	k, err := NewCustodianKey("recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zero()
	dir := t.TempDir()
	path := filepath.Join(dir, "recovery.key")
	pass := []byte("correct horse battery")
	if err := WriteRecoveryKey(path, k, []byte("short")); err == nil {
		t.Fatal("a passphrase of 5 characters was taken")
	}
	if err := WriteRecoveryKey(path, k, pass); err != nil {
		t.Fatal(err)
	}
	if err := WriteRecoveryKey(path, k, pass); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("an existing recovery key was overwritten: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// The file holds no unprotected key material: not the armored
	// plaintext key, and not the raw X25519 secret.
	b, _ := os.ReadFile(path)
	plain, err := k.ArmoredRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(plain)
	if bytes.Contains(b, plain[40:120]) || bytes.Contains(b, x25519Secret(k.entity).Secret) {
		t.Fatal("the recovery key file holds the key unencrypted")
	}
	if _, err := ParseRecoveryKey(b); err == nil {
		t.Fatal("the encrypted file parses as an unlocked key")
	}

	got, err := LoadRecoveryKey(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Zero()
	again, err := got.ArmoredRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(again)
	if got.Fingerprint() != k.Fingerprint() || got.Name() != "recovery" || !bytes.Equal(again, plain) {
		t.Fatal("the reloaded recovery key is not the one written")
	}
	if _, err := LoadRecoveryKey(path, []byte("wrong horse battery")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}

	// The public half, for custos init.
	c, err := ReadRecoveryPublicKey(path + ".pub")
	if err != nil || c.Fingerprint() != k.Fingerprint() || !bytes.Equal(c.PublicKey(), k.Custodian().PublicKey()) {
		t.Fatalf("public key file: %v", err)
	}
	if fi, _ := os.Stat(path + ".pub"); fi.Mode().Perm() != 0o644 {
		t.Fatalf("public key file mode %v", fi.Mode().Perm())
	}
	if _, err := ReadRecoveryPublicKey(path); err == nil || !strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("the private file as a public key: %v", err)
	}
	bin := filepath.Join(dir, "plain.bin")
	os.WriteFile(bin, plain, 0o600)
	if _, err := ReadRecoveryPublicKey(bin); err == nil || !strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("an unprotected private key as a public key: %v", err)
	}
	junk := filepath.Join(dir, "junk.pub")
	os.WriteFile(junk, []byte("not a key\n"), 0o644)
	if _, err := ReadRecoveryPublicKey(junk); err == nil || !strings.Contains(err.Error(), "not a recovery public key") {
		t.Fatalf("junk as a public key: %v", err)
	}
	admin, _ := NewAdminKey("alice", fi.ModTime())
	defer admin.Close()
	os.WriteFile(junk, admin.ArmoredPublicKey(), 0o644)
	if _, err := ReadRecoveryPublicKey(junk); err == nil || !strings.Contains(err.Error(), "not a recovery public key") {
		t.Fatalf("an admin key as a recovery key: %v", err)
	}

	// An unencrypted key file (a datacenter's custodian.key, or the block
	// older versions printed) is refused, whatever its mode.
	unprot := filepath.Join(dir, "unprotected.key")
	if err := WriteCustodianKey(unprot, k); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRecoveryKey(unprot, pass); !errors.Is(err, ErrRecoveryKeyUnprotected) {
		t.Fatalf("unencrypted recovery key: %v", err)
	}

	// The checks every secret file gets.
	link := filepath.Join(dir, "link.key")
	os.Symlink(path, link)
	if _, err := LoadRecoveryKey(link, pass); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlink: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := LoadRecoveryKey(path, pass); !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("group-readable key: %v", err)
	}
	if _, err := LoadRecoveryKey(dir, pass); err == nil {
		t.Fatal("a directory loaded as a key")
	}
}
