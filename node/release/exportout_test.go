package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An export's plaintext has no name until it is whole: a crash (here: the
// file closed without publish) leaves nothing in the directory; publish
// never overwrites a file that appeared at the path meanwhile.
func TestExportFileHasNoNameUntilWhole(t *testing.T) {
	dir := t.TempDir()
	f, err := unnamedFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("plaintext frames")
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("an unfinished export is visible: %v", names)
	}
	f.Close()
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Fatalf("an abandoned export left %v", names)
	}

	f, err = unnamedFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("the export")
	dst := filepath.Join(dir, "out.ts")
	if err := os.WriteFile(dst, []byte("someone else's file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := publish(f, dst); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("publish over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "someone else's file" {
		t.Fatal("publish overwrote a file")
	}
	os.Remove(dst)
	if err := publish(f, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if b, _ := os.ReadFile(dst); err != nil || string(b) != "the export" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("published %q, mode %v, %v", b, fi.Mode().Perm(), err)
	}
}
