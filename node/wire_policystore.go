package node

import (
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/policy"
)

// ApplyResult is what applying a command returned to its submitter
// (policystore.ApplyResult); the join, signing and API code speak it.
type ApplyResult = policystore.ApplyResult

// Anchor pins the genesis a node will accept (policystore.Anchor); tokens
// and federation.json carry it.
type Anchor = policystore.Anchor

// clone copies a state for a dry run (vet, the join check).
func clone(s *policy.State) (*policy.State, error) { return s.Clone(), nil }
