package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Envelope is a signed command as it travels and sits in the Raft log.
type Envelope struct {
	Body []byte `json:"body"` // JSON of a Command
	Sig  []byte `json:"sig"`  // detached OpenPGP signature over SignedBytes(Body); a node's XEdDSA signature for breach.draft
}

// signingDomain separates policy signatures from any other use of a key.
const signingDomain = "custos/policy/v2\x00"

// SignedBytes is what a user's key signs for a command body in the
// federation whose FederationID is federation: a command signed for one
// federation is refused by every other, even one with the same admin.
func SignedBytes(federation string, body []byte) []byte {
	b := make([]byte, 0, len(signingDomain)+len(federation)+1+len(body))
	b = append(append(append(b, signingDomain...), federation...), 0)
	return append(b, body...)
}

// FederationID names one federation: a digest of its name, its founding
// admin's key and its first datacenter's key, all fixed by genesis. Two
// federations share it only if they share a founder and a first node.
func FederationID(name, adminFingerprint, firstNodeKey string) string {
	h := sha256.Sum256([]byte("custos/federation/v1\x00" + name + "\x00" + adminFingerprint + "\x00" + firstNodeKey))
	return hex.EncodeToString(h[:16])
}

// MaxEnvelope bounds a command: policies are small, and a replica must not
// be made to parse megabytes.
const MaxEnvelope = 64 << 10

// Command kinds.
const (
	KindGenesis      = "genesis"
	KindAddUser      = "user.add"
	KindRevokeUser   = "user.revoke"
	KindAddSite      = "site.add"
	KindAddNode      = "node.add"
	KindRevokeNode   = "node.revoke"
	KindAddCamera    = "camera.add"
	KindRemoveCamera = "camera.remove"
	KindAddGrant     = "grant.add"
	KindRevokeGrant  = "grant.revoke"
	KindCreateInvite = "invite.create"
	KindRedeemInvite = "invite.redeem"

	// A footage request (request.go): a release, an erasure or a hold
	// (rights.go), as its Action says.
	KindCreateRequest  = "request.create"
	KindApproveRequest = "request.approve" // one approval of it
	KindDenyRequest    = "request.deny"    // a veto
)

// Command is one change to the policy. Exactly the payload its Kind names
// is set.
type Command struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Signer string    `json:"signer"` // user name; "" for genesis and invite.redeem
	Kind   string    `json:"kind"`
	// Protocol is the protocol the command needs when that is more than 1
	// (protocol.go); EncodeCommand sets it.
	Protocol int `json:"protocol,omitempty"`

	Genesis *Genesis `json:"genesis,omitempty"`
	User    *User    `json:"user,omitempty"`
	Site    *Site    `json:"site,omitempty"`
	Node    *Node    `json:"node,omitempty"`
	Camera  *Camera  `json:"camera,omitempty"`
	Grant   *Grant   `json:"grant,omitempty"`
	Invite  *Invite  `json:"invite,omitempty"`
	Redeem  *Redeem  `json:"redeem,omitempty"`
	Name    string   `json:"name,omitempty"` // the object of a revoke/remove

	Request  *Request  `json:"request,omitempty"`
	Approval *Approval `json:"approval,omitempty"`
	Denial   *Denial   `json:"denial,omitempty"`

	SAR          *SubjectAccess `json:"sar,omitempty"`           // sar.open (sar.go)
	SARExtension *SARExtension  `json:"sar_extension,omitempty"` // sar.extend
	SARClosure   *SARClosure    `json:"sar_closure,omitempty"`   // sar.close

	Controller     *Controller     `json:"controller,omitempty"`      // controller.set (controller.go)
	Breach         *Breach         `json:"breach,omitempty"`          // breach.open (breach.go)
	BreachUpdate   *BreachUpdate   `json:"breach_update,omitempty"`   // breach.update
	BreachClosure  *BreachClosure  `json:"breach_closure,omitempty"`  // breach.close
	BreachDraft    *BreachDraft    `json:"breach_draft,omitempty"`    // breach.draft, signed by a node (breachdraft.go)
	AuditRetention *AuditRetention `json:"audit_retention,omitempty"` // audit.retention (auditretention.go)
	AlertRules     *AlertRules     `json:"alert_rules,omitempty"`     // alerts.set (alerts.go)

	PasskeyChange      *PasskeyChange      `json:"passkey_change,omitempty"`      // user.passkey.add, user.passkey.remove (passkey.go)
	PasskeyRequirement *PasskeyRequirement `json:"passkey_requirement,omitempty"` // passkey.require

	Seal      *Seal     `json:"seal,omitempty"`
	Proposal  *Proposal `json:"proposal,omitempty"`
	Rescue    *Rescue   `json:"rescue,omitempty"`
	Threshold int       `json:"threshold,omitempty"` // quorum.set
	Recovery  []byte    `json:"recovery,omitempty"`  // recovery.set
}

