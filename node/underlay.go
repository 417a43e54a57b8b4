package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/join"
	"github.com/custos-cctv/custos/policy"
)

// The underlay: how a node's WireGuard packets reach its peers when NAT
// stands between them. Every datacenter serves a relay (tailscale's DERP,
// mesh.RelayServer) on TCP at its WireGuard address and port, and every
// member of a federation is a client of every datacenter's relay (a
// federation has few datacenters, so the relays need no mesh of their
// own). The mesh sends over a relay until a direct UDP path answers
// (mesh.RelayBind). The relays come from the committed policy: its live
// datacenters, by name; before a joined node's replica holds the policy,
// from the datacenters its join token named.
//
// A relay carries WireGuard ciphertext between current members and
// authorizes nothing: a member that reaches another through it still meets
// that node's WireGuard peer list (which policy sets) and every service's
// own checks.

// startRelayServer serves a datacenter's relay and join service on TCP at
// its listen address.
func (n *Node) startRelayServer() error {
	ln, err := net.Listen("tcp", n.cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("node: relay and join service on TCP %s (the WireGuard port; in use, or not this host's address): %w", n.cfg.Listen, err)
	}
	n.share = newTCPShare(ln)
	n.relaySrv, err = mesh.NewRelayServer(mesh.RelayServerConfig{Listener: n.share.http, Admit: n.relayAdmits, Logf: n.logf})
	if err != nil {
		n.share.Close()
		n.share = nil
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// relayAdmits lets a key use this datacenter's relay while it belongs to a
// live member of the committed policy: a revoked node, or an installer past
// its window, is dropped at the next recheck (at once on a policy change,
// else within a second).
func (n *Node) relayAdmits(pub keys.NodePublic) bool {
	if n.policy == nil {
		return false
	}
	st := n.policy.State()
	name := st.NameOfKey(pub.String())
	return name != "" && policy.Member(st, name, n.now())
}

// watchRelays keeps the mesh's relays equal to the policy's datacenters and
// has this datacenter's relay recheck its clients after every change.
func (n *Node) watchRelays() {
	defer n.wg.Done()
	var last []mesh.Relay
	first := true
	for {
		changed := n.policy.Changed()
		rs := relaysOf(n.policy.State(), n.now())
		if len(rs) == 0 {
			rs = n.seedRelays
		}
		if first || !slices.Equal(rs, last) {
			if err := n.mesh.SetRelays(rs); err != nil {
				n.logf("node: relays: %v", err)
			} else {
				last, first = rs, false
				n.logf("node: relays: %s", relayNames(rs))
			}
		}
		if n.relaySrv != nil {
			n.relaySrv.Recheck()
		}
		select {
		case <-changed:
		case <-n.stop:
			return
		}
	}
}

// relaysOf lists the live datacenters of st that have an endpoint, by name.
func relaysOf(st *policy.State, now time.Time) []mesh.Relay {
	var out []mesh.Relay
	for name, nd := range st.Nodes {
		if nd.Role != policy.RoleDatacenter || !policy.Member(st, name, now) {
			continue
		}
		if r, ok := relayAt(name, nd.Endpoint); ok {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// relayAt is the relay a datacenter at endpoint serves.
func relayAt(name, endpoint string) (mesh.Relay, bool) {
	ep, err := netip.ParseAddrPort(endpoint)
	if err != nil || ep.Port() == 0 || ep.Addr().IsUnspecified() {
		return mesh.Relay{}, false
	}
	ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
	return mesh.Relay{Name: name, URL: "http://" + ep.String() + "/derp", STUN: ep}, true
}

// seedRelaysOf lists the datacenters a joined node's token named.
func seedRelaysOf(dir string) []mesh.Relay {
	ji, err := join.ReadInfo(dir)
	if err != nil || ji == nil {
		return nil
	}
	var out []mesh.Relay
	for _, d := range ji.Datacenters {
		if r, ok := relayAt(d.Name, d.Endpoint); ok {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func relayNames(rs []mesh.Relay) string {
	if len(rs) == 0 {
		return "none"
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// reachWait is how long a dial waits for a first packet from a peer it has
// not heard from lately, before it says the peer is unreachable.
const reachWait = 5 * time.Second

// dialReach runs dial, cancelling it with an error that names the peer
// and what this node knows of the paths to it once reachWait has passed
// with nothing heard from the peer on any path since the dial began (a
// live peer answers the dial's first packets, or WireGuard's handshake,
// within milliseconds; one that just died may still show its old path).
func (n *Node) dialReach(ctx context.Context, name string, pub keys.NodePublic, dial func(context.Context) (*mesh.QUICConn, error)) (*mesh.QUICConn, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	unreachable := errors.New("unreachable")
	start := time.Now()
	t := time.AfterFunc(reachWait, func() {
		if !n.mesh.Path(pub).LastRx.After(start) {
			cancel(unreachable)
		}
	})
	defer t.Stop()
	c, err := dial(ctx)
	if err == nil {
		return c, nil
	}
	if errors.Is(context.Cause(ctx), unreachable) {
		return nil, fmt.Errorf("cannot reach %s: nothing heard from it on any path in %v (%s); it may be down, or cut off from this node", name, reachWait, n.pathsSummary(pub))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("cannot reach %s: no answer in time (%s)", name, n.pathsSummary(pub))
	}
	return nil, fmt.Errorf("reach %s: %w", name, err)
}

// pathsSummary says, for an error, how this node could reach pub: the
// path last seen, the relays it is connected to and the peer's candidates.
func (n *Node) pathsSummary(pub keys.NodePublic) string {
	var parts []string
	p := n.mesh.Path(pub)
	switch p.Kind {
	case "none":
		if p.LastRx.IsZero() {
			parts = append(parts, "never heard from")
		} else {
			parts = append(parts, "last heard "+time.Since(p.LastRx).Round(time.Second).String()+" ago")
		}
	case "relay":
		parts = append(parts, "path relay "+p.Relay)
	default:
		parts = append(parts, "path direct "+p.Addr.String())
	}
	u := n.mesh.Underlay()
	var up, down []string
	for _, r := range u.Relays {
		if r.Connected {
			up = append(up, r.Name)
		} else {
			down = append(down, r.Name)
		}
	}
	switch {
	case len(u.Relays) == 0:
		parts = append(parts, "no relay configured")
	case len(up) == 0:
		parts = append(parts, "no relay reachable from here ("+strings.Join(down, ", ")+" down)")
	default:
		s := "relays " + strings.Join(up, ", ") + " connected"
		if len(down) > 0 {
			s += "; " + strings.Join(down, ", ") + " down"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
