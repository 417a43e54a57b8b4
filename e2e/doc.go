// Package e2e holds the multi-node tests: whole federations of nodes started
// in one test process (userspace mesh on 127.0.0.1), and, later,
// network-namespace scenarios with separate processes. Its bench
// subpackage measures the mesh against its baselines (make bench).
package e2e