// Genesis founds a federation: its name, the first admin and the first
// datacenter. It is unsigned and valid only as the first command.
type Genesis struct {
	Federation string `json:"federation"`
	Admin      User   `json:"admin"`
	Node       Node   `json:"node"`
	// Recovery is the public half of the controller's recovery key.
	Recovery []byte `json:"recovery,omitempty"`
}

// Redeem spends an invite: the joining node's key, signed with the invite's
// one-time key (see RedeemSignedBytes).
type Redeem struct {
	Invite    string `json:"invite"`
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint,omitempty"`
	// Custodian is a joining datacenter's custodian public key.
	Custodian []byte `json:"custodian,omitempty"`
	Proof     []byte `json:"proof"` // Ed25519 signature by the invite's key
}

// RedeemSignedBytes is what the invite's one-time key signs: the invite and
// the key, endpoint and custodian key of the node it admits, so a proof seen
// in the log cannot admit any other key or swap the custodian.
func RedeemSignedBytes(r *Redeem) []byte {
	sum := sha256.Sum256(r.Custodian)
	return []byte("custos/invite/v2\x00" + r.Invite + "\x00" + r.PublicKey + "\x00" + r.Endpoint + "\x00" + hex.EncodeToString(sum[:]))
}

// InviteKeyFromSecret returns the one-time key pair of an invite secret
// (a 32-byte Ed25519 seed).
func InviteKeyFromSecret(secret []byte) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	if len(secret) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("invite secret must be %d bytes", ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(secret)
	return priv.Public().(ed25519.PublicKey), priv, nil
}

// EncodeCommand returns the body bytes to sign.
func EncodeCommand(c *Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("policy: encode command: %w", err)
	}
	if ok, _, derived := stampOK(b); !ok {
		c.Protocol = derived
		if derived == 1 {
			c.Protocol = 0
		}
		return EncodeCommand(c)
	}
	return b, nil
}

// DecodeEnvelope parses an envelope from untrusted bytes (the Raft log, a
// forwarded request).
func DecodeEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	if len(b) > MaxEnvelope {
		return e, fmt.Errorf("policy: command of %d bytes exceeds %d", len(b), MaxEnvelope)
	}
	if err := strictUnmarshal(b, &e); err != nil {
		return e, fmt.Errorf("policy: envelope: %w", err)
	}
	return e, nil
}

// Marshal encodes an envelope.
func (e Envelope) Marshal() []byte {
	b, _ := json.Marshal(e) // two byte slices cannot fail to encode
	return b
}

// DecodeCommand parses a command body strictly.
func DecodeCommand(body []byte) (*Command, error) {
	if len(body) > MaxEnvelope {
		return nil, fmt.Errorf("policy: command body too large")
	}
	var c Command
	if err := strictUnmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("policy: command: %w", err)
	}
	return &c, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Refused is the error of a command that Apply refused; nothing changed.
type Refused struct {
	ID, Kind, Reason string
}

func (r *Refused) Error() string {
	return fmt.Sprintf("policy: command %s (%s) refused: %s", r.ID, r.Kind, r.Reason)
}

// ErrRefused matches every *Refused with errors.Is.
var ErrRefused = errors.New("policy: command refused")

func (r *Refused) Is(target error) bool { return target == ErrRefused }

// Apply verifies and applies one envelope. On refusal it returns *Refused
// and leaves the state untouched, so every replica, given the same log,
// ends in the same state.
func (s *State) Apply(env Envelope) (*Command, error) {
	c, mutate, err := s.check(env)
	if err != nil {
		return c, err
	}
	kept := s.keepsEnvelope(c)
	// A snapshot drops empty maps (omitempty): make them before writing.
	s.ensureMaps()
	mutate()
	s.keepEnvelope(c, env, kept)
	s.record(c)
	return c, nil
}

// Check tells what Apply would: the same checks, the signature's included,
// and the same refusal, but it changes nothing, so it runs on a state that
// others read (the leader's check of a command before it enters the log)
// without a copy. Apply changes the state only after every check passed.
func (s *State) Check(env Envelope) (*Command, error) {
	c, _, err := s.check(env)
	return c, err
}

