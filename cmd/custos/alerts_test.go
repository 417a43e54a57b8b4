package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// checkAlerts: alerts show gives the defaults until alerts set; a set
// changes only the rules given; bad values are refused before signing.
func checkAlerts(t *testing.T, dir, alice string, must func(*testing.T, ...string) (string, string), refused func(*testing.T, int, string, ...string)) {
	signing := []string{"--dir", dir, "--as", alice}
	if out, _ := must(t, "alerts", "show", "--dir", dir); !strings.Contains(out, "more than 500 segments") || !strings.Contains(out, "07:00-20:00 Europe/Prague") ||
		!strings.Contains(out, "the defaults") {
		t.Fatalf("alerts show before a set:\n%s", out)
	}
	refused(t, 2, "give at least one rule", append([]string{"alerts", "set"}, signing...)...)
	refused(t, 2, "N/D", append([]string{"alerts", "set", "--refused", "10"}, signing...)...)
	refused(t, 2, "not an IANA", append([]string{"alerts", "set", "--time-zone", "Mars/Olympus"}, signing...)...)
	refused(t, 2, "HH:MM-HH:MM", append([]string{"alerts", "set", "--usual-hours", "7-20"}, signing...)...)
	must(t, append([]string{"alerts", "set", "--bulk-exports", "0", "--usual-hours", "06:30-22:00", "--time-zone", "Europe/Bratislava", "--refused", "20/15m"}, signing...)...)
	out, _ := must(t, "alerts", "show", "--dir", dir, "--json")
	var r struct {
		policy.AlertRules
		Default bool `json:"default"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Default || r.BulkExports != 0 || r.UsualHours != "06:30-22:00" || r.TimeZone != "Europe/Bratislava" ||
		r.RefusedMax != 20 || r.RefusedWindow != 15*time.Minute || r.FastApprovals != 5 || r.InstallerWindows != "on" {
		t.Fatalf("alerts show --json after a set: %v %+v", err, r)
	}
	if out, _ := must(t, "alerts", "show", "--dir", dir); !strings.Contains(lineOf(out, "bulk-export"), "off") || strings.Contains(out, "the defaults") {
		t.Fatalf("alerts show after a set:\n%s", out)
	}
}

func TestStatusPrintsAlerts(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 12, 2, 19, 30, 0, 0, time.UTC)
	writeAlerts(&b, []node.AlertSummary{{Node: "dc-a", Time: at, Rule: policy.RuleBulkExport, Subject: "admin-1", Detail: "501 segments\x1b[2J"}})
	want := "ALERT      bulk-export admin-1: 501 segments?[2J (" + stamp(at) + ")\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestCountPer(t *testing.T) {
	for in, want := range map[string]struct {
		n  int
		d  time.Duration
		ok bool
	}{"10/10m": {10, 10 * time.Minute, true}, "0": {0, 0, true}, "5/1h": {5, time.Hour, true}, "10": {ok: false}, "x/10m": {ok: false}, "3/ten": {ok: false}} {
		n, d, err := countPer("refused", in)
		if (err == nil) != want.ok || n != want.n || d != want.d {
			t.Errorf("countPer(%q) = %d, %v, %v", in, n, d, err)
		}
	}
}
