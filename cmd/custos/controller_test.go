package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// checkControllerAndBreaches: documents need a controller (refused until
// set, with the command to run); the controller round-trips text that
// would break HTML; a breach's 72-hour clock shows in breach list and in
// status, a late notification needs its reason, the report names what is
// not recorded yet, and closing a never-notified breach needs the reason
// it need not be. Audit retention below 30 days is refused, above it needs
// a justification.
func checkControllerAndBreaches(t *testing.T, dir, alice string, must func(*testing.T, ...string) (string, string), refused func(*testing.T, int, string, ...string)) {
	signing := []string{"--dir", dir, "--as", alice}
	refused(t, 1, "custos controller set", "controller", "show", "--dir", dir)
	refused(t, 2, "--name, --address and --email are required", append([]string{"controller", "set", "--name", "x"}, signing...)...)
	refused(t, 4, "email", append([]string{"controller", "set", "--name", "Acme", "--address", "Praha", "--email", "not-an-email"}, signing...)...)
	name := `<script>alert(1)</script> „Kamery“ s.r.o.`
	must(t, append([]string{"controller", "set", "--name", name, "--address", "Vinohradská 1, 120 00 Praha 2", "--email", "gdpr@acme.cz",
		"--dpo-name", "Jana Dvořáková", "--dpo-email", "dpo@acme.cz"}, signing...)...)
	if out, _ := must(t, "controller", "show", "--dir", dir); !strings.Contains(out, name) || !strings.Contains(out, "Jana Dvořáková") {
		t.Fatalf("controller show:\n%s", out)
	}

	// A breach detected 70 h ago: about 2 h left, in breach list and status.
	refused(t, 2, "--what and --detected are required", append([]string{"breach", "open", "--what", "x"}, signing...)...)
	refused(t, 2, "in the future", append([]string{"breach", "open", "--what", "x", "--detected", "+1h"}, signing...)...)
	out, errOut := must(t, append([]string{"breach", "open", "--what", "a store's disk was stolen", "--detected", "70h", "--id", "b1"}, signing...)...)
	if strings.TrimSpace(out) != "b1" || !strings.Contains(errOut, "notify the supervisory authority by") {
		t.Fatalf("breach open: %q %q", out, errOut)
	}
	if out, _ := must(t, "breach", "list", "--dir", dir); !strings.Contains(out, "b1") || !strings.Contains(out, "open") || !strings.Contains(out, "h ") || !strings.Contains(out, "m left") {
		t.Fatalf("breach list:\n%s", out)
	}
	if out, _ := must(t, "status", "--dir", dir); !strings.Contains(out, "BREACH     b1: notify the supervisory authority by") || !strings.Contains(out, "m left") {
		t.Fatalf("status lacks the breach clock:\n%s", out)
	}
	var st struct {
		Breaches []struct{ ID, Clock string } `json:"breaches_to_notify"`
	}
	if out, _ := must(t, "status", "--dir", dir, "--json"); json.Unmarshal([]byte(out), &st) != nil || len(st.Breaches) != 1 || st.Breaches[0].ID != "b1" {
		t.Fatalf("status --json breaches: %+v", st)
	}
	if out, _ := must(t, "breach", "report", "b1", "--dir", dir); !strings.Contains(out, "NOT RECORDED YET") || !strings.Contains(out, "Jana Dvořáková") ||
		!strings.Contains(out, "authority notified") {
		t.Fatalf("breach report:\n%s", out)
	}
	// It was in fact found 75 h ago: the clock is overdue, and a
	// notification now is late, so its reason is required.
	must(t, append([]string{"breach", "update", "b1", "--detected", "75h"}, signing...)...)
	if out, _ := must(t, "breach", "list", "--dir", dir); !strings.Contains(out, "OVERDUE") || !strings.Contains(out, "overdue 3h") {
		t.Fatalf("breach list after the correction:\n%s", out)
	}
	refused(t, 4, "reason", append([]string{"breach", "update", "b1", "--notified", "now"}, signing...)...)
	must(t, append([]string{"breach", "update", "b1", "--notified", "now", "--late-reason", "the theft was found only on the third day's audit",
		"--subjects", "40", "--nature", "encrypted recordings on a stolen disk"}, signing...)...)
	out, _ = must(t, "breach", "report", "b1", "--dir", dir)
	if !strings.Contains(out, "about 40") || !strings.Contains(out, "after the deadline") || !strings.Contains(out, "third day") {
		t.Fatalf("report after the notification:\n%s", out)
	}
	if out, _ := must(t, "status", "--dir", dir); strings.Contains(out, "BREACH     b1") {
		t.Fatalf("a notified breach still ticks in status:\n%s", out)
	}
	// A breach closed without notification needs the reason it need not be.
	must(t, append([]string{"breach", "open", "--what", "a viewer's laptop was lost", "--detected", "1h", "--id", "b2"}, signing...)...)
	refused(t, 4, "why it need not be", append([]string{"breach", "close", "b2", "--outcome", "found the next day"}, signing...)...)
	must(t, append([]string{"breach", "close", "b2", "--outcome", "found the next day", "--not-notified-reason", "the disk was encrypted and never out of sight long"}, signing...)...)
	if out, _ := must(t, "breach", "list", "--dir", dir); strings.Contains(out, "b2") {
		t.Fatalf("a closed breach listed without --all:\n%s", out)
	}
	if out, _ := must(t, "breach", "list", "--dir", dir, "--all"); !strings.Contains(out, "b2") || !strings.Contains(out, "closed") {
		t.Fatalf("breach list --all:\n%s", out)
	}

	refused(t, 4, "30 days", append([]string{"audit", "retention", "--keep", "240h"}, signing...)...)
	refused(t, 4, "justification", append([]string{"audit", "retention", "--keep", "2160h"}, signing...)...)
	must(t, append([]string{"audit", "retention", "--keep", "2160h", "--justification", "insurance claims are filed up to 90 days after an incident"}, signing...)...)
}
