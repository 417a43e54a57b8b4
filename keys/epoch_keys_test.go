package keys

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEpochKeysAhead(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	_, custs := custodianKeys(t)
	clock := &fakeClock{now: time.Date(2026, 5, 1, 10, 3, 0, 0, time.UTC)}
	var mu sync.Mutex
	made := map[time.Time]KeyFingerprint{}
	var calls atomic.Int32
	k, err := NewEpochKeys(EpochKeysConfig{Camera: "store-1/entrance", Custodians: custs, Now: clock.Now,
		OnNew: func(r *EpochRecord) {
			calls.Add(1)
			mu.Lock()
			made[r.Start] = r.Fingerprint
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() }) // runs before the leak check
	has := func(ts ...time.Time) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range ts {
				if _, ok := made[s]; !ok {
					return false
				}
			}
			return true
		}
	}
	e0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	L := DefaultEpochLength
	waitFor(t, "the current and two next epochs", has(e0, e0.Add(L), e0.Add(2*L)))

	rec, err := k.Record(clock.Now())
	if err != nil || rec.Fingerprint != made[e0] {
		t.Fatalf("Record(now) did not hand out the pre-made record: %v", err)
	}
	// The clock moves on: the next epoch is ready, and the one after is
	// made in the background.
	clock.Add(L)
	rec, err = k.Record(clock.Now())
	if err != nil || !rec.Start.Equal(e0.Add(L)) || rec.Fingerprint != made[e0.Add(L)] {
		t.Fatalf("next epoch: %v", err)
	}
	waitFor(t, "the epoch three ahead", has(e0.Add(3*L)))

	// Many goroutines asking for an epoch nobody made get one key.
	far := e0.Add(100 * L)
	var wg sync.WaitGroup
	fps := make([]KeyFingerprint, 8)
	for i := range fps {
		wg.Go(func() {
			r, err := k.Record(far.Add(time.Minute))
			if err == nil {
				fps[i] = r.Fingerprint
			}
		})
	}
	wg.Wait()
	for _, fp := range fps {
		if fp != fps[0] || fp.IsZero() {
			t.Fatal("one epoch got several keys")
		}
	}
	before := calls.Load()
	k.Record(far)
	if calls.Load() != before {
		t.Fatal("OnNew ran again for a record already made")
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Record(clock.Now()); err != ErrClosed {
		t.Fatalf("Record after Close: %v, want ErrClosed", err)
	}
	k.Close() // twice is fine
}

func TestEpochKeysRefusesBadConfig(t *testing.T) {
	defer goleak.VerifyNone(t)
	_, custs := custodianKeys(t)
	if _, err := NewEpochKeys(EpochKeysConfig{Camera: "cam", Custodians: custs[:1]}); err == nil {
		t.Fatal("one custodian accepted")
	}
	if _, err := NewEpochKeys(EpochKeysConfig{Custodians: custs}); err == nil {
		t.Fatal("no camera accepted")
	}
}
