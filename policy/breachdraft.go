package policy

// Draft breaches: entries of the breach register that events open by
// themselves, so that art. 33(1)'s 72 hours start when the event is
// detected, not when a person notices it. A draft is a breach like any
// other (its clock runs, breach list and status show it, marked draft)
// until an admin confirms it with breach.update, which clears Draft, or
// dismisses it with breach.close and the reason it need not be notified.
//
// Two ways in:
//
//   - Apply itself: node.revoke of a store whose site has cameras opens a
//     draft in the same command (revokeDraft), deterministically, on every
//     replica: a store's key revoked while it holds footage.
//   - breach.draft (BreachDraft), signed by a node with its node key
//     (XEdDSA, the same key that seals its footage) for what only the node
//     can see at run time: a datacenter whose copy of a store's audit
//     journal stops chaining (EventAuditChain), a store refusing a
//     datacenter outside the jurisdictions the policy keeps data in
//     (EventReplicaJurisdiction), a node whose own journal fails
//     verification (EventAuditJournal).
//
// A node can only open drafts: it can never update, close or hide one, and
// it may open only events it can witness, one open entry per (event,
// object), at most MaxOpenDraftsPerNode open drafts at a time. Everything
// else is refused.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"filippo.io/edwards25519/field"
)

// KindDraftBreach is a node's draft of a breach: BreachDraft, signed by
// the node (Signer "node:NAME") with its node key.
const KindDraftBreach = "breach.draft"

// Events a draft breach is opened for (Breach.Event).
const (
	// EventAuditChain: a datacenter's copy of a store's audit journal no
	// longer chains (the store's journal was rewritten). Drafted by a
	// datacenter; the object is the store.
	EventAuditChain = "audit-chain"
	// EventReplicaJurisdiction: a store refused replication to a
	// datacenter in a jurisdiction the policy keeps no data in. Drafted
	// by a store; the object is the datacenter.
	EventReplicaJurisdiction = "replica-jurisdiction"
	// EventAuditJournal: a node's own audit journal failed verification.
	// Drafted by the node; the object is the node itself.
	EventAuditJournal = "audit-journal"
	// EventNodeRevoked: a store was revoked while its site has cameras.
	// Drafted by Apply (node.revoke), never by a node.
	EventNodeRevoked = "node-revoked"
)

const (
	// NodeSignerPrefix starts the Signer of a command a node signs with
	// its node key ("node:NAME"); user names cannot contain ':'.
	NodeSignerPrefix = "node:"
	// MaxOpenDraftsPerNode bounds the drafts one node has open (not yet
	// confirmed or closed).
	MaxOpenDraftsPerNode = 8
	// MaxDraftText bounds a node's description of what it saw, in bytes.
	MaxDraftText = 512
	// DraftSkew is how far after the command's time a detection may be
	// (the nodes' clocks differ; the leader bounds commands by as much).
	DraftSkew = 5 * time.Minute
	// DraftMaxAge is how long before the command's time a detection may
	// be: a node reports at once, or its report is stale.
	DraftMaxAge = 24 * time.Hour
)

// BreachDraft is the payload of breach.draft: what the node saw, of which
// object, and when.
type BreachDraft struct {
	Event    string    `json:"event"`  // one of EventAuditChain, EventReplicaJurisdiction, EventAuditJournal
	Object   string    `json:"object"` // the store, datacenter or node it concerns
	Text     string    `json:"text"`   // what the node saw, at most MaxDraftText bytes
	Detected time.Time `json:"detected"`
}

// authenticateNode checks a command signed by a node: the signer is a live
// member and Envelope.Sig is its XEdDSA signature (64 bytes) over
// SignedBytes(FederationID, body), verified as Ed25519 against the Edwards
// form of its node key.
func (s *State) authenticateNode(c *Command, env Envelope) error {
	if s.Federation == "" {
		return errors.New("no federation: the first command must be genesis")
	}
	name, ok := strings.CutPrefix(c.Signer, NodeSignerPrefix)
	if !ok {
		return fmt.Errorf("%s is signed by a node (signer node:NAME) with its node key, not by user %q", c.Kind, c.Signer)
	}
	n := s.Nodes[name]
	switch {
	case n == nil:
		return fmt.Errorf("signer node %q is not a node of this federation", name)
	case n.Revoked:
		return fmt.Errorf("signer node %q is revoked", name)
	case !Member(s, name, c.Time):
		return fmt.Errorf("signer node %q is not a live member at %s (its window is %s)", name, stamp(c.Time), windowString(n.Window))
	}
	if err := VerifyNodeSignature(n.PublicKey, SignedBytes(s.FederationID, env.Body), env.Sig); err != nil {
		return fmt.Errorf("signature of node %q: %w", name, err)
	}
	return nil
}

