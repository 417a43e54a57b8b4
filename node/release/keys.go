package release

// The requester's one-time release keys (DESIGN §7, invariant 2): made in
// this node's memory for `custos request`, never written anywhere, handed
// out only as their public half. A key is wiped and dropped when it is no
// longer needed: unbound to any request after releaseKeyUnbound, when its
// request expires, is denied or leaves the policy, and when its export
// finishes. The sweep runs on every policy change and at least every
// releaseKeySweep.

import (
	"fmt"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// errTooManyKeys: the node holds maxReleaseKeys already.
var errTooManyKeys = fmt.Errorf("this node already holds %d release keys", maxReleaseKeys)

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

// Keys holds the node's release keys by public hex.
type Keys struct {
	mu   sync.Mutex
	keys map[string]*heldKey
}

// NewKeys returns an empty key holder.
func NewKeys() *Keys { return &Keys{keys: map[string]*heldKey{}} }

// Make creates a key and returns its public half.
func (h *Keys) Make(now time.Time) (string, error) {
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

// Get returns the key with public half pub, or nil.
func (h *Keys) Get(pub string) *keys.ReleaseKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hk := h.keys[pub]; hk != nil {
		return hk.k
	}
	return nil
}

// Drop wipes and forgets the key with public half pub.
func (h *Keys) Drop(pub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(pub)
}

func (h *Keys) dropLocked(pub string) {
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
func (h *Keys) setRecovered(pub string, bySegment map[string][]byte) bool {
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
func (h *Keys) recoveredPartial(pub, segment string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hk := h.keys[pub]; hk != nil {
		return hk.recovered[segment]
	}
	return nil
}

// Sweep drops the keys st and now say are done with; self is this node's
// name in st.
func (h *Keys) Sweep(st *policy.State, self string, now time.Time) {
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

// ZeroAll wipes every key (the node is closing).
func (h *Keys) ZeroAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pub := range h.keys {
		h.dropLocked(pub)
	}
}

// Count is how many keys the node holds.
func (h *Keys) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keys)
}

// SweepKeys runs the keys' sweep until stop is closed.
func (s *Service) SweepKeys(stop <-chan struct{}) {
	for {
		changed := s.d.Policy.Changed()
		st := s.d.Policy.State()
		s.d.Keys.Sweep(st, s.d.Peers.Self(st), s.now())
		select {
		case <-stop:
			return
		case <-changed:
		case <-time.After(releaseKeySweep):
		}
	}
}

// NewKey makes a one-time release key in this node's memory and returns
// its public half (hex), for a request to carry.
func (s *Service) NewKey() (string, error) { return s.d.Keys.Make(time.Now()) }
