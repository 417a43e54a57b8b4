//go:build race

package nodetest

// RaceEnabled: this binary runs under the race detector.
const RaceEnabled = true
