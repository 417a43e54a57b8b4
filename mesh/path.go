package mesh

import (
	"net/netip"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// What the mesh tells of the paths to its peers: the path packets to a
// peer take now, and this node's own side of the underlay (its relays and
// the addresses it advertises). Status shows these rather than the
// endpoint a peer advertised, which behind NAT is an address nobody else
// can reach.

// PathInfo is the path to one peer as the bind sees it.
type PathInfo struct {
	// Kind is "direct", "relay", or "none": nothing heard from the peer on
	// any path within pathFresh.
	Kind string `json:"kind"`
	// Addr is the peer's address on the direct path.
	Addr netip.AddrPort `json:"addr,omitzero"`
	// Relay names the relay on the relay path.
	Relay string `json:"relay,omitempty"`
	// LastRx is when a packet from the peer last arrived on any of its
	// paths (zero: never, or not known without the relay bind).
	LastRx time.Time `json:"last_rx,omitzero"`
}

// String is the form status prints: "direct IP:PORT", "relay NAME", "none".
func (p PathInfo) String() string {
	switch p.Kind {
	case "direct":
		return "direct " + p.Addr.String()
	case "relay":
		return "relay " + p.Relay
	}
	return "none"
}

// pathFresh is how long a path counts as in use after the peer's last
// packet on it. Peers keep a 25 s persistent keepalive (relayKeepalive),
// so a live peer is heard at least this often.
const pathFresh = 30 * time.Second

// sessionFresh: without per-packet times (a peer WireGuard roamed to an
// address the bind does not know as its candidate), a handshake this
// recent stands for a live direct path. WireGuard rekeys every two minutes
// while packets flow, keepalives included.
const sessionFresh = 3 * time.Minute

// UnderlayStatus is this node's side of the underlay.
type UnderlayStatus struct {
	// Candidates are the addresses this node advertises for direct paths.
	Candidates []string `json:"candidates,omitempty"`
	// Reflexive is this node's address as the first relay's STUN answer
	// showed it ("" before any answer).
	Reflexive string `json:"reflexive,omitempty"`
	// Relays are the relays, in order of preference.
	Relays []RelayState `json:"relays,omitempty"`
	// Home is the first connected relay ("" if none is).
	Home string `json:"home,omitempty"`
}

// RelayState is one relay's session.
type RelayState struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

// Path returns the path to pub.
func (m *Mesh) Path(pub keys.NodePublic) PathInfo {
	st, err := m.stats()
	if err != nil {
		return PathInfo{Kind: "none"}
	}
	return m.pathOf(pub, st.peers[pub], time.Now())
}

// pathOf decides the path from the bind's per-peer state and, for what the
// bind cannot know, WireGuard's own (ps, from the same UAPI read as the
// rest of a status).
func (m *Mesh) pathOf(pub keys.NodePublic, ps PeerStatus, wall time.Time) PathInfo {
	plain := func() PathInfo {
		ap, err := netip.ParseAddrPort(ps.Endpoint)
		if err != nil || ps.LastHandshake.IsZero() || wall.Sub(ps.LastHandshake) > sessionFresh {
			return PathInfo{Kind: "none", LastRx: ps.LastHandshake}
		}
		return PathInfo{Kind: "direct", Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), LastRx: ps.LastHandshake}
	}
	if m.relay == nil {
		return plain()
	}
	p := m.relay.peers.Load().byKey[derpKey(pub)]
	if p == nil {
		return PathInfo{Kind: "none"}
	}
	now := nanotime()
	toWall := func(ns int64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return wall.Add(-time.Duration(now - ns))
	}
	var last int64
	var freshest *candidate
	for _, c := range *p.cands.Load() {
		if rx := c.lastRx.Load(); rx > last {
			last, freshest = rx, c
		}
	}
	relayRx := p.lastRelayRx.Load()
	lastRx := toWall(max(last, relayRx))
	fresh := func(ns int64) bool { return ns != 0 && now-ns < int64(pathFresh) }

	direct := PathInfo{Kind: "direct", LastRx: lastRx}
	relay := PathInfo{Kind: "relay", LastRx: lastRx}
	if c := p.lastRelay.Load(); c != nil {
		relay.Relay = c.cfg.Name
	}
	e := p.sentVia.Load()
	switch {
	case e != nil && e.cand != nil && fresh(e.cand.lastRx.Load()):
		// WireGuard sends to the candidate its latest authenticated
		// packet came from, and that candidate is still heard.
		direct.Addr = e.cand.addr
		return direct
	case e != nil && e.path == pathRelay && fresh(relayRx):
		return relay
	case !strings.HasPrefix(ps.Endpoint, relayKeyPrefix) && ps.Endpoint != "":
		// WireGuard roamed the peer to an address that is none of its
		// candidates (a NAT mapping gossip has not told yet).
		return plain()
	case fresh(relayRx):
		return relay
	case freshest != nil && fresh(last):
		direct.Addr = freshest.addr
		return direct
	}
	return PathInfo{Kind: "none", LastRx: lastRx}
}

// Underlay returns this node's relays and advertised addresses; empty for
// a mesh without the relay bind.
func (m *Mesh) Underlay() UnderlayStatus {
	var u UnderlayStatus
	if m.relay == nil {
		return u
	}
	if c := m.cands.Load(); c != nil {
		for _, a := range *c {
			u.Candidates = append(u.Candidates, a.String())
		}
	}
	if r := m.relay.Reflexive(); len(r) > 0 {
		u.Reflexive = r[0].String()
	}
	if run := m.relay.run.Load(); run != nil {
		for _, c := range *run.clients.Load() {
			u.Relays = append(u.Relays, RelayState{Name: c.cfg.Name, URL: c.cfg.URL, Connected: c.up.Load()})
		}
		u.Home = run.home()
	}
	return u
}
