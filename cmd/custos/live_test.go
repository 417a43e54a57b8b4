package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkLiveRefused: a live view the store's policy refuses exits 4 with
// the store's reason, a sentence without an HTTP status; once granted, the
// same view plays.
func checkLiveRefused(t *testing.T, tmp, dc, alice string) {
	t.Helper()
	if code, _, errOut := runCLI("camera", "add", "--site", "praha-1", "--name", "cam", "--source", "synthetic:", "--purpose", "test",
		"--dir", dc, "--as", alice); code != 0 {
		t.Fatalf("camera add: %s", errOut)
	}
	file := filepath.Join(tmp, "live.ts")
	var code int
	var errOut string
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, errOut = runCLI("live", "--dir", dc, "--camera", "praha-1/cam", "--out", file, "--for", "3s")
		if code != 1 || time.Now().After(deadline) {
			break // 1 until the store knows the camera and answers
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 4 || !strings.Contains(errOut, "custos live: live view of praha-1/cam: ") ||
		strings.Contains(errOut, "live view of praha-1/cam: live view of") || strings.Contains(errOut, "Forbidden") || strings.Contains(errOut, "403") {
		t.Fatalf("an ungranted live view: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused live view left %s", file)
	}
	if code, _, errOut := runCLI("grant", "--to", "node:dc-a", "--action", "live", "--cameras", "praha-1/*", "--until", "1h", "--dir", dc, "--as", alice); code != 0 {
		t.Fatalf("grant: %s", errOut)
	}
	for {
		code, _, errOut = runCLI("live", "--dir", dc, "--camera", "praha-1/cam", "--out", file, "--for", "3s")
		if fi, err := os.Stat(file); code == 0 && err == nil && fi.Size() > 0 {
			return
		}
		os.Remove(file)
		if time.Now().After(deadline) {
			t.Fatalf("the granted live view never played: exit %d %s", code, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
