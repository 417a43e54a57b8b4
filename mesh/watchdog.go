package mesh

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// The session watchdog repairs a wireguard-go race. When two peers initiate
// handshakes at the same moment, the device's concurrent handshake workers
// can process the peer's initiation and its response to our initiation
// interleaved, and derive a keypair under the wrong index. One direction of
// the session then silently drops every packet while the other works, until
// WireGuard's own timers start a new handshake 15 s later. (Reproduced here
// with two nodes starting together.)
//
// The symptom: we keep sending to a peer whose session is fresh, yet receive
// nothing from it. A healthy one-way flow looks the same for up to 10 s
// (WireGuard's passive keepalive), so a suspect is probed before anything is
// done: a TCP SYN to the peer over the mesh must draw an answer, a SYN-ACK or
// a reset, whatever the peer runs. Only when no answer comes back is the
// peer dropped and re-added inside WireGuard (our peer set, tracked
// connections and endpoint stay as they are), so the next packet starts a
// clean handshake. A peer behind a relay that has gone silent is left to
// the relay failover (relays.go): its session is fine, its path is not.
const (
	watchdogInterval = time.Second
	stuckAfter       = 3 * time.Second
	probeTimeout     = 1500 * time.Millisecond
	// freshSession bounds which sessions are suspects: the race happens at a
	// handshake, and a peer that is really gone has an old handshake.
	freshSession = 30 * time.Second
	// resetBackoff keeps a peer that stays one-way from being reset in a loop.
	resetBackoff = 10 * time.Second
	// probePort is where the probe knocks; nothing needs to listen there.
	probePort = 9
)

type flowSample struct {
	rx, tx    uint64
	rxChanged time.Time
	lastReset time.Time
}

func (m *Mesh) watchdog() {
	defer m.wg.Done()
	t := time.NewTicker(watchdogInterval)
	defer t.Stop()
	samples := map[keys.NodePublic]*flowSample{}
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		st, err := m.stats()
		if err != nil {
			continue
		}
		now := time.Now()
		for k := range samples {
			if _, ok := st.peers[k]; !ok {
				delete(samples, k)
			}
		}
		for k, ps := range st.peers {
			s := samples[k]
			if s == nil {
				samples[k] = &flowSample{rx: ps.RxBytes, tx: ps.TxBytes, rxChanged: now}
				continue
			}
			sending := ps.TxBytes > s.tx
			if ps.RxBytes != s.rx {
				s.rxChanged = now
			}
			s.rx, s.tx = ps.RxBytes, ps.TxBytes
			if sending && now.Sub(s.rxChanged) >= stuckAfter &&
				!ps.LastHandshake.IsZero() && now.Sub(ps.LastHandshake) < freshSession &&
				now.Sub(s.lastReset) >= resetBackoff &&
				(m.relay == nil || !m.relay.relayPathSuspect(k)) {
				s.lastReset = now // also the probe's backoff
				m.wg.Add(1)
				go m.probeAndReset(k, ps.RxBytes, ps.Endpoint)
			}
		}
	}
}

// probeAndReset knocks on the peer and restarts the session if nothing at
// all came back from it.
func (m *Mesh) probeAndReset(k keys.NodePublic, rxBefore uint64, endpoint string) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := m.tnet.dialTCP(ctx, netip.AddrPortFrom(m.AddrOf(k), probePort))
	if err == nil {
		c.Close()
		return // answered
	}
	if ctx.Err() == nil {
		return // refused: the peer answered with a reset
	}
	if st, err := m.stats(); err != nil || st.peers[k].RxBytes != rxBefore {
		return // something arrived meanwhile
	}
	m.resetSession(k, endpoint)
}

// resetSession drops and re-adds a peer in the WireGuard device, keeping its
// allowed IP and current endpoint.
func (m *Mesh) resetSession(k keys.NodePublic, endpoint string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.peers[k]
	if !ok || m.closed {
		return
	}
	cfg := fmt.Sprintf("public_key=%s\nremove=true\npublic_key=%s\nallowed_ip=%s/128\n", k.WireGuardHex(), k.WireGuardHex(), m.AddrOf(k))
	if endpoint != "" {
		cfg += "endpoint=" + endpoint + "\n"
	} else if p.Endpoint.IsValid() {
		cfg += "endpoint=" + p.Endpoint.String() + "\n"
	}
	if err := m.dev.IpcSet(cfg); err != nil {
		m.logf("mesh: reset one-way session with %s: %v", p.Name, err)
		return
	}
	m.resets.Add(1)
	m.logf("mesh: session with %s (%s) carried nothing back for %v and a probe went unanswered; restarted its handshake", p.Name, k.ShortString(), stuckAfter)
}
