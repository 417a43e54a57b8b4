package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	docs := t.TempDir()
	refused(t, 1, "custos controller set", "controller", "show", "--dir", dir)
	refused(t, 4, "custos controller set", "gdpr", "ropa", "--dir", dir, "--out", filepath.Join(docs, "ropa.pdf"))
	refused(t, 2, "--name, --address and --email are required", append([]string{"controller", "set", "--name", "x"}, signing...)...)
	refused(t, 4, "email", append([]string{"controller", "set", "--name", "Acme", "--address", "Praha", "--email", "not-an-email"}, signing...)...)
	name := `<script>alert(1)</script> „Kamery“ s.r.o.`
	must(t, append([]string{"controller", "set", "--name", name, "--address", "Vinohradská 1, 120 00 Praha 2", "--email", "gdpr@acme.cz",
		"--dpo-name", "Jana Dvořáková", "--dpo-email", "dpo@acme.cz"}, signing...)...)
	if out, _ := must(t, "controller", "show", "--dir", dir); !strings.Contains(out, name) || !strings.Contains(out, "Jana Dvořáková") {
		t.Fatalf("controller show:\n%s", out)
	}

	checkGDPRDocuments(t, dir, alice, docs, name, must, refused)

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

// checkGDPRDocuments: the documents come from the committed policy, with
// the controller's text escaped; a sign needs an https notice URL; gdpr
// check knows a site's DPIA made here and a camera added after it.
func checkGDPRDocuments(t *testing.T, dir, alice, docs, controller string, must func(*testing.T, ...string) (string, string), refused func(*testing.T, int, string, ...string)) {
	refused(t, 2, "want a .pdf or .html file", "gdpr", "ropa", "--dir", dir, "--out", filepath.Join(docs, "ropa.txt"))
	refused(t, 2, "--lang", "gdpr", "ropa", "--dir", dir, "--out", filepath.Join(docs, "ropa.pdf"), "--lang", "de")
	refused(t, 1, "https", "gdpr", "sign", "--site", "praha-1", "--notice-url", "http://acme.cz/cctv", "--dir", dir, "--out", filepath.Join(docs, "sign.pdf"))
	refused(t, 1, "site", "gdpr", "notice", "--site", "nowhere", "--dir", dir, "--out", filepath.Join(docs, "n.html"))
	notice := filepath.Join(docs, "notice.html")
	if out, _ := must(t, "gdpr", "notice", "--site", "praha-1", "--lang", "cs", "--dir", dir, "--out", notice); !strings.Contains(out, "from policy version") {
		t.Fatalf("gdpr notice: %s", out)
	}
	b, err := os.ReadFile(notice)
	if err != nil {
		t.Fatal(err)
	}
	if html := string(b); strings.Contains(html, "<script>alert") || !strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, "Úřad pro ochranu osobních údajů") {
		t.Fatalf("notice.html does not escape %q or lacks the authority:\n%.2000s", controller, html)
	}
	for _, f := range []string{"ropa.pdf", "sign.pdf"} {
		args := []string{"gdpr", strings.TrimSuffix(f, ".pdf"), "--dir", dir, "--out", filepath.Join(docs, f)}
		if f == "sign.pdf" {
			args = append(args, "--site", "praha-1", "--notice-url", "https://acme.cz/cctv")
		}
		must(t, args...)
		if b, err := os.ReadFile(filepath.Join(docs, f)); err != nil || !strings.HasPrefix(string(b), "%PDF-") {
			t.Fatalf("%s: not a PDF (%v)", f, err)
		}
	}
	// No DPIA yet: check says so (exit 1); after one, not; a camera added
	// since makes it stale.
	out, _ := runCLIOut(t, "gdpr", "check", "--dir", dir)
	if !strings.Contains(out, "no-dpia") {
		t.Fatalf("gdpr check without a DPIA:\n%s", out)
	}
	must(t, "gdpr", "dpia", "--site", "praha-1", "--dir", dir, "--out", filepath.Join(docs, "dpia.pdf"))
	if out, _ := runCLIOut(t, "gdpr", "check", "--dir", dir); strings.Contains(out, "no-dpia") || strings.Contains(out, "camera-after-dpia") {
		t.Fatalf("gdpr check after the DPIA:\n%s", out)
	}
	must(t, "camera", "add", "--site", "praha-1", "--name", "yard", "--source", "rtsp://10.0.0.8/s1", "--purpose", "protection of property", "--dir", dir, "--as", alice)
	if out, _ := runCLIOut(t, "gdpr", "check", "--dir", dir); !strings.Contains(out, "camera-after-dpia") || !strings.Contains(out, "praha-1/yard") {
		t.Fatalf("gdpr check after a new camera:\n%s", out)
	}
}

// runCLIOut runs custos and returns its stdout and exit code, whatever it is.
func runCLIOut(t *testing.T, args ...string) (string, int) {
	t.Helper()
	code, out, _ := runCLI(args...)
	return out, code
}
