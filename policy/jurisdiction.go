package policy

import (
	"fmt"
	"slices"
	"time"
)

// DefaultDataJurisdictions is where recordings, key shares and audit
// journals may be kept when the policy does not say: the EU (GDPR).
var DefaultDataJurisdictions = []string{"EU"}

// DataJurisdictionAllowed reports whether data may be kept in jurisdiction j.
func (s *State) DataJurisdictionAllowed(j string) bool {
	allowed := s.DataJurisdictions
	if len(allowed) == 0 {
		allowed = DefaultDataJurisdictions
	}
	return j != "" && slices.Contains(allowed, j)
}

// ReplicaTarget says whether node name may hold replicas of recordings, key
// shares and audit journals at now (DESIGN §4 invariant 9): a live
// datacenter in an allowed jurisdiction. nil means yes; the error says why
// not, for the audit.
func ReplicaTarget(s *State, name string, now time.Time) error {
	n := s.Nodes[name]
	switch {
	case n == nil:
		return fmt.Errorf("node %q is not in the policy", name)
	case n.Role != RoleDatacenter:
		return fmt.Errorf("node %q is a %s, and only datacenters hold replicas", name, n.Role)
	case !Member(s, name, now):
		return fmt.Errorf("node %q is not a live member", name)
	case !s.DataJurisdictionAllowed(n.Jurisdiction):
		allowed := s.DataJurisdictions
		if len(allowed) == 0 {
			allowed = DefaultDataJurisdictions
		}
		return fmt.Errorf("datacenter %q is in jurisdiction %s; the policy keeps data in %v only", name, n.Jurisdiction, allowed)
	}
	return nil
}
