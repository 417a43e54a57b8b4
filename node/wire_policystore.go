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
