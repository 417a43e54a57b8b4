// Package keys owns the identities of Custos: node key pairs, the mesh
// address each public key implies, admin signing keys, and the recording
// keys: per-(camera, epoch) OpenPGP v6 keys (epoch.go, epoch_keys.go), the
// 2-of-3 Shamir split of their X25519 secret (shamir.go), the custodians
// who hold the shares (custodian*.go), and segment encryption with
// SEIPDv2/AES-256-GCM only (segment*.go). Epoch records are the wire and
// disk format (epoch_record.go) and are untrusted whenever they are read.
// Custodians release shares to a request's one-time key with HPKE
// (release*.go); an export's manifest is signed by the exporter (manifest*.go).
//
// It is pure crypto and key storage: it never touches the network and imports
// nothing of the project (e2e/deps_test.go enforces this). Private
// keys are typed so that they never print, never compare with ==, and compare
// in constant time; callers zero them with Zero when done.
package keys
