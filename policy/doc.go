// Package policy owns the replicated state of a Custos federation and the
// only ways to change it.
//
// State holds sites, nodes (public key, role, site, jurisdiction, validity
// window), users with their OpenPGP keys and roles (admin, approver, auditor,
// helpdesk, viewer), cameras (purpose, legal basis, retention), grants,
// invites, footage requests with their approvals (request.go) — releases,
// erasures and evidence holds (rights.go) — subject access requests with
// their deadlines (sar.go), the controller and its DPO (controller.go), the
// breach register with its 72-hour clock (breach.go) and how long audit
// entries are kept (auditretention.go). It changes only by Apply, which
// takes a signed Envelope:
//
//	Envelope{Body, Sig}
//	Body = JSON of Command{ID, Time, Signer, Kind, <one payload>}
//	Sig  = detached OpenPGP signature by Signer's key over
//	       "custos/policy/v2\x00" ‖ FederationID ‖ "\x00" ‖ Body
//
// The signed bytes are the bytes carried, so there is no re-encoding to get
// wrong; Body is decoded strictly (unknown fields refused). Every replica runs
// Apply on every command and so verifies every signature itself: a
// compromised leader cannot forge a change. Apply refuses a command signed by
// an unknown or revoked user, by a user whose role lacks the action, a
// replayed ID, or a time outside the replay window, each with a reason. A
// signature counts only as one binary v4 packet, all subpackets hashed, made
// within SignatureSkew of the command's time (openpgp.go).
//
// Once sealed, a federation changes who may approve, administer, vote or
// hold key shares only through proposals that the quorum approves
// (governance.go); the ledger keeps the signed envelopes that prove it to a
// verifier that trusts no node (ledger.go). Roles can be required to approve
// with a WebAuthn passkey enrolled in the policy, whose assertion every
// replica verifies (passkey.go).
//
// Apply is deterministic: time enters only as Command.Time, chosen by the
// proposer and bounded by the consensus leader, and the state's clock
// (State.Clock) only moves forward. The same log gives byte-identical
// Marshal output on every replica.
//
// Authorize(state, subject, action, resource, now) decides every access,
// denying by default with a reason; the zero State denies everything.
// DesiredPeers turns the state into a node's WireGuard peer set.
//
// The package does no I/O, reads no clock and imports nothing of the
// project.
package policy
