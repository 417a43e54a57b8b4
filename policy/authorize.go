package policy

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Decision is Authorize's answer. The zero Decision denies.
type Decision struct {
	Allow  bool
	Reason string
	Grant  string // the grant that allowed it, if any
}

func deny(format string, a ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, a...)}
}

// Authorize decides whether subject may do action on resource at now, by
// now's own clock (each node decides with its own, also when cut off from
// consensus). resource is a camera "site/name" for media actions and ""
// for federation-wide ones (manage, approve, audit). Anything not allowed
// explicitly is denied, with the reason.
func Authorize(s *State, subject Subject, action Action, resource string, now time.Time) Decision {
	if s == nil || s.Federation == "" {
		return deny("no policy: this node has no federation state yet")
	}
	switch subject.Kind {
	case "node":
		return authorizeNode(s, subject.Name, action, resource, now)
	case "user":
		return authorizeUser(s, subject.Name, action, resource, now)
	}
	return deny("unknown subject %q", subject)
}

func authorizeUser(s *State, name string, action Action, resource string, now time.Time) Decision {
	u := s.Users[name]
	switch {
	case u == nil:
		return deny("user %q is not in the policy", name)
	case u.Revoked:
		return deny("user %q is revoked", name)
	}
	// Roles give federation-wide duties, never footage.
	switch action {
	case ActManage:
		if u.Role == UserAdmin {
			return Decision{Allow: true, Reason: "role admin"}
		}
	case ActApprove:
		if u.Role == UserAdmin || u.Role == UserApprover {
			return Decision{Allow: true, Reason: "role " + string(u.Role)}
		}
	case ActAudit:
		if u.Role == UserAdmin || u.Role == UserAuditor {
			return Decision{Allow: true, Reason: "role " + string(u.Role)}
		}
	}
	return byGrant(s, Subject{Kind: "user", Name: name}, action, resource, now)
}

func authorizeNode(s *State, name string, action Action, resource string, now time.Time) Decision {
	n := s.Nodes[name]
	switch {
	case n == nil:
		return deny("node %q is not in the policy", name)
	case n.Revoked:
		return deny("node %q is revoked", name)
	case !n.Window.Contains(now):
		return deny("node %q is outside its membership window %s", name, windowString(n.Window))
	}
	if action == ActReplicate {
		if err := ReplicaTarget(s, name, now); err != nil {
			return deny("%v", err)
		}
		return Decision{Allow: true, Reason: fmt.Sprintf("datacenter in jurisdiction %s", n.Jurisdiction)}
	}
	if n.Role == RoleInstaller {
		// An installer's only right: live view of its own site's cameras,
		// inside its window. Grants cannot widen it (refused at grant time).
		c := s.Cameras[resource]
		if action == ActLive && c != nil && c.Site == n.Site {
			return Decision{Allow: true, Reason: fmt.Sprintf("installer of site %s, inside its window", n.Site)}
		}
		return deny("installer %q may only watch live cameras of site %s", name, n.Site)
	}
	return byGrant(s, Subject{Kind: "node", Name: name}, action, resource, now)
}

// byGrant looks for a live grant; the IDs are visited in order so that the
// answer (and its reason) is the same on every node.
func byGrant(s *State, subj Subject, action Action, resource string, now time.Time) Decision {
	c := s.Cameras[resource]
	if c == nil {
		// Grants give footage, and footage is always of a camera.
		return deny("no camera %q", resource)
	}
	ids := make([]string, 0, len(s.Grants))
	for id := range s.Grants {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var expired string
	for _, id := range ids {
		g := s.Grants[id]
		if g.Revoked || g.Subject != subj || !slices.Contains(g.Actions, action) {
			continue
		}
		if !SelectorMatches(g.Selector, c) {
			continue
		}
		if !g.Window.Contains(now) {
			expired = id
			continue
		}
		return Decision{Allow: true, Reason: fmt.Sprintf("grant %s (%s)", id, g.Purpose), Grant: id}
	}
	if expired != "" {
		return deny("grant %s for %s is outside its window", expired, subj)
	}
	return deny("no grant gives %s %q on %q", subj, action, resource)
}

func windowString(w Window) string {
	f, u := "-", "-"
	if !w.From.IsZero() {
		f = w.From.UTC().Format(time.RFC3339)
	}
	if !w.Until.IsZero() {
		u = w.Until.UTC().Format(time.RFC3339)
	}
	return "[" + f + ", " + u + ")"
}

// Member reports whether node name is a live member at now: in the policy,
// not revoked, inside its window.
func Member(s *State, name string, now time.Time) bool {
	n := s.Nodes[name]
	return n != nil && !n.Revoked && n.Window.Contains(now)
}

// DesiredPeers returns the nodes self may talk to at now, sorted by name
// (DESIGN §5): datacenters, the witness and admin nodes talk to every live
// member; a store talks to them and to the installers of its own site, not
// to other stores; an installer talks to the infrastructure and its own
// site's stores. A node that is not itself a live member gets no peers.
func DesiredPeers(s *State, self string, now time.Time) []*Node {
	if s == nil || !Member(s, self, now) {
		return nil
	}
	me := s.Nodes[self]
	var out []*Node
	for name, n := range s.Nodes {
		if name == self || !Member(s, name, now) {
			continue
		}
		if mayPeer(me, n) && mayPeer(n, me) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func mayPeer(a, b *Node) bool {
	switch a.Role {
	case RoleDatacenter, RoleWitness, RoleAdminNode:
		return true
	case RoleStore:
		switch b.Role {
		case RoleDatacenter, RoleWitness, RoleAdminNode:
			return true
		case RoleInstaller:
			return b.Site == a.Site
		}
	case RoleInstaller:
		switch b.Role {
		case RoleDatacenter, RoleWitness, RoleAdminNode:
			return true
		case RoleStore:
			return b.Site == a.Site
		}
	}
	return false
}

// NextChange returns the first window boundary after now at which
// DesiredPeers or Authorize may change by time alone (a node or grant window
// opening or closing), or the zero time if none: nodes re-reconcile then,
// without waiting for a command.
func NextChange(s *State, now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if s == nil {
		return next
	}
	for _, n := range s.Nodes {
		consider(n.Window.From)
		consider(n.Window.Until)
	}
	for _, g := range s.Grants {
		consider(g.Window.From)
		consider(g.Window.Until)
	}
	return next
}
