package mesh

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// SetPeers makes the WireGuard peer set exactly desired: new peers are
// added, changed endpoints updated, and peers not in desired removed. A
// removed peer's keypairs are dropped by wireguard-go at once, so nothing
// more flows to or from it, and every tracked TCP connection to its address
// is closed so that its users see an error instead of a stall.
//
// A peer with our own key, a zero key or two entries for one key is refused,
// and then nothing is changed.
func (m *Mesh) SetPeers(desired []Peer) error {
	want := make(map[[32]byte]Peer, len(desired))
	for _, p := range desired {
		if p.PublicKey.IsZero() {
			return fmt.Errorf("mesh: peer %q has no public key", p.Name)
		}
		if p.PublicKey == m.pub {
			return fmt.Errorf("mesh: peer %q has this node's own key", p.Name)
		}
		if p.Endpoint.IsValid() && (p.Endpoint.Port() == 0 || p.Endpoint.Addr().IsUnspecified()) {
			return fmt.Errorf("mesh: peer %q endpoint %s is not a usable address", p.Name, p.Endpoint)
		}
		raw := p.PublicKey.Raw32()
		if _, dup := want[raw]; dup {
			return fmt.Errorf("mesh: peer %s listed twice", p.PublicKey.ShortString())
		}
		want[raw] = p
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var cfg strings.Builder
	var removed []Peer
	for k, old := range m.peers {
		if _, ok := want[k.Raw32()]; !ok {
			fmt.Fprintf(&cfg, "public_key=%s\nremove=true\n", k.WireGuardHex())
			removed = append(removed, old)
		}
	}
	for _, p := range desired {
		old, had := m.peers[p.PublicKey]
		if had && old.Endpoint == p.Endpoint {
			continue
		}
		fmt.Fprintf(&cfg, "public_key=%s\n", p.PublicKey.WireGuardHex())
		if !had {
			fmt.Fprintf(&cfg, "replace_allowed_ips=true\nallowed_ip=%s/128\n", m.AddrOf(p.PublicKey))
		}
		if p.Endpoint.IsValid() {
			fmt.Fprintf(&cfg, "endpoint=%s\n", p.Endpoint)
		}
	}
	if cfg.Len() > 0 {
		if err := m.dev.IpcSet(cfg.String()); err != nil {
			m.mu.Unlock()
			return fmt.Errorf("mesh: set peers: %w", err)
		}
	}
	for _, p := range removed {
		delete(m.peers, p.PublicKey)
		delete(m.byAddr, m.AddrOf(p.PublicKey))
	}
	var added []Peer
	for _, p := range desired {
		if _, had := m.peers[p.PublicKey]; !had {
			added = append(added, p)
		}
		m.peers[p.PublicKey] = p
		m.byAddr[m.AddrOf(p.PublicKey)] = p.PublicKey
	}
	var cut []*trackedConn
	for _, p := range removed {
		for c := range m.conns[m.AddrOf(p.PublicKey)] {
			cut = append(cut, c)
		}
	}
	watchers := make([]func(Peer), 0, len(m.watchers))
	for _, w := range m.watchers {
		watchers = append(watchers, w)
	}
	m.mu.Unlock()

	for _, c := range cut {
		c.Close()
	}
	for _, p := range removed {
		m.logf("mesh: removed peer %s (%s)", p.Name, p.PublicKey.ShortString())
		for _, w := range watchers {
			w(p)
		}
	}
	for _, p := range added {
		m.logf("mesh: added peer %s (%s)", p.Name, p.PublicKey.ShortString())
	}
	if m.gossip != nil && len(added) > 0 {
		m.gossip.join(added)
	}
	return nil
}

// OnPeerRemoved registers fn to be called (synchronously, after the peer is
// gone from WireGuard) for every peer SetPeers removes, so that services with
// their own sessions, such as QUIC, can end them. The returned func
// unregisters it.
func (m *Mesh) OnPeerRemoved(fn func(Peer)) (cancel func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watchID++
	id := m.watchID
	m.watchers[id] = fn
	return func() {
		m.mu.Lock()
		delete(m.watchers, id)
		m.mu.Unlock()
	}
}

// PeerByAddr returns the current peer that owns a mesh address.
func (m *Mesh) PeerByAddr(a netip.Addr) (Peer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.byAddr[a.Unmap()]
	if !ok {
		return Peer{}, false
	}
	return m.peers[k], true
}

// PeerList returns the desired peers, sorted by name.
func (m *Mesh) PeerList() []Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Peer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.PublicKey.Compare(b.PublicKey)
	})
	return out
}

// learnEndpoint sets the endpoint of a current peer that has none configured. Gossip calls it; it can never add a peer.
func (m *Mesh) learnEndpoint(a netip.Addr, ep netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.byAddr[a]
	if !ok || m.closed {
		return
	}
	p := m.peers[k]
	if p.Endpoint.IsValid() {
		return // configured endpoints win; WireGuard roaming handles moves
	}
	if err := m.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", k.WireGuardHex(), ep)); err != nil {
		m.logf("mesh: learn endpoint of %s: %v", k.ShortString(), err)
		return
	}
	m.logf("mesh: learned endpoint %s of %s by gossip", ep, k.ShortString())
}
