package release

import (
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Release keys are wiped and dropped when nothing needs them any more: a
// key no request named after releaseKeyUnbound, a key whose request
// expired, was denied, or left the policy; a pending request's key stays.
func TestReleaseKeysSweep(t *testing.T) {
	h := NewKeys()
	now := time.Now()
	mk := func() string {
		pub, err := h.Make(now)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	pending, expired, denied, unbound, gone := mk(), mk(), mk(), mk(), mk()
	st := &policy.State{Requests: map[string]*policy.Request{
		"p": {ID: "p", Node: "desk", Key: pending, Expires: now.Add(time.Hour)},
		"e": {ID: "e", Node: "desk", Key: expired, Expires: now.Add(time.Minute)},
		"d": {ID: "d", Node: "desk", Key: denied, Expires: now.Add(time.Hour), Denials: []policy.Denial{{User: "bob", Reason: "no"}}},
		"g": {ID: "g", Node: "desk", Key: gone, Expires: now.Add(time.Hour)},
	}}
	h.Sweep(st, "desk", now)
	if h.Count() != 4 || h.Get(denied) != nil {
		t.Fatalf("after the first sweep: %d keys, denied's kept: %v", h.Count(), h.Get(denied) != nil)
	}
	k := h.Get(expired)
	delete(st.Requests, "g")
	h.Sweep(st, "desk", now.Add(2*time.Minute))
	if h.Get(expired) != nil || !k.IsZero() || h.Get(gone) != nil || h.Get(pending) == nil || h.Get(unbound) == nil {
		t.Fatalf("after expiry: %d keys", h.Count())
	}
	h.Sweep(st, "desk", now.Add(releaseKeyUnbound+time.Second))
	if h.Get(unbound) != nil || h.Get(pending) == nil || h.Count() != 1 {
		t.Fatalf("after %v: %d keys", releaseKeyUnbound, h.Count())
	}
	h.ZeroAll()
	if h.Count() != 0 {
		t.Fatal("zeroAll left keys")
	}
}