// VerifyNodeSignature checks sig, an XEdDSA signature by the node whose
// public key is key ("nodekey:<hex>", an X25519 key), over msg: a plain
// Ed25519 signature against the key's Edwards form, sign bit 0.
func VerifyNodeSignature(key string, msg, sig []byte) error {
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("want a %d-byte XEdDSA signature with the node key, got %d bytes", ed25519.SignatureSize, len(sig))
	}
	if err := validNodeKey(key); err != nil {
		return err
	}
	u, _ := hex.DecodeString(strings.TrimPrefix(key, "nodekey:"))
	ed, err := edwardsOfMontgomery(u)
	if err != nil {
		return fmt.Errorf("node key has no Edwards form: %w", err)
	}
	if !ed25519.Verify(ed, msg, sig) {
		return errors.New("the signature does not verify with the node's key")
	}
	return nil
}

// edwardsOfMontgomery is the Ed25519 public key (sign bit 0) of the X25519
// public key u: y = (u − 1)/(u + 1). It refuses a non-canonical u and
// u = −1, which has no Edwards form (keys/threshold.go does the same).
func edwardsOfMontgomery(u []byte) (ed25519.PublicKey, error) {
	fu, err := new(field.Element).SetBytes(u)
	if err != nil || string(fu.Bytes()) != string(u) {
		return nil, errors.New("not a canonical field element")
	}
	one := new(field.Element).One()
	den := new(field.Element).Add(fu, one)
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, errors.New("u = −1")
	}
	y := new(field.Element).Subtract(fu, one)
	return ed25519.PublicKey(y.Multiply(y, den.Invert(den)).Bytes()), nil
}

// planDraftBreach opens a node's draft.
func (s *State) planDraftBreach(d *BreachDraft, c *Command) (func(), error) {
	if d == nil {
		return nil, errors.New("no breach draft")
	}
	signer := s.Nodes[strings.TrimPrefix(c.Signer, NodeSignerPrefix)]
	if signer == nil { // authenticate refuses it first
		return nil, fmt.Errorf("signer %q is no node", c.Signer)
	}
	if err := s.mayWitness(signer, d); err != nil {
		return nil, fmt.Errorf("breach draft: %w", err)
	}
	if err := checkTextMax("text", d.Text, MaxDraftText); err != nil {
		return nil, fmt.Errorf("breach draft: %w", err)
	}
	switch {
	case d.Detected.IsZero():
		return nil, errors.New("breach draft: needs the time it was detected (the 72-hour clock starts then)")
	case d.Detected.After(c.Time.Add(DraftSkew)):
		return nil, fmt.Errorf("breach draft: detected %s is more than %v after the command's time %s: a breach cannot be detected in the future",
			stamp(d.Detected), DraftSkew, stamp(c.Time))
	case d.Detected.Before(c.Time.Add(-DraftMaxAge)):
		return nil, fmt.Errorf("breach draft: detected %s is more than %v before the command's time %s: a node reports what it detects at once",
			stamp(d.Detected), DraftMaxAge, stamp(c.Time))
	}
	if b := s.openEventBreach(d.Event, d.Object); b != nil {
		return nil, fmt.Errorf("breach draft: a breach for %s of %s is already open: %s (opened by %s)", d.Event, d.Object, b.ID, b.OpenedBy)
	}
	if n := s.openDraftsBy(c.Signer); n >= MaxOpenDraftsPerNode {
		return nil, fmt.Errorf("breach draft: %s has %d open drafts, the most one node may have: an admin confirms them (breach.update) or dismisses them (breach.close) first",
			c.Signer, n)
	}
	detected := d.Detected.UTC()
	if detected.After(c.Time) {
		detected = c.Time.UTC() // within the skew: the clock starts no later than the command
	}
	b := Breach{ID: s.draftID(c.ID), What: fmt.Sprintf("%s (automatic draft by %s): %s", eventSummary(d.Event, d.Object), c.Signer, d.Text),
		Detected: detected, Contact: s.Controller.Contact(), Draft: true, Event: d.Event, Object: d.Object,
		OpenedBy: c.Signer, Opened: c.Time.UTC()}
	if err := checkBreach(&b, c.Time); err != nil {
		return nil, fmt.Errorf("breach draft: %w", err)
	}
	return func() { s.Breaches[b.ID] = &b }, nil
}

