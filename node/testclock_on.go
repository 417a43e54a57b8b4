//go:build custos_testclock

package node

// Test builds only (-tags custos_testclock): the node's wall clock is the
// system's plus the Go duration in DIR/testclock-offset ("-1h", "90s";
// absent or unreadable: 0), re-read at most a second later than it changes.
// Tests use it to skew one node's clock; release builds never set the tag.

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const testClockFile = "testclock-offset"

func wallSource(dir string) func() time.Time {
	var mu sync.Mutex
	var offset time.Duration
	var read time.Time
	path := filepath.Join(dir, testClockFile)
	return func() time.Time {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if read.IsZero() || now.Sub(read) >= 500*time.Millisecond {
			read, offset = now, 0
			if b, err := os.ReadFile(path); err == nil {
				if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
					offset = d
				}
			}
		}
		// Round(0) drops the monotonic reading: this is a wall time only.
		return now.Add(offset).Round(0)
	}
}
