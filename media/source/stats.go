package source

import (
	"sync"
	"time"
)

// State is where a source is in its life.
type State int

const (
	StateIdle       State = iota // Run not called yet, or returned after ctx ended
	StateConnecting              // dialing and negotiating
	StatePlaying                 // frames are flowing
	StateBackoff                 // waiting before the next attempt
	StateFailed                  // Run returned a permanent error
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnecting:
		return "connecting"
	case StatePlaying:
		return "playing"
	case StateBackoff:
		return "backoff"
	case StateFailed:
		return "failed"
	}
	return "unknown"
}

// Stats is a snapshot of a source's health. It never contains a password.
type Stats struct {
	State      State
	Frames     uint64  // frames emitted since the source was opened
	Bytes      uint64  // bytes of Frame.Data emitted
	FPS        float64 // frames per second over the last few seconds
	Bitrate    float64 // bits per second of Frame.Data over the last few seconds
	LastError  string  // the most recent failure, "" if none
	Reconnects int     // connection attempts after the first

	// Transport in use: "tcp", "udp" or "tls" ("" before the first
	// session, and for synthetic sources).
	Transport string
	// FellBack: a TransportAuto source gave up on UDP and uses TCP.
	FellBack bool
	// RTP over UDP: sequence numbers never received, packets that came
	// out of order (put back in order, or dropped when too late), and
	// datagrams from an address other than the camera's (dropped).
	PacketsLost      uint64
	PacketsReordered uint64
	PacketsForeign   uint64
	// CertFingerprint is what an rtsps camera presented last
	// (see Fingerprint).
	CertFingerprint string
}

// statsWindow is how far back FPS and Bitrate look: long enough to smooth a
// GOP's size swings, short enough that a stall shows within seconds.
const statsWindow = 5 * time.Second

// maxSamples bounds the per-frame history; at high rates the window simply
// covers less time, which still yields the right rate.
const maxSamples = 512

type sample struct {
	at    time.Time
	bytes int
}

// tracker accumulates Stats.
type tracker struct {
	clock clock

	mu         sync.Mutex
	state      State
	frames     uint64
	bytes      uint64
	lastErr    string
	reconnects int
	transport  string
	fellBack   bool
	lost       uint64
	reordered  uint64
	foreign    uint64
	certFP     string
	ring       [maxSamples]sample
	head, n    int // ring[head] is the oldest of n samples
}

func (t *tracker) setState(s State) {
	t.mu.Lock()
	t.state = s
	t.mu.Unlock()
}

func (t *tracker) setError(err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	t.mu.Lock()
	t.lastErr = msg
	t.mu.Unlock()
}

func (t *tracker) reconnected() {
	t.mu.Lock()
	t.reconnects++
	t.mu.Unlock()
}

func (t *tracker) setTransport(tr string, fellBack bool) {
	t.mu.Lock()
	t.transport = tr
	t.fellBack = t.fellBack || fellBack
	t.mu.Unlock()
}

func (t *tracker) setCert(fp string) {
	t.mu.Lock()
	t.certFP = fp
	t.mu.Unlock()
}

// packets adds to the UDP loss counters.
func (t *tracker) packets(lost, reordered, foreign uint64) {
	t.mu.Lock()
	t.lost += lost
	t.reordered += reordered
	t.foreign += foreign
	t.mu.Unlock()
}

func (t *tracker) frame(size int) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.frames++
	t.bytes += uint64(size)
	if t.n == maxSamples {
		t.head = (t.head + 1) % maxSamples
		t.n--
	}
	t.ring[(t.head+t.n)%maxSamples] = sample{now, size}
	t.n++
}

func (t *tracker) snapshot() Stats {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Stats{
		State: t.state, Frames: t.frames, Bytes: t.bytes,
		LastError: t.lastErr, Reconnects: t.reconnects,
		Transport: t.transport, FellBack: t.fellBack,
		PacketsLost: t.lost, PacketsReordered: t.reordered, PacketsForeign: t.foreign,
		CertFingerprint: t.certFP,
	}
	// Rate over the samples inside the window, measured from the oldest
	// of them to now, so a stalled source decays towards zero.
	var first time.Time
	count, bytes := 0, 0
	for i := 0; i < t.n; i++ {
		s := t.ring[(t.head+i)%maxSamples]
		if now.Sub(s.at) > statsWindow {
			continue
		}
		if count == 0 {
			first = s.at
		}
		count++
		bytes += s.bytes
	}
	if span := now.Sub(first).Seconds(); count > 1 && span > 0 {
		st.FPS = float64(count-1) / span
		st.Bitrate = float64(bytes) * 8 / span
	}
	return st
}
