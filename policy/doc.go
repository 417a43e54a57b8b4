// Package policy will own the replicated state of a federation (sites,
// nodes, admins, cameras, grants, invites, requests) and its signed
// commands, and Authorize(state, subject, action, resource, now), which
// every node calls before serving anything. Deterministic and free of I/O
// and clocks; it imports nothing of the project.
//
// Empty until the replicated-policy issue; until then the mesh takes its
// peers from a static peers file (package node).
package policy
