package mesh

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"tailscale.com/net/stun"
)

// STUN on the WireGuard socket. A node behind NAT learns the address its
// WireGuard socket has outside (the reflexive address) by asking the
// datacenters, whose WireGuard sockets answer STUN binding requests: the
// request must leave from the WireGuard socket itself, or it would show
// another NAT mapping, so both the requests and the answers go through the
// bind, before WireGuard sees a packet. A STUN binding request or response
// never parses as a WireGuard message (the first two bytes differ), and
// only what parses as one is taken out.
//
// Requests go at start, on SetRelays, soon after a relay session comes up
// (the node may have moved), and every stunInterval; a relay that has not
// answered yet is asked again sooner. A response counts only if its
// transaction ID is one we sent and it comes from the address we sent it
// to. Answers are rate limited: the socket should not become a reflector.

const (
	stunInterval      = 20 * time.Second
	stunRetry         = 2 * time.Second
	stunPendingTTL    = 10 * time.Second
	maxStunPending    = 64
	stunAnswersPerSec = 200
)

type stunState struct {
	mu      sync.Mutex
	pending map[stun.TxID]stunPending
	reflex  map[string]netip.AddrPort // by relay name
	notify  func()                    // called when reflex changes; set before Open

	kick chan struct{}

	window   atomic.Int64 // the second answers counts in
	answers  atomic.Int64
	answered atomic.Uint64 // binding requests answered
}

type stunPending struct {
	relay string
	to    netip.AddrPort
	sent  int64
}

func (s *stunState) init() {
	s.pending = map[stun.TxID]stunPending{}
	s.reflex = map[string]netip.AddrPort{}
	s.kick = make(chan struct{}, 1)
}

// stunSoon asks the STUN loop for a round now.
func (b *RelayBind) stunSoon() {
	select {
	case b.stun.kick <- struct{}{}:
	default:
	}
}

// stunLoop sends the requests of one Open.
func (b *RelayBind) stunLoop(r *relayRun) {
	defer r.loops.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	retry := stunRetry
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		case <-b.stun.kick:
			retry = stunRetry
		}
		delay := stunInterval
		if b.stunSend(r) {
			delay, retry = retry, min(2*retry, stunInterval)
		}
		t.Reset(delay)
	}
}

// stunSend sends one request to every relay with a STUN address; missing
// reports whether one of them has not answered yet.
func (b *RelayBind) stunSend(r *relayRun) (missing bool) {
	type request struct {
		ep  conn.Endpoint
		pkt []byte
	}
	var reqs []request
	s := &b.stun
	now := nanotime()
	s.mu.Lock()
	for tx, p := range s.pending {
		if now-p.sent > int64(stunPendingTTL) {
			delete(s.pending, tx)
		}
	}
	for _, c := range *r.clients.Load() {
		to := c.cfg.STUN
		if !to.IsValid() || len(s.pending) >= maxStunPending {
			continue
		}
		if _, ok := s.reflex[c.cfg.Name]; !ok {
			missing = true
		}
		ep, err := b.inner.ParseEndpoint(to.String())
		if err != nil {
			continue
		}
		tx := stun.NewTxID()
		s.pending[tx] = stunPending{relay: c.cfg.Name, to: to, sent: now}
		reqs = append(reqs, request{ep, stun.Request(tx)})
	}
	s.mu.Unlock()
	for _, q := range reqs {
		_ = b.inner.Send([][]byte{q.pkt}, q.ep) // lost or refused: the next round asks again
	}
	return missing
}

// handleSTUN takes a STUN message that arrived on the WireGuard socket: it
// answers a binding request and records the answer to one of ours. It
// reports whether pkt was STUN and is consumed.
func (b *RelayBind) handleSTUN(pkt []byte, ep conn.Endpoint) bool {
	from := endpointAddr(ep)
	if tx, err := stun.ParseBindingRequest(pkt); err == nil {
		if from.IsValid() && b.stun.allowAnswer() {
			if b.inner.Send([][]byte{stun.Response(tx, from)}, ep) == nil {
				b.stun.answered.Add(1)
			}
		}
		return true
	}
	tx, addr, err := stun.ParseResponse(pkt)
	if err != nil {
		return false
	}
	b.stun.gotResponse(tx, addr, from)
	return true
}

func (s *stunState) allowAnswer() bool {
	sec := nanotime() / int64(time.Second)
	if s.window.Swap(sec) != sec {
		s.answers.Store(0)
	}
	return s.answers.Add(1) <= stunAnswersPerSec
}

func (s *stunState) gotResponse(tx stun.TxID, addr, from netip.AddrPort) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	s.mu.Lock()
	p, ok := s.pending[tx]
	if !ok || p.to != from || !usableAddrPort(addr) {
		s.mu.Unlock()
		return
	}
	delete(s.pending, tx)
	changed := s.reflex[p.relay] != addr
	s.reflex[p.relay] = addr
	notify := s.notify
	s.mu.Unlock()
	if changed && notify != nil {
		notify()
	}
}

// forgetExcept drops what relays no longer in rs told.
func (s *stunState) forgetExcept(rs []Relay) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.reflex {
		keep := false
		for _, r := range rs {
			keep = keep || r.Name == name
		}
		if !keep {
			delete(s.reflex, name)
		}
	}
}

// Reflexive returns this node's addresses as the relays' STUN answers
// showed them, distinct, in relay order.
func (b *RelayBind) Reflexive() []netip.AddrPort {
	b.mu.Lock()
	rs := b.relays
	b.mu.Unlock()
	b.stun.mu.Lock()
	defer b.stun.mu.Unlock()
	var out []netip.AddrPort
	for _, r := range rs {
		if a, ok := b.stun.reflex[r.Name]; ok && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
