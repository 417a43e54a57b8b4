package node

// The requester's one-time release keys (DESIGN §7, invariant 2): made in
// this node's memory for `custos request`, never written anywhere, handed
// out only as their public half. A key is wiped and dropped when it is no
// longer needed: unbound to any request after releaseKeyUnbound, when its
// request expires, is denied or leaves the policy, and when its export
// finishes. The sweep runs on every policy change and at least every
// releaseKeySweep.

import (
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

const (
	// releaseKeyUnbound is how long a key may wait for its request.
	releaseKeyUnbound = 10 * time.Minute
	// releaseKeySweep bounds the time between sweeps.
	releaseKeySweep = 5 * time.Second
	// maxReleaseKeys bounds the keys one node holds.
	maxReleaseKeys = 1024
)

type heldKey struct {
	k     *keys.ReleaseKey
	made  time.Time
	bound bool // a request of this node named it
	// recovered are the recovery key's answers sealed to this key, by
	// segment (custos recover-shares); they go with the key.
	recovered map[string][]byte
}

// releaseKeys holds the node's release keys by public hex.
type releaseKeys struct {
	mu   sync.Mutex
	keys map[string]*heldKey
}

func newReleaseKeys() *releaseKeys { return &releaseKeys{keys: map[string]*heldKey{}} }

// make creates a key and returns its public half.
func (h *releaseKeys) make(now time.Time) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.keys) >= maxReleaseKeys {
		return "", errTooManyKeys
	}
	k, err := keys.NewReleaseKey()
	if err != nil {
		return "", err
	}
	pub := k.PublicHex()
	h.keys[pub] = &heldKey{k: k, made: now}
	return pub, nil
}

// get returns the key with public half pub, or nil.
func (h *releaseKeys) get(pub string) *keys.ReleaseKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hk := h.keys[pub]; hk != nil {
		return hk.k
	}
	return nil
}

// drop wipes and forgets the key with public half pub.
func (h *releaseKeys) drop(pub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(pub)
}

func (h *releaseKeys) dropLocked(pub string) {
	if hk := h.keys[pub]; hk != nil {
		hk.k.Zero()
		for _, b := range hk.recovered {
			clear(b)
		}
		delete(h.keys, pub)
	}
}

// setRecovered keeps the recovery key's sealed answers for key pub, in
// place of any it had; false if the node holds no such key.
func (h *releaseKeys) setRecovered(pub string, bySegment map[string][]byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	hk := h.keys[pub]
	if hk == nil {
		return false
	}
	hk.recovered = bySegment
	return true
}

// recoveredPartial is the recovery key's sealed answer for segment (see
// segmentID) for key pub, or nil.
func (h *releaseKeys) recoveredPartial(pub, segment string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hk := h.keys[pub]; hk != nil {
		return hk.recovered[segment]
	}
	return nil
}

// sweep drops the keys st and now say are done with; self is this node's
// name in st.
func (h *releaseKeys) sweep(st *policy.State, self string, now time.Time) {
	byKey := map[string]*policy.Request{}
	if st != nil {
		for _, r := range st.Requests {
			if r.Node == self {
				byKey[r.Key] = r
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for pub, hk := range h.keys {
		r := byKey[pub]
		switch {
		case r != nil:
			hk.bound = true
			if s := st.RequestStatus(r, now); s == policy.RequestExpired || s == policy.RequestDenied {
				h.dropLocked(pub)
			}
		case hk.bound || now.Sub(hk.made) > releaseKeyUnbound:
			h.dropLocked(pub) // its request is gone, or never came
		}
	}
}

// zeroAll wipes every key (the node is closing).
func (h *releaseKeys) zeroAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pub := range h.keys {
		h.dropLocked(pub)
	}
}

func (h *releaseKeys) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keys)
}

// sweepReleaseKeys runs the sweep until the node stops.
func (n *Node) sweepReleaseKeys() {
	defer n.wg.Done()
	for {
		changed := n.policy.Changed()
		st := n.policy.State()
		n.relKeys.sweep(st, n.selfName(st), time.Now())
		select {
		case <-n.stop:
			return
		case <-changed:
		case <-time.After(releaseKeySweep):
		}
	}
}

// NewReleaseKey makes a one-time release key in this node's memory and
// returns its public half (hex), for a request to carry.
func (n *Node) NewReleaseKey() (string, error) {
	if n.policy == nil {
		return "", errNoPolicy
	}
	return n.relKeys.make(time.Now())
}

// heldReleaseKeys is how many release keys the node holds (a test hook).
func (n *Node) heldReleaseKeys() int { return n.relKeys.count() }
