package keys

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

func TestAdminKeyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.key")
	k, err := NewAdminKey("alice", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("correct horse battery")
	if err := WriteAdminKey(path, k, []byte("short")); err == nil {
		t.Fatal("a short passphrase was accepted")
	}
	if err := WriteAdminKey(path, k, pass); err != nil {
		t.Fatal(err)
	}
	if err := WriteAdminKey(path, k, pass); err == nil {
		t.Fatal("an existing key file was overwritten")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte("BEGIN PGP PRIVATE KEY BLOCK")) {
		t.Fatal("key file is not armored")
	}
	if _, err := LoadAdminKey(path, []byte("wrong passphrase")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	k2, err := LoadAdminKey(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Fingerprint() != k.Fingerprint() {
		t.Fatal("reloaded key differs")
	}
	pub, fp, err := ReadPublicKeyFile(path + ".pub")
	if err != nil || fp != k.Fingerprint() || len(pub) == 0 {
		t.Fatalf("public key file: fp %s err %v", fp, err)
	}
	if _, _, err := ReadPublicKeyFile(path); err == nil || !strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("private key given as public: %v", err)
	}

	msg := []byte("custos/policy/v1\x00{}")
	sig, err := k2.Sign(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	el, _ := openpgp.ReadKeyRing(bytes.NewReader(pub))
	if _, _, err := openpgp.VerifyDetachedSignature(el, bytes.NewReader(msg), bytes.NewReader(sig), nil); err != nil {
		t.Fatalf("go-crypto verify: %v", err)
	}
	k2.Close()
	if _, err := k2.Sign(msg, time.Now()); err == nil {
		t.Fatal("a closed key still signs")
	}

	os.Chmod(path, 0o644)
	if _, err := LoadAdminKey(path, pass); !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("world-readable admin key: %v", err)
	}

	// A standard tool checks the signature: GnuPG.
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Skip("gpg not installed")
	}
	home := t.TempDir()
	os.WriteFile(filepath.Join(dir, "msg"), msg, 0o600)
	os.WriteFile(filepath.Join(dir, "msg.sig"), sig, 0o600)
	if out, err := exec.Command(gpg, "--homedir", home, "--batch", "--import", path+".pub").CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	out, err := exec.Command(gpg, "--homedir", home, "--batch", "--verify", filepath.Join(dir, "msg.sig"), filepath.Join(dir, "msg")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Good signature") {
		t.Fatalf("gpg --verify: %v\n%s", err, out)
	}
	// And a tampered message fails there too.
	os.WriteFile(filepath.Join(dir, "msg"), append(msg, '!'), 0o600)
	if out, err := exec.Command(gpg, "--homedir", home, "--batch", "--verify", filepath.Join(dir, "msg.sig"), filepath.Join(dir, "msg")).CombinedOutput(); err == nil {
		t.Fatalf("gpg accepted a tampered message:\n%s", out)
	}
}

// An admin key file that is not passphrase-protected is refused whatever
// passphrase is given, and so are a symlink and a file that is not regular.
func TestLoadAdminKeyRefusesUnprotected(t *testing.T) {
	dir := t.TempDir()
	k, err := NewAdminKey("alice", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err := k.entity.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	plain := filepath.Join(dir, "plain.key")
	if err := os.WriteFile(plain, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"", "anything at all"} {
		if _, err := LoadAdminKey(plain, []byte(pass)); !errors.Is(err, ErrKeyUnprotected) {
			t.Fatalf("unencrypted admin key with passphrase %q: %v", pass, err)
		}
	}
	good := filepath.Join(dir, "alice.key")
	if err := WriteAdminKey(good, k, []byte("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAdminKey(link, []byte("correct horse battery")); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("a symlinked admin key: %v", err)
	}
	sub := filepath.Join(dir, "adir")
	os.Mkdir(sub, 0o700)
	if _, err := LoadAdminKey(sub, []byte("correct horse battery")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory as the admin key: %v", err)
	}
}
