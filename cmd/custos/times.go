package main

import (
	"fmt"
	"strings"
	"time"
)

// Every time flag takes the same forms, read by parseTime: an RFC 3339
// time with its zone, "now", or a duration relative to now. A signed
// duration says its direction (-10m: ten minutes ago, +8h: eight hours
// from now); a bare one counts the way the flag looks: back for what was
// recorded or logged (request's --from and --to, audit's --since), forward
// for what is granted (grant's and invite's --from and --until).

// direction is which way a bare duration counts from now.
type direction int

const (
	back    direction = -1
	forward direction = 1
)

// parseTime reads flag's value s (see above), relative to now.
func parseTime(flag, s string, bare direction, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	sign := bare
	d := s
	switch {
	case strings.HasPrefix(s, "-"):
		sign, d = back, s[1:]
	case strings.HasPrefix(s, "+"):
		sign, d = forward, s[1:]
	}
	if v, err := time.ParseDuration(d); err == nil && v >= 0 && !strings.HasPrefix(d, "-") && !strings.HasPrefix(d, "+") {
		return now.Add(time.Duration(sign) * v), nil
	}
	example := "24h: 24 hours ago"
	if bare == forward {
		example = "8h: 8 hours from now"
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time with its zone (2026-11-27T08:00:00+01:00 or …Z), now, "+
		"or a duration from now (%s; -10m: 10 minutes ago; +10m: 10 minutes from now)", flag, s, example)
}

// stamp prints t as the CLI prints every time: RFC 3339 in the local zone,
// whose offset it names; "-" for no time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}
