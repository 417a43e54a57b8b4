package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/keys"
)

// Relay is one datacenter's relay. Every node keeps a session to every
// relay: there are few datacenters, so this costs a handful of TCP
// connections per node and spares the relays a mesh among themselves (a
// packet is always relayed by a server both ends are connected to).
type Relay struct {
	// Name identifies the relay in status ("relay NAME") and logs.
	Name string
	// URL is its DERP endpoint, "http://ip:port/derp".
	URL string
	// STUN is the datacenter's WireGuard UDP endpoint, which answers STUN
	// binding requests (stun.go); the zero value means none.
	STUN netip.AddrPort
}

// maxRelays bounds the sessions a node keeps; a federation has a few
// datacenters.
const maxRelays = 16

// relayKeepalive is the persistent keepalive of peers with the relay path
// on: NAT mappings of idle UDP flows last 30 s or more in most NATs.
const relayKeepalive = 25 * time.Second

// checkRelays refuses a relay set the bind cannot use as given: a bad name
// or URL, or one relay listed twice.
func checkRelays(rs []Relay) error {
	if len(rs) > maxRelays {
		return fmt.Errorf("mesh: %d relays; at most %d", len(rs), maxRelays)
	}
	names, urls := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		if r.Name == "" || len(r.Name) > 64 || strings.ContainsFunc(r.Name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
			return fmt.Errorf("mesh: relay name %.64q: want 1-64 printable characters", r.Name)
		}
		u, err := checkRelayURL(r.URL)
		if err != nil {
			return err
		}
		if r.STUN.IsValid() && !usableAddrPort(r.STUN) {
			return fmt.Errorf("mesh: relay %q: STUN address %s is not a usable ip:port", r.Name, r.STUN)
		}
		if names[r.Name] {
			return fmt.Errorf("mesh: relay name %q listed twice", r.Name)
		}
		if urls[u] {
			return fmt.Errorf("mesh: relay URL %q listed twice", r.URL)
		}
		names[r.Name], urls[u] = true, true
	}
	return nil
}

// checkRelayURL returns the URL in a form that compares equal for equal
// relays.
func checkRelayURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
		return "", fmt.Errorf("mesh: relay URL %q: want http://host:port/derp", s)
	}
	u.Host = strings.ToLower(u.Host)
	return u.String(), nil
}

// usableAddrPort: a unicast IP (no zone) and a non-zero port.
func usableAddrPort(ap netip.AddrPort) bool {
	a := ap.Addr()
	return ap.IsValid() && ap.Port() != 0 && a.Zone() == "" && !a.IsUnspecified() && !a.IsMulticast()
}

// SetRelays replaces the relay set; the order is the preference (the first
// connected one is the home relay). Sessions to relays that stay are kept.
func (b *RelayBind) SetRelays(rs []Relay) error {
	if err := checkRelays(rs); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.relays = slices.Clone(rs)
	if r := b.run.Load(); r != nil {
		r.setRelays(b.relays)
	}
	b.stun.forgetExcept(rs)
	b.stunSoon()
	return nil
}

// pick is the session to send a peer's packets on: the one its packets
// last came on while that one is connected, else the home relay, else
// (nothing connected) the first, which may be connecting.
func (r *relayRun) pick(p *relayPeer) *relayClient {
	if c := p.lastRelay.Load(); c != nil && c.run == r && c.up.Load() {
		return c
	}
	cs := *r.clients.Load()
	for _, c := range cs {
		if c.up.Load() {
			return c
		}
	}
	if len(cs) > 0 {
		return cs[0]
	}
	return nil
}

// relaySuspect is how long a connected relay may stay silent before the
// session watchdog leaves a peer behind it alone: a healthy relay answers
// the ping every relayPingInterval.
const relaySuspect = relayPingInterval + time.Second

// relayPathSuspect reports whether pub's packets go over a relay that is
// not connected or has been silent past relaySuspect. The repair is then
// the relay failover (a new handshake over the dead relay would be lost,
// and WireGuard retries it only after REKEY_TIMEOUT), not a reset.
func (b *RelayBind) relayPathSuspect(pub keys.NodePublic) bool {
	r := b.run.Load()
	p := b.peers.Load().byKey[derpKey(pub)]
	if r == nil || p == nil {
		return false
	}
	now := nanotime()
	if e := p.sentVia.Load(); e != nil && e.cand != nil && e.cand.confirmed(now) {
		return false // direct
	}
	c := r.pick(p)
	return c == nil || !c.up.Load() || now-c.lastRx.Load() > int64(relaySuspect)
}

