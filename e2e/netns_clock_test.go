package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// TestNetnsClockSkew sets the store's wall clock back 1 h (a test build's
// DIR/testclock-offset) in the middle of desk's live-view window: the view
// still ends within 2 s of the window's true end, a new view is refused
// with the skew error while the clock is wrong, and the store shows the
// alarm in `custos status`.
func TestNetnsClockSkew(t *testing.T) {
	needNetns(t)
	bin := filepath.Join(t.TempDir(), "custos-testclock")
	if out, err := exec.Command("go", "build", "-tags", "custos_testclock", "-o", bin, module+"/cmd/custos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f := newNetFedOn(t, bin)
	cam := netCameras[0]

	// Replace desk's 2 h grant with one that ends in 90 s.
	pol := clockPolicy(t, f.dcA)
	for id, g := range pol.Grants {
		if g.Subject.Name == "desk" && !g.Revoked {
			f.submit(f.dcA, 30*time.Second, "revoke", "grant", id)
		}
	}
	f.submit(f.dcA, 30*time.Second, "grant", "--to", "node:desk", "--action", "live", "--cameras", "praha-1/*", "--until", "90s",
		"--purpose", "e2e clock skew", "--id", "g-short")
	var end time.Time
	f.waitUntil(f.store, 30*time.Second, "the store to hold only the short grant", func() (bool, string) {
		p := clockPolicy(t, f.store)
		for id, g := range p.Grants {
			if g.Subject.Name == "desk" && !g.Revoked && id != "g-short" {
				return false, "still " + id
			}
		}
		g := p.Grants["g-short"]
		if g == nil {
			return false, "no g-short yet"
		}
		end = g.Window.Until
		return true, ""
	})
	f.logf("desk's grant ends at %s (in %v)", end.Format(time.RFC3339Nano), time.Until(end).Round(time.Millisecond))
	v := f.startLive(cam, 10*time.Minute)
	f.checkFlowing(v, 30*time.Second, "before the skew")

	if err := os.WriteFile(filepath.Join(f.store.dir, "testclock-offset"), []byte("-1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.logf("the store's clock set back 1 h")
	f.waitUntil(f.store, 30*time.Second, "the store's clock alarm", func() (bool, string) {
		var st struct {
			ClockAlarm string   `json:"clock_alarm"`
			Skew       *float64 `json:"clock_skew_seconds"`
		}
		if _, err := f.statusInto(f.store, &st); err != nil {
			return false, err.Error()
		}
		return strings.Contains(st.ClockAlarm, "behind the leader's"), fmt.Sprintf("alarm %q", st.ClockAlarm)
	})
	out, err := exec.Command(bin, "status", "--dir", f.store.dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALARM") || !strings.Contains(string(out), "behind the leader's") {
		t.Errorf("custos status of the skewed store: %v\n%s", err, out)
	}
	if time.Until(end) < 5*time.Second {
		t.Fatalf("the setup left %v of the window: too little to test a new view inside it", time.Until(end))
	}
	refused := exec.Command(bin, "live", "--dir", f.desk.dir, "--camera", cam, "--out", filepath.Join(f.tmp, "refused.ts"), "--for", "10s")
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "this node's clock is 1h0m") || !strings.Contains(string(out), "behind the leader's") {
		t.Errorf("a new live view from the skewed store: %v\n%s; want the skew error", err, out)
	} else {
		f.logf("a new live view is refused: %s", strings.TrimSpace(string(out)))
	}

	select {
	case <-v.done:
		at := time.Now()
		// The product promises the cut within 2 s; the viewer's process
		// exit after it is allowed one more second.
		if at.Before(end.Add(-time.Second)) || at.After(end.Add(3*time.Second)) {
			t.Errorf("the live view ended %v from its window's end; want within 2 s after it\n%s", at.Sub(end), v.stderr.String())
		} else {
			f.logf("the live view ended %v after its window's end", at.Sub(end).Round(time.Millisecond))
		}
		if !strings.Contains(v.stderr.String(), "access ended") {
			t.Errorf("the live view ended without the store's cut: %v\n%s", v.err, v.stderr.String())
		}
	case <-time.After(time.Until(end) + 30*time.Second):
		t.Fatalf("the live view outlived its window by 30 s on a store whose clock was set back 1 h")
	}
	os.Remove(filepath.Join(f.store.dir, "testclock-offset"))
}

// clockPolicy reads p's replica of the policy's grants.
func clockPolicy(t *testing.T, p *custosProc) struct {
	Grants map[string]*policy.Grant `json:"grants"`
} {
	t.Helper()
	var v struct {
		Grants map[string]*policy.Grant `json:"grants"`
	}
	sock := filepath.Join(p.dir, "custos.sock")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://custos/v1/policy")
	if err != nil {
		t.Fatalf("%s's policy: %v", p.name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s's policy: %v", p.name, err)
	}
	return v
}
