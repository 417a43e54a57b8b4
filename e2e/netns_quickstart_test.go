package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// qsBlock is one shell block of the README's Quick start: the commands one
// machine runs at that step.
type qsBlock struct {
	machine string
	script  string
	line    int // in README.md, for failure messages
}

// quickStart reads the README's Quick start section: every ```sh block in
// it must open with "# on MACHINE". A block without that line fails the
// test, so the README cannot hold commands this test does not run.
func quickStart(t *testing.T, readme string) []qsBlock {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []qsBlock
	in, inBlock := false, false
	var cur *qsBlock
	var body []string
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## "):
			in = l == "## Quick start"
		case !in:
		case !inBlock && strings.HasPrefix(l, "```sh"):
			inBlock, cur, body = true, &qsBlock{line: i + 1}, nil
		case inBlock && strings.HasPrefix(l, "```"):
			inBlock = false
			if len(body) == 0 || !strings.HasPrefix(body[0], "# on ") {
				t.Fatalf("README.md:%d: a Quick start block must open with \"# on MACHINE\"", cur.line)
			}
			cur.machine = strings.Fields(strings.TrimPrefix(body[0], "# on "))[0]
			cur.script = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
		case inBlock:
			body = append(body, l)
		}
	}
	if len(blocks) < 8 {
		t.Fatalf("README.md's Quick start has %d shell blocks; the setup needs more", len(blocks))
	}
	return blocks
}

var qsListen = regexp.MustCompile(`--listen ([0-9.]+):[0-9]+`)

// TestNetnsQuickStart runs the README's Quick start as written, each block
// in the namespace of the machine it names, with `custos` on the PATH, the
// data directory /var/lib/custos mapped to one per machine and `scp FILES
// HOST:` copying into that machine's working directory. Every command must
// succeed (bash -e); then the files the quick start makes are checked: the
// live recording and the export, which ffprobe must read.
func TestNetnsQuickStart(t *testing.T) {
	blocks := quickStart(t, "../README.md")
	bin := custosBin(t)
	root := t.TempDir()
	l := newLab(t)

	// Each machine's address is the one its blocks tell the nodes to listen on.
	addrs := map[string]netip.Addr{}
	var order []string
	for _, b := range blocks {
		if _, ok := addrs[b.machine]; !ok {
			addrs[b.machine] = netip.Addr{}
			order = append(order, b.machine)
		}
		if m := qsListen.FindStringSubmatch(b.script); m != nil {
			a, err := netip.ParseAddr(m[1])
			if err != nil {
				t.Fatalf("README.md:%d: --listen %s: %v", b.line, m[1], err)
			}
			if prev := addrs[b.machine]; prev.IsValid() && prev != a {
				t.Fatalf("README.md:%d: %s listens on %s and %s", b.line, b.machine, prev, a)
			}
			addrs[b.machine] = a
		}
	}
	nodes := map[string]*labNode{}
	for i, m := range order {
		a := addrs[m]
		if !a.IsValid() {
			a = netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + i)}) // a machine that runs no node
		}
		nodes[m] = l.addAt(m, a)
		for _, d := range []string{"home", "custos"} {
			if err := os.MkdirAll(filepath.Join(root, m, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Nodes started with & outlive their block; stop them before the
	// directories go (cleanups run last-registered first).
	t.Cleanup(func() {
		for _, nd := range nodes {
			stopNetnsPids(nd.ns, 15*time.Second)
		}
	})

	prelude := fmt.Sprintf(`set -euo pipefail
scp() {
	local dest="${@: -1}"; dest="${dest%%:}"
	[ -d %q/"$dest"/home ] || { echo "scp: no machine $dest" >&2; return 1; }
	cp -- "${@:1:$(($#-1))}" %q/"$dest"/home/
}
`, root, root)
	for i, b := range blocks {
		dir := filepath.Join(root, b.machine)
		script := prelude + strings.ReplaceAll(b.script, "/var/lib/custos", filepath.Join(dir, "custos"))
		outPath := filepath.Join(dir, fmt.Sprintf("block%02d.out", i))
		errPath := filepath.Join(dir, fmt.Sprintf("block%02d.err", i))
		start := time.Now()
		err := runBlock(nodes[b.machine], script, filepath.Join(dir, "home"), bin, outPath, errPath)
		if err != nil {
			out, _ := os.ReadFile(outPath)
			errOut, _ := os.ReadFile(errPath)
			t.Fatalf("README.md:%d on %s: %v\n%s\n--- stdout ---\n%s\n--- stderr (with the log of nodes it started) ---\n%s",
				b.line, b.machine, err, b.script, tail(out, 40), tail(errOut, 80))
		}
		t.Logf("README.md:%d on %s: %s", b.line, b.machine, time.Since(start).Round(10*time.Millisecond))
	}

	// What the quick start leaves behind on the workstation.
	home := filepath.Join(root, "admin", "home")
	for _, f := range []string{"live.ts", "theft-1.ts", "theft-1.ts.manifest.json", "rescue-codes.txt"} {
		st, err := os.Stat(filepath.Join(home, f))
		if err != nil || st.Size() == 0 {
			t.Fatalf("the quick start left no %s on admin: %v", f, err)
		}
	}
	if _, err := exec.LookPath("ffprobe"); err == nil {
		for _, f := range []string{"live.ts", "theft-1.ts"} {
			out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
				"-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", filepath.Join(home, f)).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "h264,") {
				t.Fatalf("ffprobe %s: %v: %s", f, err, out)
			}
			t.Logf("%s: %s", f, strings.TrimSpace(string(out)))
		}
	}
}

// runBlock runs one block's script with bash in nd's namespace. Its output
// goes to files, not pipes: nodes it starts in the background keep them
// open after the block ends.
func runBlock(nd *labNode, script, home, bin, outPath, errPath string) error {
	stdout, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := os.Create(errPath)
	if err != nil {
		return err
	}
	defer stderr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nd.ns, "bash", "-c", script)
	cmd.Dir = home
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
		"HOME="+home,
		"CUSTOS_PASSPHRASE=quick start passphrase")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd.Run()
}

// stopNetnsPids asks every process in ns to stop (SIGTERM), and kills what
// is left after d.
func stopNetnsPids(ns string, d time.Duration) {
	signalNetns(ns, syscall.SIGTERM)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if out, _ := exec.Command("ip", "netns", "pids", ns).Output(); len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	killNetnsPids(ns)
}

func signalNetns(ns string, sig syscall.Signal) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			syscall.Kill(pid, sig)
		}
	}
}

// tail is the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
