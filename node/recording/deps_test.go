package recording

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Recording reaches the node only through Deps: it imports no package of
// the node.
func TestDeps(t *testing.T) {
	// Bounded: go list may wait on the module cache's locks while the rest
	// of the repository's packages build.
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const node = "github.com/custos-cctv/custos/node"
	out, err := exec.CommandContext(c, "go", "list", "-deps", node+"/recording").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == node || strings.HasPrefix(dep, node+"/") && dep != node+"/recording" {
			t.Errorf("node/recording depends on %s; it must import no package of the node", dep)
		}
	}
}
