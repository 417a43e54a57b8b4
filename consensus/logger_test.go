package consensus

import (
	"errors"
	"strings"
	"testing"
)

// raft's warnings about what every new member goes through before it
// holds the log do not reach the node's log; the same warnings about a
// follower that holds a log, and everything else, do.
func TestLoggerDropsWhatEveryJoinGoesThrough(t *testing.T) {
	var lines []string
	l := newLogger(func(format string, a ...any) {
		if format != "%s" || len(a) != 1 {
			t.Fatalf("logf(%q, %v)", format, a)
		}
		lines = append(lines, a[0].(string))
	})
	notFound := errors.New("log not found")
	// Expected on a new member: dropped.
	l.Warn("no known peers, aborting election")
	l.Warn("failed to get previous log", "previous-index", uint64(108), "last-index", uint64(0), "error", notFound)
	l.Named("replication").Warn("appendEntries rejected, sending older logs", "peer", "store", "next", uint64(1))
	if len(lines) != 0 {
		t.Fatalf("expected join lines logged: %q", lines)
	}
	// A follower that holds a log, another warning, an error: kept.
	l.Warn("failed to get previous log", "previous-index", uint64(108), "last-index", uint64(40), "error", notFound)
	l.Warn("appendEntries rejected, sending older logs", "peer", "store", "next", uint64(41))
	l.Warn("not part of stable configuration, aborting election")
	l.Error("failed to appendEntries to", "peer", "store", "error", "EOF")
	want := []string{"last-index=40", "next=41", "not part of stable configuration", "failed to appendEntries to"}
	if len(lines) != len(want) {
		t.Fatalf("logged %q, want %d lines", lines, len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want it to hold %q", i, lines[i], w)
		}
	}
}
