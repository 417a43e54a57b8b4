package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateKeyNeverPrints(t *testing.T) {
	k := NewNodePrivate()
	secret, _ := k.MarshalSecretText()
	hex := strings.TrimPrefix(string(secret), "privkey:")
	type holder struct{ K NodePrivate }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		for _, v := range []any{k, &k, holder{k}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(strings.ToLower(out), hex[:16]) || strings.Contains(out, string(secret)) {
				t.Errorf("fmt %s of %T revealed the key: %s", verb, v, out)
			}
		}
	}
	if got := k.String(); got != "privkey:[redacted]" {
		t.Errorf("String() = %q", got)
	}
}

func TestPublicKeyText(t *testing.T) {
	k := NewNodePrivate()
	pub := k.Public()
	s := pub.String()
	if !strings.HasPrefix(s, "nodekey:") || len(s) != len("nodekey:")+64 {
		t.Fatalf("public key text %q: want nodekey:<64 hex>", s)
	}
	back, err := ParseNodePublic(s)
	if err != nil || back != pub {
		t.Fatalf("ParseNodePublic(String()) = %v, %v; want %v", back, err, pub)
	}
	hex, err := ParseNodePublicHex(pub.WireGuardHex())
	if err != nil || hex != pub {
		t.Fatalf("ParseNodePublicHex round trip = %v, %v", hex, err)
	}
	if NodePublicFromRaw32(pub.Raw32()) != pub {
		t.Fatal("Raw32 round trip changed the key")
	}
	for _, bad := range []string{"", "nodekey:", "nodekey:zz", s[:len(s)-2], strings.Replace(s, "nodekey:", "privkey:", 1), "nodekey:" + strings.Repeat("0", 64)} {
		if _, err := ParseNodePublic(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseNodePublic(%q) err = %v, want ErrBadKey", bad, err)
		}
	}
}

func TestPublicKeyErrorsNeverEchoInput(t *testing.T) {
	priv, _ := NewNodePrivate().MarshalSecretText()
	hexPart := strings.TrimPrefix(string(priv), "privkey:")
	for _, in := range []string{string(priv), "nodekey:" + hexPart[:60] + "zzzz", hexPart} {
		_, err := ParseNodePublic(in)
		if err == nil {
			t.Fatalf("accepted %q", in)
		}
		if strings.Contains(err.Error(), hexPart[:16]) {
			t.Fatalf("error echoes the input: %v", err)
		}
	}
	if _, err := ParseNodePublic(string(priv)); !strings.Contains(err.Error(), "PRIVATE key") {
		t.Fatalf("a private key pasted as public key must be called out: %v", err)
	}
}

func TestPrivateKeyEqualAndZero(t *testing.T) {
	a, b := NewNodePrivate(), NewNodePrivate()
	if a.Equal(b) || !a.Equal(a) {
		t.Fatal("Equal is wrong")
	}
	c := a
	c.Zero()
	if !c.IsZero() || a.IsZero() {
		t.Fatal("Zero must clear only the receiver")
	}
	if _, err := ParseNodePrivate([]byte("privkey:" + strings.Repeat("0", 64))); err == nil {
		t.Fatal("accepted an all-zero private key")
	}
	_, err := ParseNodePrivate([]byte("privkey:00112233"))
	if err == nil || strings.Contains(err.Error(), "00112233") {
		t.Fatalf("bad private key error must not echo the input: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "node.key")
	k1, created, err := LoadOrCreateNodeKey(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateNodeKey(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	if !k1.Equal(k2) {
		t.Fatal("reloaded key differs")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}

	for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateNodeKey(path); !errors.Is(err, ErrKeyFilePermissions) {
			t.Errorf("mode %#o: err = %v, want ErrKeyFilePermissions", mode, err)
		} else if !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %#o: error does not say how to fix: %v", mode, err)
		}
	}
	os.Chmod(path, 0o600)

	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, _, err := LoadOrCreateNodeKey(path); !errors.Is(err, ErrBadKey) {
		t.Fatalf("garbage key file: err = %v, want ErrBadKey", err)
	}
	// A symlink to a good key is refused: whoever can write the directory
	// could point it anywhere.
	good := filepath.Join(dir, "real.key")
	if _, _, err := LoadOrCreateNodeKey(good); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Symlink(good, path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateNodeKey(path); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlinked key file: err = %v", err)
	}
	os.Remove(path)
	os.Mkdir(path, 0o700)
	if _, _, err := LoadOrCreateNodeKey(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory as key file: err = %v", err)
	}
}

func TestMeshAddr(t *testing.T) {
	p, err := MeshPrefix("acme-retail")
	if err != nil {
		t.Fatal(err)
	}
	if p.Bits() != 48 || p.Addr().As16()[0] != 0xfd {
		t.Fatalf("prefix %v: want an fd00::/8 ULA /48", p)
	}
	if q, _ := MeshPrefix("other"); q == p {
		t.Fatal("two federations share a prefix")
	}
	if _, err := MeshPrefix(" "); err == nil {
		t.Fatal("blank federation accepted")
	}
	a, b := NewNodePrivate().Public(), NewNodePrivate().Public()
	aa := MeshAddr(p, a)
	if !p.Contains(aa) {
		t.Fatalf("address %v outside prefix %v", aa, p)
	}
	if aa == MeshAddr(p, b) {
		t.Fatal("two keys share an address")
	}
	if aa != MeshAddr(p, a) {
		t.Fatal("derivation is not deterministic")
	}
	if !CheckMeshAddr(p, a, aa) || CheckMeshAddr(p, b, aa) {
		t.Fatal("CheckMeshAddr is wrong")
	}
}

func FuzzParseNodePublic(f *testing.F) {
	f.Add(NewNodePrivate().Public().String())
	f.Add("nodekey:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNodePublic(s)
		if err != nil {
			return
		}
		if q, err := ParseNodePublic(p.String()); err != nil || q != p {
			t.Fatalf("round trip of %q failed", s)
		}
	})
}

func FuzzParseNodePrivate(f *testing.F) {
	b, _ := NewNodePrivate().MarshalSecretText()
	f.Add(b)
	f.Add([]byte("privkey:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseNodePrivate(b)
		if err == nil && k.IsZero() {
			t.Fatal("parsed a zero key")
		}
	})
}
