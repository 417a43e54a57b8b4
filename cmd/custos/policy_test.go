package main

import (
	"strings"
	"testing"
)

// checkGrantEnds: a grant needs --until or --forever; a time without its
// zone is refused naming the flag; --forever makes a grant without an end.
func checkGrantEnds(t *testing.T, dir, alice string, must func(...string) string) {
	t.Helper()
	base := []string{"grant", "--to", "user:bob", "--action", "live", "--cameras", "praha-1/*", "--dir", dir, "--as", alice}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "a grant needs an end: --until T (such as --until 8h, or an RFC 3339 time), or --forever"},
		{[]string{"--until", "8h", "--forever"}, "--until and --forever contradict each other"},
		{[]string{"--until", "2026-11-27T08:00:00"}, `--until "2026-11-27T08:00:00": want an RFC 3339 time with its zone`},
		{[]string{"--from", "+2h", "--until", "1h"}, "is not before --until"},
	} {
		if code, _, errOut := runCLI(append(base, c.args...)...); code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("grant %q: exit %d %s; want exit 2 saying %q", c.args, code, errOut, c.want)
		}
	}
	must(append(base, "--forever", "--id", "g-forever")...)
	must(append(base, "--from", "+1h", "--until", "+9h", "--id", "g-later")...)
	out := must("grants", "--dir", dir)
	if !strings.Contains(lineOf(out, "g-forever"), "always") || !strings.Contains(lineOf(out, "g-later"), " → ") {
		t.Errorf("grants:\n%s", out)
	}
	checkZoned(t, "grants", out)
	must("revoke", "grant", "g-forever", "--dir", dir, "--as", alice)
	must("revoke", "grant", "g-later", "--dir", dir, "--as", alice)
}
