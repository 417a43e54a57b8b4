// Package keys owns the identities of Custos: node key pairs, the mesh
// address each public key implies, and (in later work) epoch recording keys,
// their Shamir split and custody.
//
// It is pure crypto and key storage: it never touches the network and imports
// nothing of the project (e2e/deps_test.go enforces this). Private
// keys are typed so that they never print, never compare with ==, and compare
// in constant time; callers zero them with Zero when done.
package keys
