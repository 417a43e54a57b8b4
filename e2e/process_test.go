package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTwoProcesses runs the real binary: two `custos up` processes that know
// each other from peers files, talk, and shut down cleanly on SIGTERM; the
// survivor's gossip reports the stopped one dead.
func TestTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "custos")
	if out, err := exec.Command("go", "build", "-o", bin, module+"/cmd/custos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	type proc struct {
		name, dir, listen, key string
		cmd                    *exec.Cmd
	}
	procs := []*proc{{name: "dc-a"}, {name: "store-1"}}
	for _, p := range procs {
		p.dir = filepath.Join(tmp, p.name)
		p.listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		out, err := exec.Command(bin, "key", "--dir", p.dir, "--json").Output()
		if err != nil {
			t.Fatalf("custos key: %v", err)
		}
		var k struct {
			PublicKey string `json:"public_key"`
		}
		if err := json.Unmarshal(out, &k); err != nil {
			t.Fatal(err)
		}
		p.key = k.PublicKey
	}
	for i, p := range procs {
		o := procs[1-i]
		peers := fmt.Sprintf("[[peer]]\nname = %q\npublic_key = %q\nendpoint = %q\n", o.name, o.key, o.listen)
		pf := filepath.Join(p.dir, "peers.toml")
		if err := os.WriteFile(pf, []byte(peers), 0o600); err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(bin, "up", "--dir", p.dir, "--listen", p.listen, "--peers", pf)
		p.cmd.Stderr = &prefixWriter{t: t, prefix: p.name + ": "}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	}
	liveness := func(p *proc, peer string) string {
		out, err := exec.Command(bin, "status", "--dir", p.dir, "--json").Output()
		if err != nil {
			return ""
		}
		var st struct {
			Peers []struct {
				Name     string `json:"name"`
				Liveness string `json:"liveness"`
				RxBytes  uint64 `json:"rx_bytes"`
			} `json:"peers"`
		}
		if json.Unmarshal(out, &st) != nil {
			return ""
		}
		for _, ps := range st.Peers {
			if ps.Name == peer && ps.RxBytes > 0 {
				return ps.Liveness
			}
		}
		return ""
	}
	waitFor(t, 20*time.Second, "both processes see each other alive", func() bool {
		return liveness(procs[0], "store-1") == "alive" && liveness(procs[1], "dc-a") == "alive"
	})
	// SIGTERM: a clean exit, status 0, and the socket gone.
	procs[1].cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- procs[1].cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("store-1 exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("store-1 did not exit within 10 s of SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(procs[1].dir, "custos.sock")); err == nil {
		t.Error("store-1 left its API socket behind")
	}
	stopped := time.Now()
	waitFor(t, 15*time.Second, "dc-a sees store-1 dead", func() bool { return liveness(procs[0], "store-1") == "dead" })
	t.Logf("dc-a saw the stopped process dead after %v", time.Since(stopped).Round(10*time.Millisecond))
}

func freePort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(p), nil
}
