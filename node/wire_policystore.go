package node

import (
	"github.com/custos-cctv/custos/policy"
)

// ApplyResult is what applying a command returned to its submitter
// (policy.ApplyResult); the join, signing and API code speak it.
type ApplyResult = policy.ApplyResult

// Anchor pins the genesis a node will accept (policy.Anchor); tokens
// and federation.json carry it.
type Anchor = policy.Anchor

// clone copies a state for a dry run (vet, the join check): a Successor,
// as a replica's Apply makes, since the dry run is such an Apply.
func clone(s *policy.State) (*policy.State, error) { return s.Successor(), nil }
