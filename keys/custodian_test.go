package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCustodianKeyFile(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "custodian.key")
	k := f.keys[0]
	if err := WriteCustodianKey(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteCustodianKey(path, k); err == nil {
		t.Fatal("an existing custodian key was overwritten")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadCustodianKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint() != k.Fingerprint() || got.Name() != "dc-a" {
		t.Fatalf("reloaded %v, want %v", got.Fingerprint(), k.Fingerprint())
	}
	if _, err := got.OpenShare(f.rec); err != nil {
		t.Fatalf("reloaded key opens its share: %v", err)
	}
	pub, _ := os.ReadFile(path + ".pub")
	if c, err := NewCustodian("dc-a", pub); err != nil || c.Fingerprint() != k.Fingerprint() {
		t.Fatalf("public key file: %v", err)
	}

	link := filepath.Join(dir, "link.key")
	os.Symlink(path, link)
	if _, err := LoadCustodianKey(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlink: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := LoadCustodianKey(path); !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("group-readable key: %v", err)
	}
}

func TestRecoveryKeyExport(t *testing.T) {
	f := newFixture(t)
	armored, err := f.keys[2].ArmoredRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(armored, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
		t.Fatalf("not an armored private key block:\n%.60s", armored)
	}
	k, err := ParseRecoveryKey(armored)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name() != "recovery" || k.Fingerprint() != f.keys[2].Fingerprint() {
		t.Fatalf("parsed %s %v", k.Name(), k.Fingerprint())
	}
	// The recovery key stands in for a lost datacenter.
	if _, err := DecryptSegmentAsCustodians(f.rec, f.ct, k, f.keys[1]); err != nil {
		t.Fatal(err)
	}
	// A damaged block fails without echoing what was pasted.
	bad := bytes.Replace(armored, []byte("\n"), []byte("\nZZ"), 3)
	if _, err := ParseRecoveryKey(bad); err == nil || strings.Contains(err.Error(), "ZZ") {
		t.Fatalf("damaged block: %v", err)
	}
	pub := f.keys[2].Custodian().ArmoredPublicKey()
	if _, err := ParseRecoveryKey(pub); err == nil {
		t.Fatal("a public key parsed as a recovery key")
	}
}

func TestNewCustodianRejects(t *testing.T) {
	_, custs := custodianKeys(t)
	admin, err := NewAdminKey("alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := fixtureKeys[0].ArmoredRecoveryKey()
	for name, pub := range map[string][]byte{
		"v4 admin key":  admin.PublicKey(),
		"private key":   priv,
		"garbage":       []byte("nope"),
		"trailing byte": append(bytes.Clone(custs[0].pub), 0),
	} {
		if _, err := NewCustodian("dc-a", pub); err == nil {
			t.Errorf("%s: accepted as a custodian key", name)
		}
	}
	if _, err := NewCustodian("bad name", custs[0].pub); err == nil {
		t.Error("a name with a space was accepted")
	}
	if c, err := NewCustodian("dc-a", custs[0].ArmoredPublicKey()); err != nil || c.Fingerprint() != custs[0].Fingerprint() {
		t.Errorf("armored public key: %v", err)
	}
}

func TestCustodianKeyZero(t *testing.T) {
	_, custs := custodianKeys(t)
	k, err := NewCustodianKey("dc-z")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := NewEpochKey("cam", time.Now(), time.Minute, []Custodian{custs[0], k.Custodian()})
	if err != nil {
		t.Fatal(err)
	}
	scalar := x25519Secret(k.entity).Secret
	k.Zero()
	if !allZero(scalar) {
		t.Fatal("Zero left the X25519 secret")
	}
	if _, err := k.OpenShare(rec); err == nil {
		t.Fatal("a wiped custodian key opened a share")
	}
	if _, err := k.ArmoredRecoveryKey(); err == nil {
		t.Fatal("a wiped custodian key was exported")
	}
}

// NewCustodian keeps parsed keys: a key differing by one byte from a
// cached one (its binding signature broken) is still refused, a refused
// key stays refused, and the cache is safe for concurrent use (-race).
func TestNewCustodianCache(t *testing.T) {
	_, custs := custodianKeys(t)
	good := custs[0].pub
	for range 2 {
		if c, err := NewCustodian("dc-a", good); err != nil || c.Fingerprint() != custs[0].Fingerprint() {
			t.Fatalf("genuine key: %v", err)
		}
	}
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1 // the last signature's last byte
	for range 2 {
		if _, err := NewCustodian("dc-a", bad); err == nil {
			t.Fatal("a key with a broken signature was accepted after the genuine one was cached")
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				pub, ok := custs[(g+i)%len(custs)].pub, true
				if i%3 == 0 {
					pub, ok = bad, false
				}
				if _, err := NewCustodian("dc-a", pub); (err == nil) != ok {
					t.Errorf("want ok=%v, got %v", ok, err)
				}
			}
		})
	}
	wg.Wait()
}
