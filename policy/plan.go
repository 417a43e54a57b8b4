package policy

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The planners: one per command kind, each validating its command against
// the state and returning the change to make, which Apply runs only once
// every check has passed (a refused command changes nothing).

// plan validates c against the state and returns the change to make.
func (s *State) plan(c *Command) (func(), error) {
	switch c.Kind {
	case KindGenesis:
		return s.planGenesis(c.Genesis)
	case KindAddUser:
		return s.planAddUser(c.User)
	case KindRevokeUser:
		return s.planRevokeUser(c.Name)
	case KindAddSite:
		return s.planAddSite(c.Site)
	case KindAddNode:
		return s.planAddNode(c.Node)
	case KindRevokeNode:
		return s.planRevokeNode(c)
	case KindAddCamera:
		return s.planCamera(c.Camera)
	case KindRemoveCamera:
		return s.planRemoveCamera(c.Name)
	case KindAddGrant:
		return s.planGrant(c.Grant, c)
	case KindRevokeGrant:
		return s.planRevokeGrant(c.Name)
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
	case KindOpenSAR:
		return s.planOpenSAR(c.SAR, c)
	case KindExtendSAR:
		return s.planExtendSAR(c.SARExtension, c)
	case KindCloseSAR:
		return s.planCloseSAR(c.SARClosure, c)
	case KindSetController:
		return s.planSetController(c.Controller, c)
	case KindOpenBreach:
		return s.planOpenBreach(c.Breach, c)
	case KindUpdateBreach:
		return s.planUpdateBreach(c.BreachUpdate, c)
	case KindCloseBreach:
		return s.planCloseBreach(c.BreachClosure, c)
	case KindDraftBreach:
		return s.planDraftBreach(c.BreachDraft, c)
	case KindSetAuditRetention:
		return s.planSetAuditRetention(c.AuditRetention)
	case KindSetAlertRules:
		return s.planSetAlertRules(c.AlertRules)
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
	case KindAddPasskey:
		return s.planAddPasskey(c.PasskeyChange, c)
	case KindRemovePasskey:
		return s.planRemovePasskey(c.PasskeyChange)
	case KindRequirePasskeys:
		return s.planRequirePasskeys(c.PasskeyRequirement, c)
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
	if s.SubjectAccess == nil {
		s.SubjectAccess = map[string]*SubjectAccess{}
	}
	if s.Breaches == nil {
		s.Breaches = map[string]*Breach{}
	}
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
	if c.Added != 0 {
		return nil, fmt.Errorf("camera %q names added %d: the policy sets it", c.Key(), c.Added)
	}
	cam := *c
	cam.Tags = slices.Clone(c.Tags)
	// Apply counts this command in Applied after the change.
	cam.Added = s.Applied + 1
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

// planGenesis founds the federation: its first admin and first datacenter.
func (s *State) planGenesis(g *Genesis) (func(), error) {
	if g == nil {
		return nil, errors.New("no genesis")
	}
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
}

func (s *State) planAddUser(user *User) (func(), error) {
	if user == nil {
		return nil, errors.New("no user")
	}
	if err := s.checkUser(user); err != nil {
		return nil, err
	}
	u := *user
	u.PublicKey = bytes.Clone(user.PublicKey)
	return func() { s.Users[u.Name] = &u }, nil
}

// planRevokeUser keeps at least one admin: a federation without one could
// never change its policy again.
func (s *State) planRevokeUser(name string) (func(), error) {
	u := s.Users[name]
	if u == nil || u.Revoked {
		return nil, fmt.Errorf("no active user %q", name)
	}
	if u.Role == UserAdmin && s.activeAdmins() == 1 {
		return nil, fmt.Errorf("%q is the last admin; add another admin first", name)
	}
	return func() { u.Revoked = true }, nil
}

func (s *State) planAddSite(site *Site) (func(), error) {
	if site == nil {
		return nil, errors.New("no site")
	}
	if err := validName(site.Name); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if s.Sites[site.Name] != nil {
		return nil, fmt.Errorf("site %q exists", site.Name)
	}
	if site.Jurisdiction == "" {
		return nil, errors.New("site needs a jurisdiction (e.g. EU)")
	}
	v := *site
	return func() { s.Sites[v.Name] = &v }, nil
}

func (s *State) planAddNode(node *Node) (func(), error) {
	if node == nil {
		return nil, errors.New("no node")
	}
	if err := s.checkNode(node); err != nil {
		return nil, err
	}
	n := *node
	n.Custodian = bytes.Clone(node.Custodian)
	return func() { s.Nodes[n.Name] = &n }, nil
}

// planRevokeNode marks a node revoked, when and by whom; its name and key
// stay in the policy so that its old footage's seals stay verifiable. A
// store whose site has cameras also gets a draft breach (revokeDraft).
func (s *State) planRevokeNode(c *Command) (func(), error) {
	n := s.Nodes[c.Name]
	if n == nil || n.Revoked {
		return nil, fmt.Errorf("no active node %q", c.Name)
	}
	draft := s.revokeDraft(n, c)
	return func() {
		n.Revoked, n.RevokedAt, n.RevokedBy = true, c.Time.UTC(), c.Signer
		if draft != nil {
			draft()
		}
	}, nil
}

func (s *State) planRemoveCamera(name string) (func(), error) {
	if s.Cameras[name] == nil {
		return nil, fmt.Errorf("no camera %q", name)
	}
	return func() { delete(s.Cameras, name) }, nil
}

func (s *State) planRevokeGrant(name string) (func(), error) {
	g := s.Grants[name]
	if g == nil || g.Revoked {
		return nil, fmt.Errorf("no active grant %q", name)
	}
	return func() { g.Revoked = true }, nil
}
