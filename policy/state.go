package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role of a node in the federation (DESIGN §2).
type NodeRole string

const (
	RoleDatacenter NodeRole = "datacenter"
	RoleWitness    NodeRole = "witness"
	RoleStore      NodeRole = "store"
	RoleAdminNode  NodeRole = "admin"
	RoleInstaller  NodeRole = "installer"
)

// UserRole of a person with an OpenPGP key.
type UserRole string

const (
	UserAdmin    UserRole = "admin"    // changes the policy
	UserApprover UserRole = "approver" // approves footage requests
	UserAuditor  UserRole = "auditor"  // reads audit journals
	UserHelpdesk UserRole = "helpdesk" // nothing unless a support grant is open
	UserViewer   UserRole = "viewer"   // what grants give, nothing more
)

// Action a grant can allow.
type Action string

const (
	ActLive     Action = "live"
	ActPlayback Action = "playback"
	ActExport   Action = "export"
	ActManage   Action = "manage"
	ActApprove  Action = "approve"
	ActAudit    Action = "audit"
	// ActReplicate is a node's right to hold replicas of a store's
	// recordings, key shares and audit journal: a live datacenter in an
	// allowed jurisdiction (ReplicaTarget); no grant gives it.
	ActReplicate Action = "replicate"
)

// DefaultRetention is the Czech authority's and the EDPB's default.
const DefaultRetention = 72 * time.Hour

// ReplayWindow bounds how old a command may be relative to the state's
// clock; IDs are remembered for this long, so a replay is always caught.
const ReplayWindow = 24 * time.Hour

// State is the replicated policy. Its zero value is an empty federation that
// denies everything. Maps are keyed by name (IDs for grants and invites).
type State struct {
	Federation string `json:"federation,omitempty"`
	// FederationID is set by genesis (see FederationID); every signature
	// over a command or a request names it.
	FederationID string             `json:"federation_id,omitempty"`
	Clock        time.Time          `json:"clock,omitzero"` // latest command time applied
	Sites        map[string]*Site   `json:"sites,omitempty"`
	Nodes        map[string]*Node   `json:"nodes,omitempty"`
	Users        map[string]*User   `json:"users,omitempty"`
	Cameras      map[string]*Camera `json:"cameras,omitempty"` // key "site/name"
	Grants       map[string]*Grant  `json:"grants,omitempty"`
	Invites      map[string]*Invite `json:"invites,omitempty"`
	// Requests are footage requests, kept until a replay window after they
	// expire (request.go).
	Requests map[string]*Request `json:"requests,omitempty"`
	// SubjectAccess are the subject access requests by ID, kept for good
	// as the record of how each was answered (sar.go).
	SubjectAccess map[string]*SubjectAccess `json:"subject_access,omitempty"`
	// Controller is who is responsible for the cameras and their DPO
	// (controller.go); nil until controller.set.
	Controller *Controller `json:"controller,omitempty"`
	// Breaches is the breach register by ID, kept for good (breach.go).
	Breaches map[string]*Breach `json:"breaches,omitempty"`
	// AuditRetention is how long audit entries are kept; 0 means
	// DefaultAuditRetention (read it with AuditKeep). AuditJustification
	// is the written reason for a period above the default
	// (auditretention.go).
	AuditRetention     time.Duration `json:"audit_retention,omitempty"`
	AuditJustification string        `json:"audit_justification,omitempty"`
	// AlertRules are the rules that raise alerts from the audit journals
	// (alerts.go); nil means DefaultAlertRules (read them with Alerts).
	AlertRules *AlertRules `json:"alert_rules,omitempty"`
	// PasskeyRoles are the roles whose approvals carry a passkey
	// assertion (passkey.go), sorted; empty: none.
	PasskeyRoles []UserRole `json:"passkey_roles,omitempty"`
	// Threshold is how many approvals a request or a governance proposal
	// needs; 0 means DefaultThreshold.
	Threshold int `json:"threshold,omitempty"`
	// SealedAt ends the bootstrap (governance.go): from then on governance
	// changes are Proposals that need the quorum. Zero: not sealed yet.
	SealedAt time.Time `json:"sealed_at,omitzero"`
	// Rescue are the digests of the unspent rescue codes (governance.go).
	Rescue    []string             `json:"rescue,omitempty"`
	Proposals map[string]*Proposal `json:"proposals,omitempty"`
	// Ledger holds the signed envelopes of genesis and of every governance
	// command, in order (ledger.go): replayed from genesis they prove who
	// may approve, to a verifier that trusts no node.
	Ledger []Envelope `json:"ledger,omitempty"`
	// Recovery is the public half of the controller's offline recovery key,
	// the third custodian of every epoch key (DESIGN §7).
	Recovery []byte `json:"recovery,omitempty"`
	// DataJurisdictions are where segments, key shares and audit journals
	// may go (DESIGN §4 invariant 9); empty means DefaultDataJurisdictions.
	DataJurisdictions []string             `json:"data_jurisdictions,omitempty"`
	Seen              map[string]time.Time `json:"seen,omitempty"` // command IDs within the replay window
	Applied           uint64               `json:"applied"`        // commands applied

	// seenFrom, unless zero, is a time no entry of Seen is before (remember
	// keeps it so), and lets record skip its scan of Seen while nothing can
	// have left the replay window. Not part of the state: a state read
	// from JSON has it zero and scans once.
	seenFrom time.Time
}

