package node

import (
	"testing"

	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// smallAuditFS mounts a small tmpfs as dir's audit directory (or skips);
// see nodetest.SmallAuditFS.
func smallAuditFS(t *testing.T, dir string) string { return nodetest.SmallAuditFS(t, dir) }

// fillUp fills dir's file system; see nodetest.FillUp.
func fillUp(t *testing.T, dir string) []string { return nodetest.FillUp(t, dir) }