// mayWitness checks that signer can see event d itself: deny by default.
func (s *State) mayWitness(signer *Node, d *BreachDraft) error {
	obj := s.Nodes[d.Object]
	switch d.Event {
	case EventAuditChain:
		switch {
		case signer.Role != RoleDatacenter:
			return fmt.Errorf("%s is drafted by a datacenter, which holds the copies of the stores' audit journals; %s is a %s", d.Event, signer.Name, signer.Role)
		case obj == nil || obj.Role != RoleStore:
			return fmt.Errorf("%s: object %q is no store of the policy", d.Event, d.Object)
		}
	case EventReplicaJurisdiction:
		switch {
		case signer.Role != RoleStore:
			return fmt.Errorf("%s is drafted by a store, which refuses to replicate; %s is a %s", d.Event, signer.Name, signer.Role)
		case obj == nil || obj.Role != RoleDatacenter || obj.Revoked:
			return fmt.Errorf("%s: object %q is no datacenter of the policy", d.Event, d.Object)
		case s.DataJurisdictionAllowed(obj.Jurisdiction):
			return fmt.Errorf("%s: datacenter %s is in jurisdiction %s, where the policy keeps data", d.Event, obj.Name, obj.Jurisdiction)
		}
	case EventAuditJournal:
		if d.Object != signer.Name {
			return fmt.Errorf("%s: a node drafts it of its own journal only (%s, not %q)", d.Event, signer.Name, d.Object)
		}
	default:
		return fmt.Errorf("event %q: a node drafts only %s, %s or %s", d.Event, EventAuditChain, EventReplicaJurisdiction, EventAuditJournal)
	}
	return nil
}

// eventSummary says what event of object is.
func eventSummary(event, object string) string {
	switch event {
	case EventAuditChain:
		return "the audit journal of store " + object + " no longer chains onto a datacenter's copy (rewritten?)"
	case EventReplicaJurisdiction:
		return "datacenter " + object + " is outside the jurisdictions the policy keeps data in, and asks for replicas"
	case EventAuditJournal:
		return "the audit journal of node " + object + " failed verification"
	}
	return event + " of " + object
}

// openEventBreach is the open breach drafted for event of object, or nil.
func (s *State) openEventBreach(event, object string) *Breach {
	for _, b := range s.Breaches {
		if b.Closure == nil && b.Event == event && b.Object == object {
			return b
		}
	}
	return nil
}

// openDraftsBy counts the drafts opened by signer that are still drafts.
func (s *State) openDraftsBy(signer string) int {
	n := 0
	for _, b := range s.Breaches {
		if b.Draft && b.Closure == nil && b.OpenedBy == signer {
			n++
		}
	}
	return n
}

// draftID is the ID of the breach a command drafts: "b-auto-" and the
// command's ID (a digest of a long one), and a number if that is taken.
func (s *State) draftID(cmdID string) string {
	base := "b-auto-" + cmdID
	if len(base) > 56 {
		sum := sha256.Sum256([]byte(cmdID))
		base = "b-auto-" + hex.EncodeToString(sum[:8])
	}
	id := base
	for i := 2; s.Breaches[id] != nil; i++ {
		id = fmt.Sprintf("%s-%d", base, i)
	}
	return id
}

// revokeDraft is the draft node.revoke c opens when n is a store whose
// site has cameras, or nil: its node key may be out of the controller's
// hands with the footage it holds.
func (s *State) revokeDraft(n *Node, c *Command) func() {
	if n.Role != RoleStore {
		return nil
	}
	var cams []string
	for _, k := range slices.Sorted(maps.Keys(s.Cameras)) {
		if s.Cameras[k].Site == n.Site {
			cams = append(cams, s.Cameras[k].Name)
		}
	}
	if len(cams) == 0 {
		return nil
	}
	const shown = 16
	list := strings.Join(cams[:min(len(cams), shown)], ", ")
	if len(cams) > shown {
		list += fmt.Sprintf(" and %d more", len(cams)-shown)
	}
	b := Breach{ID: s.draftID(c.ID),
		What: fmt.Sprintf("store %s of site %s was revoked while it holds footage of %d camera(s): %s. Its node key and recordings may be out of the controller's hands: find out why it was revoked, where its disk is, and whether the breach is likely to result in a risk.",
			n.Name, n.Site, len(cams), list),
		Detected: c.Time.UTC(), Contact: s.Controller.Contact(), Draft: true, Event: EventNodeRevoked, Object: n.Name,
		OpenedBy: "custos (automatic: " + KindRevokeNode + " " + c.ID + ")", Opened: c.Time.UTC()}
	if checkBreach(&b, c.Time) != nil {
		return nil // cannot happen: names are short and the time is the command's
	}
	return func() { s.Breaches[b.ID] = &b }
}
