package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Envelope is a signed command as it travels and sits in the Raft log.
type Envelope struct {
	Body []byte `json:"body"` // JSON of a Command
	Sig  []byte `json:"sig"`  // detached OpenPGP signature over SignedBytes(Body)
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

	KindCreateRequest  = "request.create"  // a footage request (request.go)
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
	c, err := DecodeCommand(env.Body)
	if err != nil {
		return nil, &Refused{Kind: "?", Reason: err.Error()}
	}
	refuse := func(format string, a ...any) (*Command, error) {
		return c, &Refused{ID: c.ID, Kind: c.Kind, Reason: fmt.Sprintf(format, a...)}
	}
	if err := validName(c.ID); err != nil {
		return refuse("command id: %v", err)
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
	kept := s.keepsEnvelope(c)
	// A snapshot drops empty maps (omitempty): make them before writing.
	s.ensureMaps()
	mutate()
	s.keepEnvelope(c, env, kept)
	s.record(c)
	return c, nil
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
}

// record remembers the command for replay protection and moves the clock.
func (s *State) record(c *Command) {
	s.remember(c)
	if c.Time.After(s.Clock) {
		s.Clock = c.Time
	}
	horizon := s.Clock.Add(-ReplayWindow)
	for id, t := range s.Seen {
		if t.Before(horizon) {
			delete(s.Seen, id) // older commands are refused by time anyway
		}
	}
	s.pruneRequests()
	s.pruneProposals()
	s.Applied++
}

// plan validates c against the state and returns the change to make.
func (s *State) plan(c *Command) (func(), error) {
	switch c.Kind {
	case KindGenesis:
		g := c.Genesis
		if err := validName(g.Federation); err != nil {
			return nil, fmt.Errorf("federation: %w", err)
		}
		if g.Admin.Role != UserAdmin {
			return nil, errors.New("the first user must have role admin")
		}
		if err := s.checkUser(&g.Admin); err != nil {
			return nil, err
		}
		if g.Node.Role != RoleDatacenter {
			return nil, errors.New("the first node must be a datacenter")
		}
		if err := s.checkNode(&g.Node); err != nil {
			return nil, err
		}
		if g.Recovery != nil {
			if err := checkCustodianKey(g.Recovery); err != nil {
				return nil, fmt.Errorf("recovery key: %w", err)
			}
		}
		return func() {
			s.Federation = g.Federation
			s.FederationID = FederationID(g.Federation, g.Admin.Fingerprint, g.Node.PublicKey)
			s.ensureMaps()
			u, n := g.Admin, g.Node
			u.PublicKey = bytes.Clone(g.Admin.PublicKey)
			n.Custodian = bytes.Clone(g.Node.Custodian)
			s.Users[u.Name], s.Nodes[n.Name] = &u, &n
			s.Recovery = bytes.Clone(g.Recovery)
		}, nil
	case KindAddUser:
		if c.User == nil {
			return nil, errors.New("no user")
		}
		if err := s.checkUser(c.User); err != nil {
			return nil, err
		}
		u := *c.User
		u.PublicKey = bytes.Clone(c.User.PublicKey)
		return func() { s.Users[u.Name] = &u }, nil
	case KindRevokeUser:
		u := s.Users[c.Name]
		if u == nil || u.Revoked {
			return nil, fmt.Errorf("no active user %q", c.Name)
		}
		if u.Role == UserAdmin && s.activeAdmins() == 1 {
			return nil, fmt.Errorf("%q is the last admin; add another admin first", c.Name)
		}
		return func() { u.Revoked = true }, nil
	case KindAddSite:
		if c.Site == nil {
			return nil, errors.New("no site")
		}
		if err := validName(c.Site.Name); err != nil {
			return nil, fmt.Errorf("site: %w", err)
		}
		if s.Sites[c.Site.Name] != nil {
			return nil, fmt.Errorf("site %q exists", c.Site.Name)
		}
		if c.Site.Jurisdiction == "" {
			return nil, errors.New("site needs a jurisdiction (e.g. EU)")
		}
		site := *c.Site
		return func() { s.Sites[site.Name] = &site }, nil
	case KindAddNode:
		if c.Node == nil {
			return nil, errors.New("no node")
		}
		if err := s.checkNode(c.Node); err != nil {
			return nil, err
		}
		n := *c.Node
		n.Custodian = bytes.Clone(c.Node.Custodian)
		return func() { s.Nodes[n.Name] = &n }, nil
	case KindRevokeNode:
		n := s.Nodes[c.Name]
		if n == nil || n.Revoked {
			return nil, fmt.Errorf("no active node %q", c.Name)
		}
		return func() { n.Revoked = true }, nil
	case KindAddCamera:
		return s.planCamera(c.Camera)
	case KindRemoveCamera:
		if s.Cameras[c.Name] == nil {
			return nil, fmt.Errorf("no camera %q", c.Name)
		}
		name := c.Name
		return func() { delete(s.Cameras, name) }, nil
	case KindAddGrant:
		return s.planGrant(c.Grant, c)
	case KindRevokeGrant:
		g := s.Grants[c.Name]
		if g == nil || g.Revoked {
			return nil, fmt.Errorf("no active grant %q", c.Name)
		}
		return func() { g.Revoked = true }, nil
	case KindCreateInvite:
		return s.planInvite(c.Invite, c.Signer)
	case KindRedeemInvite:
		return s.planRedeem(c.Redeem, c.Time)
	case KindCreateRequest:
		return s.planRequest(c.Request, c)
	case KindApproveRequest:
		return s.planApprove(c.Approval, c)
	case KindDenyRequest:
		return s.planDeny(c.Denial, c)
	case KindSeal:
		return s.planSeal(c.Seal, c)
	case KindPropose:
		return s.planPropose(c.Proposal, c)
	case KindApproveProposal:
		return s.planApproveProposal(c.Approval, c)
	case KindRescueProposal:
		return s.planRescue(c.Rescue, c)
	case KindSetThreshold:
		return s.planSetThreshold(c.Threshold, c)
	case KindSetRecovery:
		return s.planSetRecovery(c.Recovery)
	}
	return nil, fmt.Errorf("unknown command kind %q", c.Kind)
}

func (s *State) ensureMaps() {
	if s.Sites == nil {
		s.Sites = map[string]*Site{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Users == nil {
		s.Users = map[string]*User{}
	}
	if s.Cameras == nil {
		s.Cameras = map[string]*Camera{}
	}
	if s.Grants == nil {
		s.Grants = map[string]*Grant{}
	}
	if s.Invites == nil {
		s.Invites = map[string]*Invite{}
	}
	if s.Requests == nil {
		s.Requests = map[string]*Request{}
	}
	if s.Proposals == nil {
		s.Proposals = map[string]*Proposal{}
	}
}

func (s *State) activeAdmins() int {
	n := 0
	for _, u := range s.Users {
		if u.Role == UserAdmin && !u.Revoked {
			n++
		}
	}
	return n
}

func (s *State) checkUser(u *User) error {
	if err := validName(u.Name); err != nil {
		return fmt.Errorf("user: %w", err)
	}
	if s.Users[u.Name] != nil {
		return fmt.Errorf("user %q exists (revoked users keep their name)", u.Name)
	}
	switch u.Role {
	case UserAdmin, UserApprover, UserAuditor, UserHelpdesk, UserViewer:
	default:
		return fmt.Errorf("user role %q: want admin, approver, auditor, helpdesk or viewer", u.Role)
	}
	fp, err := publicKeyFingerprint(u.PublicKey)
	if err != nil {
		return fmt.Errorf("user %q: %w", u.Name, err)
	}
	if fp != u.Fingerprint {
		return fmt.Errorf("user %q: fingerprint does not match the key", u.Name)
	}
	for _, o := range s.Users {
		if o.Fingerprint == fp {
			return fmt.Errorf("user %q: key already belongs to %q", u.Name, o.Name)
		}
	}
	return nil
}

func (s *State) checkNode(n *Node) error {
	if err := validNodeKey(n.PublicKey); err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	for _, o := range s.Nodes {
		if o.PublicKey == n.PublicKey {
			return fmt.Errorf("node %q: key already belongs to %q", n.Name, o.Name)
		}
	}
	return s.checkNodeWithoutKey(n)
}

// checkNodeWithoutKey checks everything about a node but its key (an
// invite's node has none yet).
func (s *State) checkNodeWithoutKey(n *Node) error {
	if err := validName(n.Name); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if s.Nodes[n.Name] != nil {
		return fmt.Errorf("node %q exists (revoked nodes keep their name)", n.Name)
	}
	switch n.Role {
	case RoleDatacenter, RoleWitness, RoleAdminNode:
	case RoleStore:
		if s.Sites[n.Site] == nil {
			return fmt.Errorf("store %q: no site %q", n.Name, n.Site)
		}
	case RoleInstaller:
		if s.Sites[n.Site] == nil {
			return fmt.Errorf("installer %q: no site %q", n.Name, n.Site)
		}
		if n.Window.Until.IsZero() {
			return fmt.Errorf("installer %q needs a window end: installers are members only while they install", n.Name)
		}
	default:
		return fmt.Errorf("node role %q: want datacenter, witness, store, admin or installer", n.Role)
	}
	if n.Jurisdiction == "" {
		return fmt.Errorf("node %q needs a jurisdiction (e.g. EU)", n.Name)
	}
	if n.Custodian != nil {
		if n.Role != RoleDatacenter {
			return fmt.Errorf("node %q: only datacenters hold custodian keys", n.Name)
		}
		if err := checkCustodianKey(n.Custodian); err != nil {
			return fmt.Errorf("node %q: custodian key: %w", n.Name, err)
		}
	}
	if !n.Window.Until.IsZero() && !n.Window.Until.After(n.Window.From) {
		return fmt.Errorf("node %q: window ends before it starts", n.Name)
	}
	return nil
}

// validNodeKey checks "nodekey:<64 lower-case hex>" without importing keys.
// Only the canonical form is accepted, so that one key has one spelling and
// the duplicate check (a string compare) cannot be fooled by case.
func validNodeKey(k string) error {
	h, ok := bytes.CutPrefix([]byte(k), []byte("nodekey:"))
	if !ok || len(h) != 64 {
		return errors.New("public key must be nodekey:<64 hex digits>")
	}
	var raw [32]byte
	if _, err := hex.Decode(raw[:], h); err != nil || raw == [32]byte{} || hex.EncodeToString(raw[:]) != string(h) {
		return errors.New("public key must be nodekey:<64 lower-case hex digits>, not all zero")
	}
	return nil
}

func (s *State) planCamera(c *Camera) (func(), error) {
	if c == nil {
		return nil, errors.New("no camera")
	}
	if err := validName(c.Name); err != nil {
		return nil, fmt.Errorf("camera: %w", err)
	}
	if s.Sites[c.Site] == nil {
		return nil, fmt.Errorf("camera %q: no site %q", c.Name, c.Site)
	}
	if s.Cameras[c.Key()] != nil {
		return nil, fmt.Errorf("camera %q exists", c.Key())
	}
	if c.Purpose == "" || c.LegalBasis == "" {
		return nil, fmt.Errorf("camera %q needs a purpose and a legal basis (GDPR art. 6)", c.Key())
	}
	for what, text := range map[string]string{"purpose": c.Purpose, "legal basis": c.LegalBasis} {
		if err := checkText(what, text); err != nil {
			return nil, fmt.Errorf("camera %q: %w", c.Key(), err)
		}
	}
	if c.Justification != "" {
		if err := checkText("justification", c.Justification); err != nil {
			return nil, fmt.Errorf("camera %q: %w", c.Key(), err)
		}
	}
	if c.Retention <= 0 {
		return nil, fmt.Errorf("camera %q: retention must be positive (default %v)", c.Key(), DefaultRetention)
	}
	if c.Retention > DefaultRetention && len(c.Justification) < 20 {
		return nil, fmt.Errorf("camera %q: retention %v is above the default %v and needs a written justification", c.Key(), c.Retention, DefaultRetention)
	}
	for _, t := range c.Tags {
		if err := validName(t); err != nil {
			return nil, fmt.Errorf("camera %q tag: %w", c.Key(), err)
		}
	}
	if err := validSource(c.Source); err != nil {
		return nil, fmt.Errorf("camera %q: %w", c.Key(), err)
	}
	cam := *c
	cam.Tags = slices.Clone(c.Tags)
	return func() { s.Cameras[cam.Key()] = &cam }, nil
}

func (s *State) planGrant(g *Grant, c *Command) (func(), error) {
	signer := c.Signer
	if g == nil {
		return nil, errors.New("no grant")
	}
	if err := validName(g.ID); err != nil {
		return nil, fmt.Errorf("grant id: %w", err)
	}
	if s.Grants[g.ID] != nil {
		return nil, fmt.Errorf("grant %q exists", g.ID)
	}
	switch g.Subject.Kind {
	case "user":
		u := s.Users[g.Subject.Name]
		if u == nil || u.Revoked {
			return nil, fmt.Errorf("grant %q: no active user %q", g.ID, g.Subject.Name)
		}
		if u.Role == UserHelpdesk && g.Window.Until.IsZero() {
			return nil, fmt.Errorf("grant %q: helpdesk access must be time-boxed (give an end)", g.ID)
		}
	case "node":
		n := s.Nodes[g.Subject.Name]
		if n == nil || n.Revoked {
			return nil, fmt.Errorf("grant %q: no active node %q", g.ID, g.Subject.Name)
		}
		if n.Role == RoleInstaller {
			return nil, fmt.Errorf("grant %q: an installer's access is fixed (live view of its own site during its window)", g.ID)
		}
	default:
		return nil, fmt.Errorf("grant %q: subject kind %q: want user or node", g.ID, g.Subject.Kind)
	}
	if len(g.Actions) == 0 {
		return nil, fmt.Errorf("grant %q gives no action", g.ID)
	}
	for _, a := range g.Actions {
		switch a {
		case ActLive, ActPlayback, ActExport:
		default:
			return nil, fmt.Errorf("grant %q: action %q: grants give live, playback or export (manage, approve and audit come with a user's role)", g.ID, a)
		}
	}
	if err := validSelector(g.Selector); err != nil {
		return nil, fmt.Errorf("grant %q: %w", g.ID, err)
	}
	if !g.Window.Until.IsZero() && !g.Window.Until.After(g.Window.From) {
		return nil, fmt.Errorf("grant %q: window ends before it starts", g.ID)
	}
	if !g.Window.Until.IsZero() && !g.Window.Until.After(c.Time) {
		return nil, fmt.Errorf("grant %q: its window ended at %s, before the command's time %s: it would never give anything",
			g.ID, stamp(g.Window.Until), stamp(c.Time))
	}
	if g.Purpose != "" {
		if err := checkText("purpose", g.Purpose); err != nil {
			return nil, fmt.Errorf("grant %q: %w", g.ID, err)
		}
	}
	ng := *g
	ng.Actions = slices.Clone(g.Actions)
	ng.GrantedBy = signer
	ng.Revoked = false
	return func() { s.Grants[ng.ID] = &ng }, nil
}

func (s *State) planInvite(inv *Invite, signer string) (func(), error) {
	if inv == nil {
		return nil, errors.New("no invite")
	}
	if err := validName(inv.ID); err != nil {
		return nil, fmt.Errorf("invite id: %w", err)
	}
	if s.Invites[inv.ID] != nil {
		return nil, fmt.Errorf("invite %q exists", inv.ID)
	}
	// The node it will create must be valid, except for its key.
	if inv.Jurisdiction != "" && inv.Site != "" {
		return nil, fmt.Errorf("invite %q: a node of site %s has its site's jurisdiction; give a jurisdiction only to a node without a site", inv.ID, inv.Site)
	}
	if inv.Jurisdiction != "" && !validJurisdiction(inv.Jurisdiction) {
		return nil, fmt.Errorf("invite %q: jurisdiction %q: want 2 to 8 upper-case letters (e.g. EU, US)", inv.ID, inv.Jurisdiction)
	}
	probe := Node{Name: inv.Name, Role: inv.Role, Site: inv.Site, Jurisdiction: s.inviteJurisdiction(inv), Window: inv.Window}
	if err := s.checkNodeWithoutKey(&probe); err != nil {
		return nil, fmt.Errorf("invite %q: %w", inv.ID, err)
	}
	if k, err := hex.DecodeString(inv.Key); err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("invite %q: key must be 64 hex digits (an Ed25519 public key)", inv.ID)
	}
	if inv.Expires.IsZero() {
		return nil, fmt.Errorf("invite %q needs an expiry", inv.ID)
	}
	ni := *inv
	ni.CreatedBy, ni.Spent = signer, false
	return func() { s.Invites[ni.ID] = &ni }, nil
}

func (s *State) planRedeem(r *Redeem, at time.Time) (func(), error) {
	if r == nil {
		return nil, errors.New("no redeem payload")
	}
	inv := s.Invites[r.Invite]
	if inv == nil {
		return nil, fmt.Errorf("no invite %q", r.Invite)
	}
	key, _ := hex.DecodeString(inv.Key) // checked when the invite was made
	if len(r.Proof) != ed25519.SignatureSize || !ed25519.Verify(key, RedeemSignedBytes(r), r.Proof) {
		return nil, fmt.Errorf("invite %q: the proof does not verify (wrong secret, or the key or endpoint was changed)", r.Invite)
	}
	if inv.Spent {
		return nil, fmt.Errorf("invite %q was already used", r.Invite)
	}
	if !at.Before(inv.Expires) {
		return nil, fmt.Errorf("invite %q expired at %s", r.Invite, inv.Expires.UTC().Format(time.RFC3339))
	}
	n := Node{Name: inv.Name, PublicKey: r.PublicKey, Role: inv.Role, Site: inv.Site,
		Jurisdiction: s.inviteJurisdiction(inv), Window: inv.Window, Endpoint: r.Endpoint,
		Custodian: bytes.Clone(r.Custodian)}
	if err := s.checkNode(&n); err != nil {
		return nil, fmt.Errorf("invite %q: %w", r.Invite, err)
	}
	return func() {
		inv.Spent = true
		s.Nodes[n.Name] = &n
	}, nil
}

// inviteJurisdiction is the jurisdiction of the node inv creates.
func (s *State) inviteJurisdiction(inv *Invite) string {
	if inv.Site == "" && inv.Jurisdiction != "" {
		return inv.Jurisdiction
	}
	return s.jurisdictionFor(inv.Site)
}

func validJurisdiction(j string) bool {
	if len(j) < 2 || len(j) > 8 {
		return false
	}
	for i := range len(j) {
		if j[i] < 'A' || j[i] > 'Z' {
			return false
		}
	}
	return true
}

func (s *State) jurisdictionFor(site string) string {
	if st := s.Sites[site]; st != nil {
		return st.Jurisdiction
	}
	return "EU"
}

// validSource checks a camera's source URL: rtsp://host[:port]/path or
// synthetic:[?query], and never credentials, which would be replicated to
// every node and kept in every log.
func validSource(src string) error {
	if src == "" {
		return nil
	}
	if len(src) > 1024 {
		return errors.New("source URL longer than 1024 bytes")
	}
	u, err := url.Parse(src)
	if err != nil {
		return errors.New("source is not a URL (want rtsp://HOST[:PORT]/PATH or synthetic:)")
	}
	if u.User != nil {
		return errors.New("the source URL carries credentials; they never enter the policy: add the camera through its store's --dir, which keeps them there")
	}
	switch u.Scheme {
	case "rtsp":
		if u.Host == "" {
			return errors.New("rtsp source without a host")
		}
	case "synthetic":
		if err := validSynthetic(u); err != nil {
			return err
		}
	default:
		return fmt.Errorf("source scheme %q: want rtsp or synthetic", u.Scheme)
	}
	if strings.ContainsAny(src, "\x00\r\n") {
		return errors.New("source URL has control characters")
	}
	return nil
}

// validSynthetic checks a synthetic camera's parameters as the store's
// source reads them (media/source), within what a camera in the policy may
// ask of a store: fps 1..120, scale 1..16, pace=real. A camera the store
// cannot open would never appear; pace=none (a benchmark mode) would flood
// it.
func validSynthetic(u *url.URL) error {
	if u.Opaque != "" || u.Host != "" || u.Path != "" || u.Fragment != "" {
		return errors.New("a synthetic source takes only query parameters, e.g. synthetic:?fps=25")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return errors.New("the synthetic source's query does not parse")
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return fmt.Errorf("synthetic parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "fps":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 120 {
				return fmt.Errorf("synthetic fps=%q: want an integer from 1 to 120", v)
			}
		case "scale":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 16 {
				return fmt.Errorf("synthetic scale=%q: want an integer from 1 to 16", v)
			}
		case "pace":
			if v != "real" {
				return fmt.Errorf("synthetic pace=%q: a camera is paced in real time (pace=none is for benchmarks only)", v)
			}
		default:
			return fmt.Errorf("unknown synthetic parameter %q; known: fps, pace, scale", k)
		}
	}
	return nil
}
