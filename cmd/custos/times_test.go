package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Every time flag reads the same forms; a bare duration counts the way the
// flag looks, a signed one the way its sign says.
func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		bare direction
		want time.Time
	}{
		{"2026-11-27T08:00:00Z", back, time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)},
		{"2026-11-27T09:00:00+01:00", forward, time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)},
		{"now", back, now},
		{"24h", back, now.Add(-24 * time.Hour)},
		{"8h", forward, now.Add(8 * time.Hour)},
		{"-10m", forward, now.Add(-10 * time.Minute)},
		{"+10m", back, now.Add(10 * time.Minute)},
		{"-1h30m", back, now.Add(-90 * time.Minute)},
		{"0s", back, now},
	} {
		got, err := parseTime("from", c.in, c.bare, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseTime(%q, %d) = %v, %v; want %v", c.in, c.bare, got, err, c.want)
		}
	}
	for _, in := range []string{"yesterday", "2026-11-27T08:00:00", "2026-11-27", "--5m", "+-5m", "-+5m", "", "8"} {
		_, err := parseTime("until", in, forward, now)
		if err == nil || !strings.Contains(err.Error(), "--until") || !strings.Contains(err.Error(), "RFC 3339") ||
			!strings.Contains(err.Error(), "8h: 8 hours from now") || !strings.Contains(err.Error(), "-10m: 10 minutes ago") {
			t.Errorf("parseTime(%q) = %v; want an error naming --until and the forms", in, err)
		}
	}
}

var (
	printedTime = regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?`)
	zoneSuffix  = regexp.MustCompile(`^(Z|[+-]\d\d:\d\d)`)
)

// zoneless is the first date and time in out not followed by its zone.
func zoneless(out string) string {
	for _, m := range printedTime.FindAllStringIndex(out, -1) {
		if !zoneSuffix.MatchString(out[m[1]:]) {
			return out[m[0]:min(m[1]+6, len(out))]
		}
	}
	return ""
}

// checkZoned fails when out prints a time without its zone.
func checkZoned(t *testing.T, what, out string) {
	t.Helper()
	if m := zoneless(out); m != "" {
		t.Errorf("%s prints a time without its zone (%q):\n%s", what, m, out)
	}
}

func TestStampHasZone(t *testing.T) {
	for _, tc := range []time.Time{time.Now(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))} {
		s := stamp(tc)
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Errorf("stamp(%v) = %q, not RFC 3339", tc, s)
		}
		checkZoned(t, "stamp", s)
	}
	checkZoned(t, "self-test", "2026-11-27T08:00:00+01:00 and 2026-11-27T08:00:00Z")
	if zoneless("at 2026-11-27 08:00:00 here") == "" || zoneless("2026-11-27T08:00:00") == "" || zoneless("2026-11-27T08:00") == "" {
		t.Error("zonelessTime misses a time without a zone")
	}
}

// --listen takes IP:PORT, or a host name with exactly one address,
// resolved once.
func TestParseListen(t *testing.T) {
	defer func(f func(context.Context, string, string) ([]netip.Addr, error)) { lookupListen = f }(lookupListen)
	hosts := map[string][]netip.Addr{
		"dc-a.example.net": {netip.MustParseAddr("203.0.113.10")},
		"mapped.example":   {netip.MustParseAddr("::ffff:198.51.100.7"), netip.MustParseAddr("198.51.100.7")},
		"localhost":        {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		"empty.example":    {},
	}
	lookups := 0
	lookupListen = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		lookups++
		if a, ok := hosts[host]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	ctx := context.Background()
	for in, want := range map[string]string{
		"203.0.113.10:51820":    "203.0.113.10:51820",
		"[2001:db8::1]:51820":   "[2001:db8::1]:51820",
		"dc-a.example.net:5182": "203.0.113.10:5182",
		"mapped.example:1":      "198.51.100.7:1",
	} {
		got, err := parseListen(ctx, in)
		if err != nil || got.String() != want {
			t.Errorf("parseListen(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"localhost:51820":        "resolves to 2 addresses (127.0.0.1, ::1)",
		"empty.example:51820":    "resolves to no address",
		"nowhere.example:51820":  "does not resolve",
		"51820":                  "want IP:PORT or HOST:PORT",
		":51820":                 "want IP:PORT or HOST:PORT",
		"dc-a.example.net:http2": "want IP:PORT or HOST:PORT",
		"0.0.0.0:51820":          "not a wildcard",
		"dc-a.example.net:0":     "port 0",
	} {
		_, err := parseListen(ctx, in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("parseListen(%q) = %v; want an error saying %q", in, err, want)
		}
		if strings.Contains(want, "resolve") == errors.As(err, new(usageError)) {
			t.Errorf("parseListen(%q): usage error %v", in, errors.As(err, new(usageError)))
		}
	}
	if lookups == 0 {
		t.Fatal("the stub resolver was never asked")
	}
}
