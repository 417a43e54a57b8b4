package policy

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// Every replica checks every command's signature, and parsing the signer's
// key and checking its self-signatures cost twice the check itself. So
// VerifySignature keeps parsed keys, by the SHA-256 of their exact bytes
// (other bytes, another entry: a key whose self-signature differs is parsed
// afresh).
//
// go-crypto checks a key's self-signatures lazily and memoizes each one's
// validity in the entity (VerifiableSignature.Valid), folding in an
// expiry check at the time of that first use. A shared entity would thus
// be written concurrently, and a self-signature found expired at one
// command's time would stay refused at an earlier one: replicas with
// different histories (or one restarted) could decide differently. So an
// entity is cached only after settleSignatures has memoized every one of
// its signatures at the zero time, which checks the cryptography, the
// hash algorithm and critical notations but no time; go-crypto then reads
// the memo and checks expiry, revocation and creation times at each call's
// own time, as a fresh parse would, and writes nothing to the entity.
// Nothing that failed to parse is cached.

// keyCacheSize bounds the cache: keys come from the policy, whose users are
// few, but a command can name any key.
const keyCacheSize = 256

type keyCache struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*list.Element // guarded by mu
	lru   list.List                           // of *cachedKey, most recent first; guarded by mu
}

type cachedKey struct {
	sum [sha256.Size]byte
	e   *openpgp.Entity // settled: read-only from here on
}

var verifiedKeys = new(keyCache)

// entity returns the settled entity of the public key pub, parsing it (by
// readPublicKey's rules) if it is not cached.
func (c *keyCache) entity(pub []byte) (*openpgp.Entity, error) {
	sum := sha256.Sum256(pub)
	c.mu.Lock()
	if el, ok := c.byKey[sum]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*cachedKey).e, nil
	}
	c.mu.Unlock()
	e, err := readPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if !settleSignatures(e) {
		// A signature list go-crypto memoizes that this code does not
		// know: use the entity once, unshared, as before the cache.
		return e, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[sum]; ok { // another caller parsed it meanwhile
		return el.Value.(*cachedKey).e, nil
	}
	if c.byKey == nil {
		c.byKey = make(map[[sha256.Size]byte]*list.Element)
	}
	c.byKey[sum] = c.lru.PushFront(&cachedKey{sum: sum, e: e})
	if c.lru.Len() > keyCacheSize {
		old := c.lru.Remove(c.lru.Back()).(*cachedKey)
		delete(c.byKey, old.sum)
	}
	return e, nil
}

// settleSignatures memoizes the validity of every signature of e at the
// zero time, through go-crypto's own checks, each signature alone in a
// shallow copy of its holder so that none is skipped by the selection of
// the newest. It reports whether every signature go-crypto can memoize
// was settled.
func settleSignatures(e *openpgp.Entity) bool {
	var zero time.Time
	cfg := &packet.Config{} // what VerifySignature passes, but for the time
	one := func(s *packet.VerifiableSignature) []*packet.VerifiableSignature {
		return []*packet.VerifiableSignature{s}
	}
	for _, id := range e.Identities {
		for _, s := range id.SelfCertifications {
			t := *id
			t.SelfCertifications = one(s)
			t.LatestValidSelfCertification(zero, cfg)
		}
		for _, s := range id.Revocations {
			t := *id
			t.Revocations = one(s)
			t.Revoked(nil, zero, cfg)
		}
	}
	for _, s := range e.Revocations {
		t := *e
		t.Revocations = one(s)
		t.Revoked(zero)
	}
	for _, s := range e.DirectSignatures {
		t := *e
		t.DirectSignatures = one(s)
		t.LatestValidDirectSignature(zero, cfg)
	}
	for i := range e.Subkeys {
		for _, s := range e.Subkeys[i].Bindings {
			t := e.Subkeys[i]
			t.Bindings = one(s)
			t.LatestValidBindingSignature(zero, cfg)
		}
		for _, s := range e.Subkeys[i].Revocations {
			t := e.Subkeys[i]
			t.Revocations = one(s)
			t.Revoked(nil, zero)
		}
	}
	return allSettled(e)
}

// allSettled reports whether every memoizable signature of e has its
// validity memoized.
func allSettled(e *openpgp.Entity) bool {
	set := func(l []*packet.VerifiableSignature) bool {
		for _, s := range l {
			if s.Valid == nil {
				return false
			}
		}
		return true
	}
	for _, id := range e.Identities {
		if !set(id.SelfCertifications) || !set(id.Revocations) {
			return false
		}
	}
	if !set(e.Revocations) || !set(e.DirectSignatures) {
		return false
	}
	for i := range e.Subkeys {
		if !set(e.Subkeys[i].Bindings) || !set(e.Subkeys[i].Revocations) {
			return false
		}
	}
	return true
}
