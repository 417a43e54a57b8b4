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

	// One SetPeers at a time, callbacks included, so that a "removed"
	// callback can never arrive after a later call re-added the peer.
	m.setMu.Lock()
	defer m.setMu.Unlock()

	removed, err := m.removePeers(want)
	m.notifyRemoved(removed)
	if err != nil {
		return err
	}
	added, err := m.addPeers(desired)
	for _, p := range added {
		m.logf("mesh: added peer %s (%s)", p.Name, p.PublicKey.ShortString())
	}
	if err != nil {
		return err
	}
	if m.gossip != nil && len(added) > 0 {
		m.gossip.join(added)
	}
	return nil
}

// removePeers takes every peer not in want out of WireGuard and our books,
// and closes their tracked connections. Removal is applied on its own, before
// anything is added, so that a failure later can never leave a revoked peer
// in place.
func (m *Mesh) removePeers(want map[[32]byte]Peer) ([]Peer, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	var cfg strings.Builder
	var removed []Peer
	for k, old := range m.peers {
		if _, ok := want[k.Raw32()]; !ok {
			fmt.Fprintf(&cfg, "public_key=%s\nremove=true\n", k.WireGuardHex())
			removed = append(removed, old)
		}
	}
	if len(removed) == 0 {
		m.mu.Unlock()
		return nil, nil
	}
	err := m.dev.IpcSet(cfg.String())
	if err != nil {
		// wireguard-go applies a set line by line, so some removals may
		// have happened: retry each peer alone, and whatever the outcome
		// forget them all and cut their connections (fail closed).
		err = nil
		for _, p := range removed {
			if e := m.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", p.PublicKey.WireGuardHex())); e != nil {
				err = e
			}
		}
	}
	var cut []*trackedConn
	for _, p := range removed {
		a := m.AddrOf(p.PublicKey)
		delete(m.peers, p.PublicKey)
		delete(m.byAddr, a)
		m.relayForget(p.PublicKey)
		for c := range m.conns[a] {
			cut = append(cut, c)
		}
	}
	m.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
	if err != nil {
		return removed, fmt.Errorf("mesh: remove peers: %w", err)
	}
	return removed, nil
}

// addPeers adds new peers and updates changed endpoints. Every peer line
// carries its allowed IP, so a peer WireGuard lost is recreated whole.
func (m *Mesh) addPeers(desired []Peer) ([]Peer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var cfg strings.Builder
	var added, changed []Peer
	for _, p := range desired {
		old, had := m.peers[p.PublicKey]
		if had && old.Endpoint == p.Endpoint && old.Name == p.Name {
			continue
		}
		fmt.Fprintf(&cfg, "public_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/128\n", p.PublicKey.WireGuardHex(), m.AddrOf(p.PublicKey))
		if ep := m.endpointConfig(p); ep != "" {
			fmt.Fprintf(&cfg, "endpoint=%s\n", ep)
		}
		if had {
			changed = append(changed, p)
		} else {
			added = append(added, p)
		}
	}
	if cfg.Len() == 0 {
		return nil, nil
	}
	if err := m.dev.IpcSet(cfg.String()); err != nil {
		// Nothing is recorded: a peer half-configured in WireGuard without
		// our record can carry no tracked connection, and the next SetPeers
		// removes or completes it.
		return nil, fmt.Errorf("mesh: set peers: %w", err)
	}
	for _, p := range append(added, changed...) {
		m.peers[p.PublicKey] = p
		m.byAddr[m.AddrOf(p.PublicKey)] = p.PublicKey
	}
	return added, nil
}

func (m *Mesh) notifyRemoved(removed []Peer) {
	if len(removed) == 0 {
		return
	}
	m.mu.Lock()
	watchers := make([]func(Peer), 0, len(m.watchers))
	for _, w := range m.watchers {
		watchers = append(watchers, w)
	}
	m.mu.Unlock()
	for _, p := range removed {
		m.logf("mesh: removed peer %s (%s)", p.Name, p.PublicKey.ShortString())
		for _, w := range watchers {
			w(p)
		}
	}
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
	k, ok := m.byAddr[a.Unmap()]
	if !ok || m.closed {
		return
	}
	p := m.peers[k]
	if p.Endpoint.IsValid() {
		return // configured endpoints win; WireGuard roaming handles moves
	}
	// Only a peer WireGuard has no endpoint for at all: once it has one
	// (learned from the peer's own authenticated packets, or from gossip
	// earlier), a gossiped claim can no longer redirect it.
	if st, err := m.stats(); err != nil || st.peers[k].Endpoint != "" {
		return
	}
	if err := m.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nendpoint=%s\n", k.WireGuardHex(), ep)); err != nil {
		m.logf("mesh: learn endpoint of %s: %v", k.ShortString(), err)
		return
	}
	m.logf("mesh: learned endpoint %s of %s by gossip", ep, k.ShortString())
}
