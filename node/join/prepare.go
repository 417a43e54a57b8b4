package join

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// Joiner is the directory of a node about to join, as the node readied it
// (its config checked, the directory made, belonging to no federation).
type Joiner struct {
	Dir    string
	Listen netip.AddrPort // the node's underlay UDP address
	// KeyPath is the node key's file (made if absent).
	KeyPath string
	// FederationFile is the file, in Dir, that receives the token's
	// anchor once the join committed.
	FederationFile string
	// CustodianKey makes (or reuses) a datacenter's custodian key and
	// returns its public half.
	CustodianKey func() ([]byte, error)
}

// Prepare readies j's directory to join the federation of a token: the
// node key, the anchor, and the datacenters to contact. It then sends the
// redeem to the datacenters, one after another, until one takes it.
func Prepare(ctx context.Context, j Joiner, t *Token) (policy.ApplyResult, error) {
	if t.signer == "" {
		return policy.ApplyResult{}, errors.New("node: the token was not checked (use DecodeToken)")
	}
	// The token is spent once the join commits: check first that the node
	// can run where it says it will.
	if err := checkListen(j.Listen, t.Role == string(policy.RoleDatacenter)); err != nil {
		return policy.ApplyResult{}, err
	}
	priv, _, err := keys.LoadOrCreateNodeKey(j.KeyPath)
	if err != nil {
		return policy.ApplyResult{}, fmt.Errorf("node: %w", err)
	}
	pub := priv.Public()
	priv.Zero()
	var custodian []byte
	if t.Role == string(policy.RoleDatacenter) {
		if custodian, err = j.CustodianKey(); err != nil {
			return policy.ApplyResult{}, err
		}
	}
	env, err := t.Redeem(pub, j.Listen.String(), custodian, time.Now())
	if err != nil {
		return policy.ApplyResult{}, err
	}
	var res policy.ApplyResult
	var lastErr error
	for _, dc := range t.Datacenters {
		res, lastErr = sendJoin(ctx, dc.Endpoint, env)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return policy.ApplyResult{}, fmt.Errorf("node: no datacenter took the join: %w", lastErr)
	}
	if !res.Applied {
		return res, nil
	}
	// The token's signature was checked only against the key it carries;
	// the node checks that key against the policy once it holds it.
	ji := &Info{Datacenters: t.Datacenters, Voters: t.Voters, Role: t.Role, Invite: t.Invite, Signer: t.signer}
	if err := writeInfo(j.Dir, ji); err != nil {
		return res, err
	}
	ab, _ := json.Marshal(t.Anchor)
	return res, os.WriteFile(filepath.Join(j.Dir, j.FederationFile), ab, 0o600)
}

func sendJoin(ctx context.Context, endpoint string, env policy.Envelope) (policy.ApplyResult, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return policy.ApplyResult{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(env.Marshal()); err != nil {
		return policy.ApplyResult{}, err
	}
	c.(*net.TCPConn).CloseWrite()
	var res policy.ApplyResult
	if err := json.NewDecoder(io.LimitReader(c, 64<<10)).Decode(&res); err != nil {
		return policy.ApplyResult{}, fmt.Errorf("join answer from %s: %w", endpoint, err)
	}
	return res, nil
}

// checkListen binds, and lets go, what the node will listen on: its
// WireGuard UDP port on every address (as the mesh does), and a
// datacenter's join port on TCP.
func checkListen(listen netip.AddrPort, datacenter bool) error {
	u, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(listen.Port())})
	if err != nil {
		return fmt.Errorf("node: cannot listen on UDP port %d (in use, or not permitted): %w; the token is not spent", listen.Port(), err)
	}
	u.Close()
	if datacenter {
		l, err := net.Listen("tcp", listen.String())
		if err != nil {
			return fmt.Errorf("node: cannot take joins on TCP %s (in use, or not this host's address): %w; the token is not spent", listen, err)
		}
		l.Close()
	}
	return nil
}
