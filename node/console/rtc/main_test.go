package rtc

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that a closed Peer and a returned Feed leave no goroutine
// behind (pion's, Feed's demuxer, the test browsers').
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
