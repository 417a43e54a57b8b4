package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-cctv/custos/keys"
)

// newRecoveryKey runs custos recovery keygen into dir with the test
// passphrase, as the admin would on their own machine, and returns the
// private key file (its public half is FILE.pub).
func newRecoveryKey(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "recovery.key")
	if code, out, errOut := runCLI("recovery", "keygen", "--out", file); code != 0 {
		t.Fatalf("recovery keygen: exit %d %s%s", code, out, errOut)
	}
	return file
}

func TestCLIRecoveryKeygen(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	file := filepath.Join(tmp, "recovery.key")
	code, out, errOut := runCLI("recovery", "keygen", "--out", file)
	if code != 0 {
		t.Fatalf("keygen: exit %d %s%s", code, out, errOut)
	}
	k, err := keys.LoadRecoveryKey(file, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zero()
	// It prints the public file and the fingerprint, nothing else.
	if want := "recovery key (public half): " + file + ".pub\nfingerprint: " + k.Fingerprint().String() + "\n"; out != want {
		t.Fatalf("keygen printed %q, want %q", out, want)
	}
	if strings.Contains(out+errOut, "PRIVATE") {
		t.Fatal("keygen printed key material")
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	if code, out, _ := runCLI("recovery", "show", file+".pub"); code != 0 || !strings.Contains(out, k.Fingerprint().String()) {
		t.Fatalf("recovery show: %d %s", code, out)
	}
	if code, _, errOut := runCLI("recovery", "show", file); code != 1 || !strings.Contains(errOut, "PRIVATE") {
		t.Fatalf("recovery show on the private file: %d %s", code, errOut)
	}
	// Encrypted: the wrong passphrase fails, the right one round-trips.
	os.Setenv("CUSTOS_PASSPHRASE", testPassphrase)
	if _, err := loadRecoveryKey(file, ""); err != nil {
		t.Fatalf("recover-shares' loader with CUSTOS_PASSPHRASE: %v", err)
	}
	wrong := filepath.Join(tmp, "wrong.txt")
	os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600)
	if _, err := loadRecoveryKey(file, wrong); !errors.Is(err, keys.ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	right := filepath.Join(tmp, "right.txt")
	os.WriteFile(right, []byte(testPassphrase+"\r\nsecond line ignored\n"), 0o600)
	rk, err := loadRecoveryKey(file, right)
	if err != nil || rk.Fingerprint() != k.Fingerprint() {
		t.Fatalf("--passphrase-file: %v", err)
	}
	rk.Zero()
	// An unencrypted key file (what older versions printed at init) is
	// refused.
	plain := filepath.Join(tmp, "plain.key")
	if err := keys.WriteCustodianKey(plain, k); err != nil {
		t.Fatal(err)
	}
	if _, err := loadRecoveryKey(plain, right); !errors.Is(err, keys.ErrRecoveryKeyUnprotected) {
		t.Fatalf("unencrypted recovery key: %v", err)
	}

	// Refusals.
	if code, _, errOut := runCLI("recovery", "keygen", "--out", file); code != 1 || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("second keygen: %d %s", code, errOut)
	}
	if code, _, _ := runCLI("recovery", "keygen"); code != 2 {
		t.Fatal("missing --out accepted")
	}
	if code, _, _ := runCLI("recovery"); code != 2 {
		t.Fatal("recovery without a subcommand accepted")
	}
	short := filepath.Join(tmp, "short.txt")
	os.WriteFile(short, []byte("short\n"), 0o600)
	if code, _, errOut := runCLI("recovery", "keygen", "--out", filepath.Join(tmp, "b.key"), "--passphrase-file", short); code != 1 || !strings.Contains(errOut, "at least 8") {
		t.Fatalf("short passphrase: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(tmp, "b.key")); !os.IsNotExist(err) {
		t.Fatal("a refused keygen wrote a key")
	}
	if code, out, errOut := runCLI("recovery", "keygen", "--out", filepath.Join(tmp, "c.key"), "--passphrase-file", right); code != 0 {
		t.Fatalf("keygen with --passphrase-file: %d %s%s", code, out, errOut)
	}
	if k2, err := keys.LoadRecoveryKey(filepath.Join(tmp, "c.key"), []byte(testPassphrase)); err != nil {
		t.Fatalf("the key made with --passphrase-file: %v", err)
	} else {
		k2.Zero()
	}
}

// init takes only the recovery key's public half, refuses to run without
// it or with the private file, prints nothing secret and stores no part of
// the private key under the node's directory.
func TestCLIInitRecovery(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice := filepath.Join(tmp, "alice.key")
	if code, _, errOut := runCLI("admin", "keygen", "--out", alice, "--name", "alice"); code != 0 {
		t.Fatal(errOut)
	}
	rkFile := newRecoveryKey(t, tmp)
	dir := filepath.Join(tmp, "dc-a")
	listen := "127.0.0.1:" + itoa(freeLoopbackPort(t))
	initArgs := []string{"init", "--dir", dir, "--name", "dc-a", "--listen", listen, "--federation", "acme", "--admin-key", alice + ".pub"}
	if code, _, errOut := runCLI(initArgs...); code != 2 || !strings.Contains(errOut, "--recovery FILE.pub is required") {
		t.Fatalf("init without --recovery: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(append(initArgs, "--recovery", rkFile)...); code != 1 || !strings.Contains(errOut, "--recovery") || !strings.Contains(errOut, "PRIVATE") {
		t.Fatalf("init with the private recovery key file: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(append(initArgs, "--recovery", alice+".pub")...); code != 1 || !strings.Contains(errOut, "not a recovery public key") {
		t.Fatalf("init with an admin key as the recovery key: %d %s", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a refused init touched %s", dir)
	}
	code, out, errOut := runCLI(append(initArgs, "--recovery", rkFile+".pub")...)
	if code != 0 {
		t.Fatalf("init: %d %s%s", code, out, errOut)
	}
	rk, err := keys.LoadRecoveryKey(rkFile, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	if !strings.Contains(out, "recovery key "+rk.Fingerprint().String()) || strings.Contains(out+errOut, "PRIVATE") || strings.Contains(out+errOut, "-----BEGIN") {
		t.Fatalf("init printed:\n%s%s", out, errOut)
	}
	// Neither the key's armored private form nor the encrypted file's
	// content is anywhere under the node's directory.
	priv, err := rk.ArmoredRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(priv)
	enc, _ := os.ReadFile(rkFile)
	needles := [][]byte{priv[40:120], priv[len(priv)-200 : len(priv)-120], enc[60:140]}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds part of the recovery private key", path)
			}
		}
		return nil
	})
}
