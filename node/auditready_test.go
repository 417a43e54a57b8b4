package node

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy/audit"
)

// An access that cannot be audited does not happen: with its journal's
// disk full a node refuses to serve; with space again it records and
// serves, without a restart.
func TestNoAccessWithoutAudit(t *testing.T) {
	checkLeaks(t)
	a := prepare(t, "a")
	adir := smallAuditFS(t, a.dir)
	n := start(t, "a", a)
	if err := n.auditReady("node:desk", "live-view", "praha-1/door"); err != nil {
		t.Fatalf("a healthy journal: %v", err)
	}
	// Fill the journal's file system, and fail one append on it.
	fillers := fillUp(t, adir)
	n.auditEvent(audit.Event{Actor: "test", Action: "fill", Object: "x"})
	if n.audit.Failure() == nil {
		t.Fatal("the journal does not know it is failing on a full disk")
	}
	if st, _ := n.Status(); st.AuditFailure == "" {
		t.Error("the node's status does not show the failing journal")
	}
	err := n.auditReady("node:desk", "live-view", "praha-1/door")
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Unavailable {
		t.Fatalf("access with a failing journal: %v", err)
	}
	for _, p := range fillers {
		os.Remove(p)
	}
	if err := n.auditReady("node:desk", "live-view", "praha-1/door"); err != nil {
		t.Fatalf("access once the disk has space again: %v", err)
	}
	if n.audit.Failure() != nil {
		t.Fatal("the journal still fails with space again")
	}
	es, err := n.Audit(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		found = found || e.Action == "audit-check"
	}
	if !found {
		t.Error("the journal's recovery is not recorded")
	}
}
