// Package nodetest holds the test helpers that every room of node shares:
// the goroutine-leak check (naming the goroutines the libraries keep for
// themselves: memberlist's probe, gVisor's parked workers) and a bounded
// wait that fails naming what it waited for. Test code only.
package nodetest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// CheckLeaks registers the leak check as a cleanup of t.
func CheckLeaks(t testing.TB) {
	t.Cleanup(func() {
		goleak.VerifyNone(t,
			goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
			goleak.IgnoreTopFunction("gvisor.dev/gvisor/pkg/sync.Gopark"),
		)
	})
}

// WaitTrue polls cond until it holds, failing t after d naming what.
func WaitTrue(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