type Site struct {
	Name         string `json:"name"`
	Jurisdiction string `json:"jurisdiction"` // e.g. "EU"
}

// Window is a validity interval; a zero bound is open.
type Window struct {
	From  time.Time `json:"from,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// Contains reports whether t is inside [From, Until).
func (w Window) Contains(t time.Time) bool {
	if !w.From.IsZero() && t.Before(w.From) {
		return false
	}
	if !w.Until.IsZero() && !t.Before(w.Until) {
		return false
	}
	return true
}

type Node struct {
	Name         string   `json:"name"`
	PublicKey    string   `json:"public_key"` // "nodekey:<hex>"
	Role         NodeRole `json:"role"`
	Site         string   `json:"site,omitempty"`
	Jurisdiction string   `json:"jurisdiction"`
	Window       Window   `json:"window"`
	Endpoint     string   `json:"endpoint,omitempty"` // public underlay address (datacenters)
	// Custodian is a datacenter's custodian public key (binary OpenPGP):
	// stores encrypt one share of every epoch key to it. Its private half
	// never leaves that datacenter.
	Custodian []byte `json:"custodian,omitempty"`
	Revoked   bool   `json:"revoked,omitempty"`
	// RevokedAt and RevokedBy are the time and signer of the command that
	// revoked the node (of a quorum proposal: its proposer, at its time),
	// for the revoked node's own status to name.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

type User struct {
	Name        string   `json:"name"`
	Role        UserRole `json:"role"`
	PublicKey   []byte   `json:"public_key"`  // OpenPGP public key (binary)
	Fingerprint string   `json:"fingerprint"` // hex, of the primary key
	Revoked     bool     `json:"revoked,omitempty"`
	// Passkeys are the user's enrolled WebAuthn credentials (passkey.go).
	Passkeys []Passkey `json:"passkeys,omitempty"`
}

type Camera struct {
	Site          string        `json:"site"`
	Name          string        `json:"name"`
	Purpose       string        `json:"purpose"`
	LegalBasis    string        `json:"legal_basis"`
	Retention     time.Duration `json:"retention"`
	Justification string        `json:"justification,omitempty"`
	Tags          []string      `json:"tags,omitempty"`
	// Source is where the store of the camera's site records from:
	// rtsp://host[:port]/path or synthetic:[?…]. Never credentials: those
	// stay on the store (see node's camera secrets).
	Source string `json:"source,omitempty"`
	// Added is State.Applied once the command that added the camera was
	// applied: a document stamped with an earlier Applied (a DPIA) does
	// not cover it. Set by Apply; 0 for cameras added before it was kept.
	Added uint64 `json:"added,omitempty"`
}

// Key is the camera's map key and resource name, "site/name".
func (c *Camera) Key() string { return c.Site + "/" + c.Name }

// Grant allows a subject some actions on the cameras a selector matches,
// inside a window, for a purpose.
type Grant struct {
	ID        string   `json:"id"`
	Subject   Subject  `json:"subject"`
	Actions   []Action `json:"actions"`
	Selector  string   `json:"selector"` // "site/cam", "site/*", "tag:name", "*"
	Window    Window   `json:"window"`
	Purpose   string   `json:"purpose,omitempty"`
	GrantedBy string   `json:"granted_by"`
	Revoked   bool     `json:"revoked,omitempty"`
}

// Subject is who asks: a user or a node.
type Subject struct {
	Kind string `json:"kind"` // "user" or "node"
	Name string `json:"name"`
}

func (s Subject) String() string { return s.Kind + ":" + s.Name }

// ParseSubject reads "user:NAME" or "node:NAME".
func ParseSubject(s string) (Subject, error) {
	k, n, ok := strings.Cut(s, ":")
	if !ok || (k != "user" && k != "node") || validName(n) != nil {
		return Subject{}, fmt.Errorf("subject %q: want user:NAME or node:NAME", s)
	}
	return Subject{Kind: k, Name: n}, nil
}

// Invite lets one node join once, inside its window.
type Invite struct {
	ID   string   `json:"id"`
	Role NodeRole `json:"role"`
	Name string   `json:"name"`
	Site string   `json:"site,omitempty"`
	// Jurisdiction of a node without a site (a datacenter); a site's
	// node takes its site's. Empty means "EU".
	Jurisdiction string    `json:"jurisdiction,omitempty"`
	Window       Window    `json:"window"`  // the membership window of the node it creates
	Expires      time.Time `json:"expires"` // the invite itself is void from then on
	// Key is the hex Ed25519 public key of the invite's one-time secret
	// (the secret is the private key's seed, carried only in the token).
	// A redeem proves the secret by signing the joining node's key, so the
	// secret itself never enters the log.
	Key       string `json:"key"`
	CreatedBy string `json:"created_by"`
	Spent     bool   `json:"spent,omitempty"`
}

// Marshal is the canonical encoding of the state: encoding/json writes
// struct fields in declaration order and map keys sorted, so equal states
// give equal bytes.
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// Unmarshal replaces s with a snapshot.
func (s *State) Unmarshal(b []byte) error {
	var n State
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("policy: snapshot: %w", err)
	}
	*s = n
	return nil
}

// SelectorMatches reports whether sel matches camera c.
func SelectorMatches(sel string, c *Camera) bool {
	switch {
	case sel == "*":
		return true
	case strings.HasPrefix(sel, "tag:"):
		return slices.Contains(c.Tags, strings.TrimPrefix(sel, "tag:"))
	default:
		site, cam, ok := strings.Cut(sel, "/")
		if !ok {
			return false
		}
		return site == c.Site && (cam == "*" || cam == c.Name)
	}
}

// validSelector checks a selector's syntax.
func validSelector(sel string) error {
	switch {
	case sel == "*":
		return nil
	case strings.HasPrefix(sel, "tag:"):
		return validName(strings.TrimPrefix(sel, "tag:"))
	default:
		site, cam, ok := strings.Cut(sel, "/")
		if !ok {
			return fmt.Errorf("camera selector %q: want SITE/CAMERA, SITE/*, tag:NAME or *", sel)
		}
		if err := validName(site); err != nil {
			return fmt.Errorf("camera selector %q: %w", sel, err)
		}
		if cam != "*" {
			if err := validName(cam); err != nil {
				return fmt.Errorf("camera selector %q: %w", sel, err)
			}
		}
		return nil
	}
}

// validName accepts 1–63 letters, digits, '-', '_' and '.'.
func validName(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > 63 {
		return fmt.Errorf("name longer than 63 characters")
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("name %q has %q; use letters, digits, '-', '_' or '.'", s, r)
		}
	}
	return nil
}

// NameOfKey is the name of the node whose public key (nodekey:…) is key,
// revoked or not, or "" when no node of the policy has it.
func (s *State) NameOfKey(key string) string {
	for name, n := range s.Nodes {
		if n.PublicKey == key {
			return name
		}
	}
	return ""
}

// StoreOf is the store that records camera at now: the first, by name, of
// the live members that are stores of the camera's site.
func (s *State) StoreOf(camera string, now time.Time) (string, error) {
	c := s.Cameras[camera]
	if c == nil {
		return "", fmt.Errorf("camera %s is no longer in the policy", camera)
	}
	var names []string
	for name, nd := range s.Nodes {
		if nd.Role == RoleStore && nd.Site == c.Site && Member(s, name, now) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("site %s has no live store to fetch %s from", c.Site, camera)
	}
	slices.Sort(names)
	return names[0], nil
}
