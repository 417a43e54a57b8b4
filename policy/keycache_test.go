package policy

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// The key cache must never change an answer: these tests put a key in it
// and then ask what a fresh parse would refuse.

func resetKeyCache() { verifiedKeys = new(keyCache) }

// rawSign signs msg at any time, even one at which go-crypto would refuse
// to sign with e (an expired key), as an attacker with the private key can.
func rawSign(t *testing.T, e *openpgp.Entity, msg []byte, at time.Time) []byte {
	t.Helper()
	cfg := &packet.Config{Time: func() time.Time { return at }}
	var lifetime uint32
	sig := &packet.Signature{Version: 4, SigType: packet.SigTypeBinary, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo, Hash: crypto.SHA256,
		CreationTime: at, IssuerKeyId: &e.PrimaryKey.KeyId, IssuerKeyVersion: 4, IssuerFingerprint: e.PrimaryKey.Fingerprint,
		SigLifetimeSecs: &lifetime}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(msg)
	if err := sig.Sign(h, e.PrivateKey, cfg); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := sig.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func serialized(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// verifyBoth checks sig with the cache as it is and with an empty one, and
// fails the test if the two answers differ. It returns the cached answer.
func verifyBoth(t *testing.T, pub, msg, sig []byte, at time.Time) error {
	t.Helper()
	_, cached := VerifySignature(pub, msg, sig, at)
	saved := verifiedKeys
	verifiedKeys = new(keyCache)
	_, fresh := VerifySignature(pub, msg, sig, at)
	verifiedKeys = saved
	if (cached == nil) != (fresh == nil) {
		t.Fatalf("at %s: cached key says %v, a fresh parse %v", at, cached, fresh)
	}
	return cached
}

// A key whose bytes differ by one byte, in its self-signature, is parsed
// afresh and refused, though the genuine key is cached.
func TestKeyCacheOtherBytes(t *testing.T) {
	resetKeyCache()
	alice := newTestUser(t, "alice")
	msg := []byte("command")
	at := keyTime.Add(time.Hour)
	sig := rawSign(t, alice.entity, msg, at)
	if err := verifyBoth(t, alice.pub, msg, sig, at); err != nil {
		t.Fatal(err)
	}
	var self bytes.Buffer
	for _, id := range alice.entity.Identities {
		id.SelfCertifications[0].Packet.Serialize(&self)
	}
	i := bytes.Index(alice.pub, self.Bytes())
	if i < 0 {
		t.Fatal("self-signature not found in the key")
	}
	bad := bytes.Clone(alice.pub)
	bad[i+self.Len()-1] ^= 1 // the signature's last byte
	if _, err := VerifySignature(bad, msg, sig, at); err == nil {
		t.Fatal("a key with a broken self-signature was accepted")
	}
	if err := verifyBoth(t, alice.pub, msg, sig, at); err != nil {
		t.Fatalf("the genuine key after the forged one: %v", err)
	}
}

// A key revoked after its unrevoked bytes were cached is refused.
func TestKeyCacheRevokedKey(t *testing.T) {
	resetKeyCache()
	alice := newTestUser(t, "alice")
	msg := []byte("command")
	at := keyTime.Add(time.Hour)
	sig := rawSign(t, alice.entity, msg, at)
	if err := verifyBoth(t, alice.pub, msg, sig, at); err != nil {
		t.Fatal(err)
	}
	if err := alice.entity.Revoke(packet.KeyCompromised, "", &packet.Config{Time: func() time.Time { return at }}); err != nil {
		t.Fatal(err)
	}
	if err := verifyBoth(t, serialized(t, alice.entity), msg, sig, at); err == nil {
		t.Fatal("a revoked key was accepted")
	}
}

// A key that expires is accepted while valid and refused after, at each
// call's own time, in either order.
func TestKeyCacheExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  packet.Config
	}{
		{"key-lifetime", packet.Config{KeyLifetimeSecs: 86400}},
		{"self-signature-lifetime", packet.Config{SigLifetimeSecs: 86400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
			cfg.Time = func() time.Time { return keyTime }
			e, err := openpgp.NewEntity("old", "", "", &cfg)
			if err != nil {
				t.Fatal(err)
			}
			pub := serialized(t, e)
			msg := []byte("command")
			early, late := keyTime.Add(time.Hour), keyTime.Add(48*time.Hour)
			sigEarly, sigLate := rawSign(t, e, msg, early), rawSign(t, e, msg, late)

			resetKeyCache() // cached while valid
			if err := verifyBoth(t, pub, msg, sigEarly, early); err != nil {
				t.Fatal(err)
			}
			if err := verifyBoth(t, pub, msg, sigLate, late); err == nil {
				t.Fatal("an expired key was accepted once cached while valid")
			}
			resetKeyCache() // cached while expired
			if err := verifyBoth(t, pub, msg, sigLate, late); err == nil {
				t.Fatal("an expired key was accepted")
			}
			if err := verifyBoth(t, pub, msg, sigEarly, early); err != nil {
				t.Fatalf("valid at the signed time, refused after a later check: %v", err)
			}
		})
	}
}

