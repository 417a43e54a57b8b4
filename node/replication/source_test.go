package replication

import (
	"context"
	"testing"
	"time"
)

// The uplink budget paces segments: 1.5 MB at 1 MB/s (burst a quarter of
// it) cannot go out in much under 1.25 s, and without a budget nothing
// waits.
func TestReplicationUplinkBudget(t *testing.T) {
	r := NewSource(Config{UplinkBytesPerSec: 1_000_000}, SourceDeps{})
	ctx := context.Background()
	began := time.Now()
	for range 6 {
		if err := r.pace(ctx, 250_000); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took < 1200*time.Millisecond {
		t.Errorf("1.5 MB went out in %v under a 1 MB/s budget", took)
	}
	free := NewSource(Config{}, SourceDeps{})
	began = time.Now()
	if err := free.pace(ctx, 100<<20); err != nil || time.Since(began) > time.Second {
		t.Errorf("unlimited: %v after %v", err, time.Since(began))
	}
	// A cancelled pull stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.pace(cctx, 900_000); err == nil {
		t.Error("pace ignored a cancelled context")
	}
}