// check runs Apply's checks and returns the change to make, reading s only.
func (s *State) check(env Envelope) (*Command, func(), error) {
	// A newer command stops the replica, so it must first pass every
	// check this release can make of it: who signed it, and when. Else
	// anyone who can append to the log could stop every replica with a
	// line of unsigned JSON.
	newer := checkProtocol(env.Body)
	var c *Command
	var err error
	if newer != nil {
		c, err = decodeNewer(env.Body)
	} else {
		c, err = DecodeCommand(env.Body)
	}
	if err != nil {
		return nil, nil, &Refused{Kind: "?", Reason: err.Error()}
	}
	refuse := func(format string, a ...any) (*Command, func(), error) {
		return c, nil, &Refused{ID: c.ID, Kind: c.Kind, Reason: fmt.Sprintf(format, a...)}
	}
	if err := validName(c.ID); err != nil {
		return refuse("command id: %v", err)
	}
	if newer == nil {
		if ok, declared, derived := stampOK(env.Body); !ok {
			return refuse("the command declares protocol %d; a %s command needs %d", max(declared, 1), c.Kind, derived)
		}
	}
	if c.Time.IsZero() {
		return refuse("command has no time")
	}
	if _, seen := s.Seen[c.ID]; seen {
		return refuse("replay: command id %s was already applied", c.ID)
	}
	if !s.Clock.IsZero() && c.Time.Before(s.Clock.Add(-ReplayWindow)) {
		return refuse("command time %s is older than the replay window (%v before %s)",
			c.Time.UTC().Format(time.RFC3339), ReplayWindow, s.Clock.UTC().Format(time.RFC3339))
	}
	if newer != nil {
		if err := s.authenticateNewer(c, env); err != nil {
			return refuse("%v", err)
		}
		return nil, nil, newer
	}
	if err := s.authenticate(c, env); err != nil {
		return refuse("%v", err)
	}
	if s.Sealed() && s.IsGovernance(c) {
		return refuse("%v: the federation is sealed, so %s of this kind takes %d approvals of approvers other than you: submit it as a proposal (the custos CLI does) for them to approve (custos approve ID)",
			ErrNeedsQuorum, c.Kind, s.ApprovalThreshold())
	}
	mutate, err := s.plan(c)
	if err != nil {
		return refuse("%v", err)
	}
	return c, mutate, nil
}

// authenticate checks who signed: the genesis admin's own key, an invite's
// secret, or the key of a current user whose role may sign the command.
func (s *State) authenticate(c *Command, env Envelope) error {
	switch c.Kind {
	case KindGenesis:
		// Genesis is the trust anchor: the founding datacenter writes it as
		// the first entry of a new log, and joining nodes check it against
		// the admin-signed invite they hold. It can only ever be first.
		if s.Federation != "" {
			return errors.New("the federation already exists")
		}
		if c.Genesis == nil {
			return errors.New("genesis without payload")
		}
		if c.Signer != "" || len(env.Sig) != 0 {
			return errors.New("genesis is not signed (the founding node writes it)")
		}
		return nil
	case KindRedeemInvite:
		if s.Federation == "" {
			return errors.New("no federation")
		}
		if c.Signer != "" || len(env.Sig) != 0 {
			return errors.New("an invite is redeemed with its secret, not a signature")
		}
		return nil // the secret is checked in plan
	case KindDraftBreach:
		return s.authenticateNode(c, env) // signed by a node (breachdraft.go)
	}
	if s.Federation == "" {
		return errors.New("no federation: the first command must be genesis")
	}
	u := s.Users[c.Signer]
	switch {
	case u == nil:
		return fmt.Errorf("signer %q is not a user of this federation", c.Signer)
	case u.Revoked:
		return fmt.Errorf("signer %q is revoked", c.Signer)
	}
	if err := s.roleMaySign(c, u); err != nil {
		return err
	}
	fp, err := VerifySignature(u.PublicKey, SignedBytes(s.FederationID, env.Body), env.Sig, c.Time)
	if err != nil {
		return fmt.Errorf("signature of %q: %w", c.Signer, err)
	}
	if fp != u.Fingerprint {
		return fmt.Errorf("signed by key %s, not %q's key", fp, c.Signer)
	}
	return nil
}

// remember keeps c's ID for replay protection.
func (s *State) remember(c *Command) {
	if s.Seen == nil {
		s.Seen = map[string]time.Time{}
	}
	s.Seen[c.ID] = c.Time
	if c.Time.Before(s.seenFrom) {
		s.seenFrom = c.Time
	}
}

// record remembers the command for replay protection and moves the clock.
func (s *State) record(c *Command) {
	s.remember(c)
	if c.Time.After(s.Clock) {
		s.Clock = c.Time
	}
	horizon := s.Clock.Add(-ReplayWindow)
	if s.seenFrom.IsZero() || s.seenFrom.Before(horizon) {
		var from time.Time
		for id, t := range s.Seen {
			switch {
			case t.Before(horizon):
				delete(s.Seen, id) // older commands are refused by time anyway
			case from.IsZero() || t.Before(from):
				from = t
			}
		}
		s.seenFrom = from
	}
	s.pruneRequests()
	s.pruneProposals()
	s.Applied++
}

// NewCommandID makes a random command ID ("c-" and 16 hex digits); IDs of
// grants, requests, proposals and invites reuse its random part.
func NewCommandID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "c-" + hex.EncodeToString(b)
}
