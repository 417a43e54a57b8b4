package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// camera add refuses transport and certificate settings that cannot work
// before it reaches the node.
func TestCameraAddRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte(strings.Repeat("x", 70<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--site", "s", "--name", "n", "--purpose", "p", "--dir", dir, "--as", "k"}
	pin := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--source", "rtsp://cam/s", "--transport", "sctp"}, "--transport"},
		{[]string{"--source", "rtsp://cam/s", "--pin", pin}, "for rtsps:// sources"},
		{[]string{"--source", "rtsps://cam/s", "--pin", pin, "--ca", notPEM}, "not both"},
		{[]string{"--source", "rtsps://cam/s", "--pin", "sha256:AB"}, "--pin"},
		{[]string{"--source", "rtsps://cam/s", "--ca", notPEM}, "larger than"},
	} {
		err := runCameraAdd(context.Background(), append(base, tc.args...), io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("camera add %v: %v, want a usage error saying %q", tc.args, err, tc.want)
		}
	}
}
