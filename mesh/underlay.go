package mesh

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Candidates: the addresses at which a node may be reached directly, which
// it tells its peers by gossip so that they can probe them (bind.go). They
// are its reflexive addresses (what the relays' STUN answers showed: the
// address outside its NAT) and its interface addresses with the WireGuard
// port (what a node on the same LAN reaches). Loopback counts only on a
// node with nothing else (tests); link-local never, as it needs a zone.

// maxCandidates bounds the candidates a node advertises and accepts from a
// peer's gossip.
const maxCandidates = 8

// localCandidates are this host's unicast interface addresses with port.
func localCandidates(port uint16) []netip.AddrPort {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out, loop []netip.AddrPort
	for _, ia := range ifAddrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsInterfaceLocalMulticast() {
			continue
		}
		if a.IsLoopback() {
			loop = append(loop, netip.AddrPortFrom(a, port))
		} else {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	if len(out) == 0 {
		out = loop
	}
	// IPv4 first: more peers can use it.
	slices.SortStableFunc(out, func(x, y netip.AddrPort) int { return cmp.Compare(boolInt(x.Addr().Is6()), boolInt(y.Addr().Is6())) })
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// advertised merges reflexive and local candidates, reflexive first, at
// most maxCandidates.
func advertised(reflexive, local []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, maxCandidates)
	for _, a := range slices.Concat(reflexive, local) {
		if len(out) < maxCandidates && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// underlayLoop keeps the advertised candidates current: at start, when a
// STUN answer changes them, and every underlayTick (interfaces change);
// and it turns on the persistent keepalive of peers (keepalivePeers).
func (m *Mesh) underlayLoop(changed <-chan struct{}) {
	defer m.wg.Done()
	t := time.NewTicker(underlayTick)
	defer t.Stop()
	for {
		m.refreshCandidates()
		m.keepalivePeers()
		select {
		case <-m.done:
			return
		case <-t.C:
		case <-changed:
		}
	}
}

const underlayTick = 5 * time.Second

// keepalivePeers gives every peer that has completed a handshake a
// persistent keepalive of relayKeepalive, which keeps the NAT mappings of
// a direct path open while it is idle. Not before: wireguard-go sends a
// keepalive as soon as it is turned on, which starts a handshake, and two
// nodes configured at once would start theirs together, collide, and both
// wait 5 s (REKEY_TIMEOUT) to retry.
func (m *Mesh) keepalivePeers() {
	st, err := m.stats()
	if err != nil {
		return
	}
	var cfg strings.Builder
	for k, ps := range st.peers {
		if ps.keepalive == 0 && !ps.LastHandshake.IsZero() {
			fmt.Fprintf(&cfg, "public_key=%s\nupdate_only=true\npersistent_keepalive_interval=%d\n", k.WireGuardHex(), int(relayKeepalive/time.Second))
		}
	}
	if cfg.Len() > 0 {
		if err := m.dev.IpcSet(cfg.String()); err != nil {
			m.logf("mesh: set keepalives: %v", err)
		}
	}
}

func (m *Mesh) refreshCandidates() {
	cands := advertised(m.relay.Reflexive(), localCandidates(m.port))
	if old := m.cands.Load(); old != nil && slices.Equal(*old, cands) {
		return
	}
	m.cands.Store(&cands)
	if m.gossip != nil {
		m.gossip.setCandidates(cands)
	}
}

// learnCandidates hands a current peer's gossiped candidates to the bind.
func (m *Mesh) learnCandidates(a netip.Addr, ep netip.AddrPort, cands []netip.AddrPort) {
	p, ok := m.PeerByAddr(a)
	if !ok || m.relay == nil {
		return
	}
	all := cands
	if ep.IsValid() {
		all = append([]netip.AddrPort{ep}, cands...)
	}
	m.relay.setLearned(p.PublicKey, all)
}

// gossipMeta is what a node tells others about itself: where its WireGuard
// socket is reachable on the underlay. "ep" is the configured endpoint
// (older nodes read only it), "c" the candidates.
type gossipMeta struct {
	Endpoint string   `json:"ep,omitempty"`
	Cands    []string `json:"c,omitempty"`
}

// encodeGossipMeta encodes the metadata, dropping candidates from the end
// until it fits memberlist's limit.
func encodeGossipMeta(ep netip.AddrPort, cands []netip.AddrPort) []byte {
	var meta gossipMeta
	if ep.IsValid() && !ep.Addr().IsUnspecified() {
		meta.Endpoint = ep.String()
	}
	for _, c := range cands {
		meta.Cands = append(meta.Cands, c.String())
	}
	for {
		b, err := json.Marshal(meta)
		if err == nil && len(b) <= memberlist.MetaMaxSize {
			if meta.Endpoint == "" && len(meta.Cands) == 0 {
				return nil
			}
			return b
		}
		if len(meta.Cands) == 0 {
			return nil
		}
		meta.Cands = meta.Cands[:len(meta.Cands)-1]
	}
}

// parseGossipMeta decodes a member's metadata, which any member can send:
// only unicast IP:port values with a non-zero port are accepted, at most
// maxCandidates of them; junk entries are dropped. A member could gossip
// false addresses for itself or, since memberlist does not sign alive
// messages, for another member; that can only make us probe, or misdirect,
// packets that stay encrypted to the real key (a denial of service that
// WireGuard's roaming repairs as soon as the real peer speaks), and a
// configured endpoint is never overridden.
func parseGossipMeta(b []byte) (ep netip.AddrPort, cands []netip.AddrPort, ok bool) {
	var meta gossipMeta
	if len(b) == 0 || len(b) > memberlist.MetaMaxSize || json.Unmarshal(b, &meta) != nil {
		return netip.AddrPort{}, nil, false
	}
	ep, _ = parseCandidate(meta.Endpoint)
	for _, s := range meta.Cands {
		if len(cands) == maxCandidates {
			break
		}
		if c, ok := parseCandidate(s); ok && !slices.Contains(cands, c) {
			cands = append(cands, c)
		}
	}
	return ep, cands, ep.IsValid() || len(cands) > 0
}

func parseCandidate(s string) (netip.AddrPort, bool) {
	if len(s) > 64 {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !usableAddrPort(ap) {
		return netip.AddrPort{}, false
	}
	return ap, true
}
