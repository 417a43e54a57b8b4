package e2e

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/custos-cctv/custos"

// TestDeps enforces DESIGN §3's import direction
// (cmd → node → {media, consensus, mesh} → {policy, keys}) on the whole
// transitive import graph, test imports excluded.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Deps       []string
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	// in reports whether path is pkg or below it.
	in := func(path, pkg string) bool {
		full := module + "/" + pkg
		return path == full || strings.HasPrefix(path, full+"/")
	}
	rules := []struct {
		pkg     string
		allowed func(dep string) bool
		why     string
	}{
		{"keys", func(d string) bool { return in(d, "keys") }, "keys is pure crypto and imports nothing of the project"},
		{"policy", func(d string) bool { return in(d, "policy") }, "policy is deterministic and imports nothing of the project"},
		{"mesh", func(d string) bool { return in(d, "mesh") || in(d, "keys") || in(d, "policy") }, "mesh never imports consensus, media or node"},
		{"media", func(d string) bool { return in(d, "media") || in(d, "keys") || in(d, "policy") }, "media never imports consensus, mesh or node"},
		{"media/onvif", func(d string) bool { return in(d, "media/onvif") }, "media/onvif speaks to cameras only and imports nothing else of the project"},
		{"consensus", func(d string) bool { return in(d, "consensus") || in(d, "keys") || in(d, "policy") }, "consensus defines the transport it needs; node wires it to the mesh"},
		{"node", func(d string) bool { return !in(d, "cmd") && !in(d, "e2e") }, "node is imported by cmd, never the reverse"},
	}
	// node's rooms: each owns one job below the composition root. A room
	// never imports the root (node) nor another room, except the shared
	// ones below it: rpc (the request framing), custody (the policy side
	// of seals) and internal (helpers of tests and the demo). The demo, the
	// console and metrics are no rooms but clients of the root, as cmd is:
	// the demo runs whole nodes, the console talks to one through its API,
	// metrics reads a node's status.
	shared := map[string]bool{"rpc": true, "custody": true, "internal": true}
	roomOf := func(path string) string {
		rest, ok := strings.CutPrefix(path, module+"/node/")
		if !ok {
			return ""
		}
		room, _, _ := strings.Cut(rest, "/")
		return room
	}
	for _, p := range pkgs {
		room := roomOf(p.ImportPath)
		if room == "" || room == "demo" || room == "console" || room == "metrics" {
			continue
		}
		rules = append(rules, struct {
			pkg     string
			allowed func(dep string) bool
			why     string
		}{strings.TrimPrefix(p.ImportPath, module+"/"), func(d string) bool {
			if d == module+"/node" || in(d, "cmd") || in(d, "e2e") {
				return false
			}
			r := roomOf(d)
			return r == "" || r == room || shared[r]
		}, "a room of node imports neither the root nor another room (only rpc, custody, internal)"})
	}
	checked := 0
	for _, p := range pkgs {
		for _, r := range rules {
			if !in(p.ImportPath, r.pkg) {
				continue
			}
			checked++
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/") && !r.allowed(d) {
					t.Errorf("%s imports %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
	}
	if checked < 6+2 {
		t.Fatalf("checked only %d packages; the module layout changed?", checked)
	}
}
