package live

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Live view reaches the node and the recorders only through the interfaces
// it declares: it imports neither package node nor node/recording.
func TestDeps(t *testing.T) {
	// Bounded: go list may wait on the module cache's locks while the rest
	// of the repository's packages build.
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const node = "github.com/custos-cctv/custos/node"
	out, err := exec.CommandContext(c, "go", "list", "-deps", node+"/live").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == node || strings.HasPrefix(dep, node+"/") && dep != node+"/live" && dep != node+"/rpc" {
			t.Errorf("node/live depends on %s; it may import node/rpc only of the node", dep)
		}
	}
}
