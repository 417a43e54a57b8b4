package mesh

import (
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/custos-cctv/custos/keys"
)

// greetGrace is how long the peer with the higher key waits before it
// greets: long enough for the lower one's handshake to complete over a
// slow path, short beside WireGuard's 5 s retry it saves.
const greetGrace = 300 * time.Millisecond

// Greet starts a WireGuard handshake with every current peer that has a
// path (an endpoint, or any peer with the relay bind) and no session yet. A node calls it once it has started and set
// its first peers. A peer that tried to reach it while it was down sent its
// handshake initiations to a closed port; WireGuard retries only 5 s
// (REKEY_TIMEOUT) after its last attempt, and until then nothing flows:
// a store that just joined would wait that long for the leader's log. Our
// handshake completes theirs at once: the peer's queued packets (the
// leader's Raft dial) go out as soon as our first keepalive arrives.
//
// Two nodes that start together must not both initiate at one moment (each
// answers the other and drops the answer to its own, then both wait 5 s;
// see gossip.go): the lower key greets at once, the higher one after
// greetGrace, and only the peers it still has no session with by then.
func (m *Mesh) Greet() {
	var first, later []keys.NodePublic
	for _, p := range m.PeerList() {
		if !p.Endpoint.IsValid() && m.relay == nil {
			continue // nowhere to send it: the peer will speak first
		}
		if m.pub.Compare(p.PublicKey) < 0 {
			first = append(first, p.PublicKey)
		} else {
			later = append(later, p.PublicKey)
		}
	}
	m.greet(first)
	if len(later) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(greetGrace)
		defer t.Stop()
		select {
		case <-m.done:
		case <-t.C:
			m.greet(later)
		}
	}()
}

// greet has WireGuard send a keepalive to each peer with no session: with
// no keypair it first initiates a handshake (at most one per peer every
// 5 s, WireGuard's own limit).
func (m *Mesh) greet(peers []keys.NodePublic) {
	if len(peers) == 0 {
		return
	}
	st, err := m.stats()
	if err != nil {
		return
	}
	for _, k := range peers {
		ps, ok := st.peers[k]
		if !ok || !ps.LastHandshake.IsZero() {
			continue // gone meanwhile, or already talking
		}
		if p := m.dev.LookupPeer(device.NoisePublicKey(k.Raw32())); p != nil {
			p.SendKeepalive()
		}
	}
}
