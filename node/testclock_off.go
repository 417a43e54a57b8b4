//go:build !custos_testclock

package node

import "time"

// wallSource is the node's wall clock: the system's, in every release build
// (testclock_on.go, under a build tag only tests set, can move it).
func wallSource(dir string) func() time.Time { return time.Now }
