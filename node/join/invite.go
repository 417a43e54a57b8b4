package join

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// InviteSpec says who may join.
type InviteSpec struct {
	Role policy.NodeRole
	Name string
	Site string
	// Jurisdiction of a node without a site (a datacenter); empty: EU.
	Jurisdiction string
	Window       policy.Window // membership window (installers need an end)
	Expires      time.Time     // the token is void from then on
}

// InviteResult is a join token and, for a datacenter or witness in a
// sealed federation, the proposal that must be approved before it works.
type InviteResult struct {
	Token    string
	Proposal string // "" when the invite is in the policy already
}

// Local is the node running in a data directory, as an admin's tools
// reach it (its API socket).
type Local interface {
	// Anchor is the genesis the directory's node accepts (nil, nil if it
	// belongs to no federation).
	Anchor() (*policy.Anchor, error)
	// FetchPolicy is the node's replica of the policy.
	FetchPolicy(ctx context.Context) (*policy.State, error)
	// SubmitGoverned signs c with k and submits it, or proposes it when
	// st says it is a governance change (then it returns the proposal).
	SubmitGoverned(ctx context.Context, st *policy.State, k *keys.AdminKey, signer string, c *policy.Command) (policy.ApplyResult, string, error)
}

// MakeInvite records an invite in the policy through the node running in
// dir (reached through local), signed by admin, and returns the join
// token. The token holds the invite's one-time secret: hand it over like
// a password. An invite for a datacenter or witness in a sealed federation
// is a governance change: it is proposed, and the token works once the
// quorum approved it.
func MakeInvite(ctx context.Context, dir string, local Local, admin *keys.AdminKey, signer string, spec InviteSpec, now time.Time) (InviteResult, error) {
	var none InviteResult
	anchor, err := local.Anchor()
	if err != nil {
		return none, err
	}
	if anchor == nil {
		return none, fmt.Errorf("node: %s is not part of a federation", dir)
	}
	st, err := local.FetchPolicy(ctx)
	if err != nil {
		return none, err
	}
	var dcs, voters []TokenPeer
	for name, n := range st.Nodes {
		if !policy.Member(st, name, now) || n.Endpoint == "" {
			continue
		}
		p := TokenPeer{Name: name, PublicKey: n.PublicKey, Endpoint: n.Endpoint}
		switch n.Role {
		case policy.RoleDatacenter:
			dcs = append(dcs, p)
		case policy.RoleWitness:
			voters = append(voters, p)
		}
	}
	if len(dcs) == 0 {
		return none, errors.New("node: the policy has no datacenter with an endpoint for a new node to contact")
	}
	byName := func(ps []TokenPeer) {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	}
	byName(dcs)
	byName(voters)
	secret := make([]byte, 32)
	rand.Read(secret)
	defer clear(secret)
	pub, priv, err := policy.InviteKeyFromSecret(secret)
	clear(priv)
	if err != nil {
		return none, err
	}
	id := "inv-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
	c := &policy.Command{Kind: policy.KindCreateInvite, Invite: &policy.Invite{
		ID: id, Role: spec.Role, Name: spec.Name, Site: spec.Site, Jurisdiction: spec.Jurisdiction, Window: spec.Window, Expires: spec.Expires, Key: hex.EncodeToString(pub)}}
	res, proposal, err := local.SubmitGoverned(ctx, st, admin, signer, c)
	if err != nil {
		return none, err
	}
	if !res.Applied {
		return none, &policy.Refused{ID: res.ID, Kind: res.Kind, Reason: res.Reason}
	}
	t := &Token{Version: 1, Anchor: *anchor, Invite: id, Secret: secret, Role: string(spec.Role), Name: spec.Name, Site: spec.Site,
		Expires: spec.Expires, Datacenters: dcs, Voters: voters, AdminKey: admin.PublicKey()}
	token, err := EncodeToken(t, func(msg []byte) ([]byte, error) { return admin.Sign(msg, now) })
	return InviteResult{Token: token, Proposal: proposal}, err
}
