// Package e2e holds the multi-node tests: whole federations of nodes started
// in one test process (userspace mesh on 127.0.0.1), federations of `custos`
// processes, and fault scenarios with each process in a network namespace of
// its own (netns_*_test.go; root only, `make e2e`). Its bench subpackage
// measures the mesh against its baselines (make bench).
package e2e