// A signature by another key is refused with a cached key.
func TestKeyCacheOtherSigner(t *testing.T) {
	resetKeyCache()
	alice, mallory := newTestUser(t, "alice"), newTestUser(t, "mallory")
	msg := []byte("command")
	at := keyTime.Add(time.Hour)
	if err := verifyBoth(t, alice.pub, msg, rawSign(t, alice.entity, msg, at), at); err != nil {
		t.Fatal(err)
	}
	if err := verifyBoth(t, mallory.pub, msg, rawSign(t, mallory.entity, msg, at), at); err != nil {
		t.Fatal(err)
	}
	if err := verifyBoth(t, alice.pub, msg, rawSign(t, mallory.entity, msg, at), at); err == nil {
		t.Fatal("mallory's signature passed as alice's")
	}
	if err := verifyBoth(t, alice.pub, []byte("other command"), rawSign(t, alice.entity, msg, at), at); err == nil {
		t.Fatal("a signature over other bytes was accepted")
	}
}

// Not a key: refused every time, nothing cached.
func TestKeyCacheParseErrorNotCached(t *testing.T) {
	resetKeyCache()
	alice := newTestUser(t, "alice")
	msg := []byte("command")
	at := keyTime.Add(time.Hour)
	sig := rawSign(t, alice.entity, msg, at)
	junk := alice.pub[:len(alice.pub)/2]
	for range 2 {
		if _, err := VerifySignature(junk, msg, sig, at); err == nil {
			t.Fatal("half a key was accepted")
		}
	}
	if len(verifiedKeys.byKey) != 0 {
		t.Fatalf("%d keys cached after parse errors", len(verifiedKeys.byKey))
	}
}

// Every signature of the keys Custos uses (a v4 admin key with its
// subkey, a revoked one, a v6 custodian key) is settled before the entity
// is shared, so that go-crypto writes nothing to it afterwards.
func TestKeyCacheSettlesEverySignature(t *testing.T) {
	v4 := newTestUser(t, "alice").entity
	revoked := newTestUser(t, "bob").entity
	if err := revoked.Revoke(packet.KeySuperseded, "", &packet.Config{Time: func() time.Time { return keyTime.Add(time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	v6, err := openpgp.NewEntity("dc-x", "", "", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519,
		Time: func() time.Time { return keyTime }})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*openpgp.Entity{v4, revoked, v6} {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(serialized(t, e)))
		if err != nil {
			t.Fatal(err)
		}
		if !settleSignatures(el[0]) {
			t.Fatalf("%s: not every signature settled", hex.EncodeToString(e.PrimaryKey.Fingerprint))
		}
	}
}

// The cache is bounded.
func TestKeyCacheBounded(t *testing.T) {
	resetKeyCache()
	u := newTestUser(t, "alice")
	first := u.pub
	for i := range keyCacheSize + 5 {
		e, err := openpgp.NewEntity(fmt.Sprint("u", i), "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
			Time: func() time.Time { return keyTime }})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = serialized(t, e)
		}
		if _, err := verifiedKeys.entity(serialized(t, e)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(verifiedKeys.byKey); n != keyCacheSize || verifiedKeys.lru.Len() != keyCacheSize {
		t.Fatalf("%d keys cached, at most %d", n, keyCacheSize)
	}
	if _, err := verifiedKeys.entity(first); err != nil { // evicted, parsed again
		t.Fatal(err)
	}
}

// Replicas in one process check with one cached entity at once (run with
// -race): good and bad signatures, valid and expired times, interleaved.
func TestKeyCacheConcurrent(t *testing.T) {
	resetKeyCache()
	alice, mallory := newTestUser(t, "alice"), newTestUser(t, "mallory")
	old, err := openpgp.NewEntity("old", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return keyTime }, SigLifetimeSecs: 86400})
	if err != nil {
		t.Fatal(err)
	}
	oldPub := serialized(t, old)
	msg := []byte("command")
	early, late := keyTime.Add(time.Hour), keyTime.Add(48*time.Hour)
	cases := []struct {
		pub, sig []byte
		at       time.Time
		ok       bool
	}{
		{alice.pub, rawSign(t, alice.entity, msg, early), early, true},
		{alice.pub, rawSign(t, mallory.entity, msg, early), early, false},
		{mallory.pub, rawSign(t, mallory.entity, msg, late), late, true},
		{oldPub, rawSign(t, old, msg, late), late, false},
		{oldPub, rawSign(t, old, msg, early), early, true},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				c := cases[(g+i)%len(cases)]
				if _, err := VerifySignature(c.pub, msg, c.sig, c.at); (err == nil) != c.ok {
					errs <- fmt.Errorf("case %d: want ok=%v, got %v", (g+i)%len(cases), c.ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
