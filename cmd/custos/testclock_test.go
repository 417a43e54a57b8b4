package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A release build (no custos_testclock tag, as `make build` makes it) has no
// test clock: nothing in it reads DIR/testclock-offset.
func TestReleaseBuildHasNoTestClock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "custos")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("testclock-offset")) {
		t.Fatal("a build without the custos_testclock tag contains the test clock (testclock-offset)")
	}
	// The check can see it: a test build does contain it.
	tagged := filepath.Join(t.TempDir(), "custos-testclock")
	if out, err := exec.Command("go", "build", "-tags", "custos_testclock", "-o", tagged, ".").CombinedOutput(); err != nil {
		t.Fatalf("build with the tag: %v\n%s", err, out)
	}
	if b, err = os.ReadFile(tagged); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("testclock-offset")) {
		t.Fatal("the tagged build does not contain testclock-offset: this test cannot tell the builds apart")
	}
}
