package node

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
)

func TestDataDirMustNotBeWritableByOthers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // umask-proof
	if _, err := New(Config{Dir: dir, Listen: mustFreeListen(t)}); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("world-writable data dir: err = %v", err)
	}
	if _, err := os.Stat(KeyPath(dir)); err == nil {
		t.Fatal("a key was written into a world-writable directory")
	}
}

func TestPrivateSocketAcceptsOwner(t *testing.T) {
	ln, err := listenPrivate(filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if string(b) != "hello" {
		t.Fatalf("owner got %q", b)
	}
}

// TestPrivateSocketRefusesOtherUsers opens the socket's file mode wide (as if
// a client had raced the chmod) and connects as user nobody: the peer
// credential check must still refuse it.
func TestPrivateSocketRefusesOtherUsers(t *testing.T) {
	if os.Getenv("CUSTOS_SOCKET_CLIENT") != "" {
		c, err := net.Dial("unix", os.Getenv("CUSTOS_SOCKET_CLIENT"))
		if err != nil {
			os.Stdout.WriteString("dial failed: " + err.Error())
			os.Exit(0)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		os.Stdout.Write(b)
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// Everything the client touches must be reachable by nobody.
	pub, err := os.MkdirTemp("", "custos-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	os.Chmod(pub, 0o755)
	bin := filepath.Join(pub, "client.test")
	self, _ := os.Executable()
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(pub, "s.sock")
	ln, err := listenPrivate(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Chmod(sock, 0o777)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SECRET"))
			c.Close()
		}
	}()
	cmd := exec.Command(bin, "-test.run=^TestPrivateSocketRefusesOtherUsers$")
	cmd.Env = append(os.Environ(), "CUSTOS_SOCKET_CLIENT="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "SECRET") {
		t.Fatal("a connection from another user was served")
	}
	t.Logf("client as nobody got: %q", out)
}

func mustFreeListen(t *testing.T) netip.AddrPort {
	t.Helper()
	port, err := nodetest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}
