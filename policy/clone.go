package policy

import (
	"maps"
	"slices"
)

// Clone returns a deep copy of s: nothing the copy holds is shared with s,
// so Apply on the copy never changes s. Replicas apply to a copy and swap it
// in, so that readers always see one whole state; a JSON round trip did the
// same at a cost that grew with the state and dominated commit latency.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	return s.clone(true)
}

// clone is Clone, or Successor when deep is false.
func (s *State) clone(deep bool) *State {
	c := *s
	if deep {
		c.Sites = cloneMap(s.Sites, func(v Site) Site { return v })
		c.Cameras = cloneMap(s.Cameras, func(v Camera) Camera {
			v.Tags = slices.Clone(v.Tags)
			return v
		})
	} else {
		c.Sites, c.Cameras = maps.Clone(s.Sites), maps.Clone(s.Cameras)
	}
	c.Nodes = cloneMap(s.Nodes, func(v Node) Node {
		v.Custodian = slices.Clone(v.Custodian)
		return v
	})
	c.Users = cloneMap(s.Users, func(v User) User {
		v.PublicKey = slices.Clone(v.PublicKey)
		v.Passkeys = clonePasskeys(v.Passkeys)
		return v
	})
	c.Grants = cloneMap(s.Grants, func(v Grant) Grant {
		v.Actions = slices.Clone(v.Actions)
		return v
	})
	c.Invites = cloneMap(s.Invites, func(v Invite) Invite { return v })
	c.Requests = cloneMap(s.Requests, cloneRequest)
	c.SubjectAccess = cloneMap(s.SubjectAccess, cloneSubjectAccess)
	if s.Controller != nil {
		ctl := *s.Controller
		c.Controller = &ctl
	}
	c.Breaches = cloneMap(s.Breaches, cloneBreach)
	if s.AlertRules != nil {
		r := *s.AlertRules
		c.AlertRules = &r
	}
	c.Proposals = cloneMap(s.Proposals, func(v Proposal) Proposal {
		v.Body = slices.Clone(v.Body)
		v.Approvals = cloneApprovals(v.Approvals)
		return v
	})
	c.PasskeyRoles = slices.Clone(s.PasskeyRoles)
	c.Rescue = slices.Clone(s.Rescue)
	c.Ledger = cloneEnvelopes(s.Ledger)
	c.Seen = maps.Clone(s.Seen)
	c.Recovery = slices.Clone(s.Recovery)
	c.DataJurisdictions = slices.Clone(s.DataJurisdictions)
	return &c
}

// Successor returns a copy of s for Apply to change and swap in, as the
// replicas do for every command: Clone, but the Sites and Cameras maps are
// copied without copying their values, which Apply only ever replaces or
// deletes, never changes in place. These are the maps that grow with a
// federation, and copying every value of them was most of a replica's
// work per command. Readers must not change a state they read (as
// before), so a value shared by two states is never written again.
func (s *State) Successor() *State {
	if s == nil {
		return nil
	}
	return s.clone(false)
}

// cloneMap copies a map of pointers, each value copied by deep (which must
// copy what the value holds by reference). A nil map stays nil.
func cloneMap[V any](m map[string]*V, deep func(V) V) map[string]*V {
	if m == nil {
		return nil
	}
	out := make(map[string]*V, len(m))
	for k, v := range m {
		if v == nil {
			out[k] = nil
			continue
		}
		c := deep(*v)
		out[k] = &c
	}
	return out
}

// cloneEnvelopes copies envelopes and their bytes.
func cloneEnvelopes(es []Envelope) []Envelope {
	if es == nil {
		return nil
	}
	out := make([]Envelope, len(es))
	for i, e := range es {
		out[i] = Envelope{Body: slices.Clone(e.Body), Sig: slices.Clone(e.Sig)}
	}
	return out
}

// sortedCopies returns copies (made by clone) of the values of m that keep
// accepts, sorted by key: what the State's listing methods hand out, so no
// caller can change the replica through them.
func sortedCopies[V any](m map[string]*V, clone func(V) V, keep func(*V) bool) []*V {
	var out []*V
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; keep(v) {
			c := clone(*v)
			out = append(out, &c)
		}
	}
	return out
}
