package node

import (
	"fmt"

	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy/audit"
)

// auditReady refuses an access while this node's audit journal is failing
// (a full disk, say): an access that cannot be audited does not happen.
// It first tries to record that the journal is being checked, which also
// repairs a journal whose disk has space again; only if that fails is the
// access refused, as unavailable, with the reason.
func (n *Node) auditReady(actor, action, object string) error {
	if n.audit.Failure() == nil {
		return nil
	}
	if _, err := n.audit.Append(audit.Event{Actor: actor, Action: "audit-check", Object: action + " " + object,
		Decision: audit.Allow, Reason: "the journal had failed; it records again"}); err != nil {
		n.logf("node: AUDIT FAILURE: refusing %s of %s by %s: %v", action, object, actor, err)
		return &rpc.Error{Code: rpc.Unavailable, Message: fmt.Sprintf("%s refused: this node cannot audit it now (%v); it serves again once its journal records", action, err)}
	}
	return nil
}