// home is the name of the first connected relay, "" if none is.
func (r *relayRun) home() string {
	for _, c := range *r.clients.Load() {
		if c.up.Load() {
			return c.cfg.Name
		}
	}
	return ""
}

// RelayStats counts WireGuard packets (and their bytes) per path since the
// mesh started. Direct counts include the probes sent to unconfirmed
// candidates.
type RelayStats struct {
	DirectTxPackets, DirectTxBytes uint64
	DirectRxPackets, DirectRxBytes uint64
	RelayTxPackets, RelayTxBytes   uint64
	RelayRxPackets, RelayRxBytes   uint64
	// RelayDropped: relay packets dropped (queue full, relay not connected,
	// unknown sender, too large).
	RelayDropped uint64
	// RelayConnected: at least one relay has admitted this node and its
	// connection is up.
	RelayConnected bool
}

type pathCounter struct{ packets, bytes atomic.Uint64 }

func (c *pathCounter) add(p, b uint64) { c.packets.Add(p); c.bytes.Add(b) }

type relayCounters struct {
	directTx, directRx, relayTx, relayRx pathCounter
	relayDropped                         atomic.Uint64
}

// Stats returns the path counters.
func (b *RelayBind) Stats() RelayStats {
	c := &b.stats
	st := RelayStats{
		DirectTxPackets: c.directTx.packets.Load(), DirectTxBytes: c.directTx.bytes.Load(),
		DirectRxPackets: c.directRx.packets.Load(), DirectRxBytes: c.directRx.bytes.Load(),
		RelayTxPackets: c.relayTx.packets.Load(), RelayTxBytes: c.relayTx.bytes.Load(),
		RelayRxPackets: c.relayRx.packets.Load(), RelayRxBytes: c.relayRx.bytes.Load(),
		RelayDropped: c.relayDropped.Load(),
	}
	if r := b.run.Load(); r != nil {
		st.RelayConnected = r.home() != ""
	}
	return st
}

// The mesh's side of the relays.

// newBind returns the device's bind: cfg.Bind or newUDPBind (udpbind.go),
// inside a RelayBind when cfg.Relay is set or relays are given.
func (m *Mesh) newBind(cfg *Config) (conn.Bind, error) {
	bind := cfg.Bind
	if bind == nil {
		bind = newUDPBind()
	}
	if !cfg.Relay && len(cfg.Relays) == 0 {
		return bind, nil
	}
	rb, err := newRelayBind(bind, cfg.PrivateKey, cfg.Relays, m.logf)
	if err != nil {
		return nil, err
	}
	m.underlayChanged = make(chan struct{}, 1)
	rb.stun.notify = func() {
		select {
		case m.underlayChanged <- struct{}{}:
		default:
		}
	}
	m.relay = rb
	return rb, nil
}

// Relay returns the relay bind, or nil when the mesh has no relay path.
func (m *Mesh) Relay() *RelayBind { return m.relay }

// SetRelays replaces the relays at runtime (order = preference; the first
// connected one is home). It needs a mesh started with Config.Relay or
// Config.Relays.
func (m *Mesh) SetRelays(rs []Relay) error {
	if m.relay == nil {
		return errors.New("mesh: SetRelays on a mesh started without Config.Relay")
	}
	return m.relay.SetRelays(rs)
}

// endpointConfig is the UAPI endpoint value for a peer: with the relay, its
// key and candidate, so that the bind can always reach it.
func (m *Mesh) endpointConfig(p Peer) string {
	if m.relay != nil {
		return relayEndpointString(p.PublicKey, p.Endpoint)
	}
	if p.Endpoint.IsValid() {
		return p.Endpoint.String()
	}
	return ""
}

func (m *Mesh) relayForget(pub keys.NodePublic) {
	if m.relay != nil {
		m.relay.forget(pub)
	}
}

func (m *Mesh) closeRelay() {
	if m.relay != nil {
		m.relay.destroy()
	}
}

// uapiShowEndpoint rewrites a keyed endpoint line of a UAPI get for `wg
// show`, which resolves what it reads: the address, or no line at all for a
// peer reached only through the relay.
func uapiShowEndpoint(line []byte) []byte {
	rest, ok := bytes.CutPrefix(line, []byte("endpoint="+relayKeyPrefix))
	if !ok {
		return line
	}
	if _, addr, ok := bytes.Cut(rest, []byte("@")); ok {
		return append([]byte("endpoint="), addr...)
	}
	return nil
}
