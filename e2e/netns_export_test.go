package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetnsExportFromReplica: two approvers and the seal, a request filed
// on the admin node and approved by both; then the store is killed
// (SIGKILL) and the export is read from the datacenters' replicas. It
// verifies against the store's seals: the CLI and the signed manifest name
// the store and a gapless run of its chain, and verify-export accepts the
// file, and the redacted copy export --redact wrote beside it with its
// source. (Tampered, moved and forged segments on a replica are refused in
// node's TestReleaseAndExport, which can write into a replica's store.)
func TestNetnsExportFromReplica(t *testing.T) {
	f := newNetFed(t)
	keys := map[string]string{}
	for _, name := range []string{"bob", "carol"} {
		keys[name] = filepath.Join(f.tmp, name+".key")
		f.must(nil, "admin", "keygen", "--out", keys[name], "--name", name)
		f.submit(f.dcA, 30*time.Second, "admin", "add", "--name", name, "--key", keys[name]+".pub", "--role", "approver")
	}
	f.submit(f.dcA, 30*time.Second, "quorum", "seal")

	// A range of recorded footage, replicated to both datacenters.
	from := time.Now().Add(-2 * time.Second).UTC().Truncate(time.Second)
	to := from.Add(8 * time.Second)
	if !f.waitReplicated(to.Add(segmentEvery), 120*time.Second, f.dcA, f.dcB) {
		t.Fatal("the range was not replicated")
	}
	cam := netCameras[0]
	f.waitUntil(f.desk, 30*time.Second, "desk to know both approvers", func() (bool, string) {
		out, errOut, err := f.run(15*time.Second, "quorum", "show", "--dir", f.desk.dir)
		return err == nil && strings.Contains(out, "carol") && strings.Contains(out, "sealed at"), out + errOut
	})
	out := f.must(f.desk, "request", "--cameras", cam, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--purpose", "e2e export from a replica", "--basis", "test", "--id", "r1", "--dir", f.desk.dir, "--as", f.admin)
	if strings.TrimSpace(out) != "r1" {
		t.Fatalf("request printed %q", out)
	}
	f.waitUntil(f.desk, 30*time.Second, "desk's replica of the policy to hold r1", func() (bool, string) {
		out, errOut, err := f.run(15*time.Second, "requests", "--dir", f.desk.dir)
		return err == nil && strings.Contains(out, "r1"), out + errOut
	})
	for _, name := range []string{"bob", "carol"} {
		f.must(f.desk, "approve", "r1", "--dir", f.desk.dir, "--as", keys[name])
	}

	f.kill(f.store)
	f.logf("killed the store; exporting r1 from the replicas")
	export, redacted := filepath.Join(f.tmp, "r1.ts"), filepath.Join(f.tmp, "r1.redacted.ts")
	var stdout, stderr string
	var err error
	f.waitUntil(f.desk, 120*time.Second, "the export of r1 from a replica", func() (bool, string) {
		stdout, stderr, err = f.run(100*time.Second, "export", "r1", "--out", export, "--redact", "0,0,64,64", "--dir", f.desk.dir, "--as", f.admin)
		if err != nil {
			for _, p := range []string{export, redacted, redacted + ".redaction.json", redacted + ".redaction.sig", redacted + ".redaction.pub"} {
				os.Remove(p)
			}
			return false, err.Error() + ": " + stderr
		}
		return true, ""
	})
	if !strings.Contains(stdout, cam+": sealed by store store-praha-1") || !strings.Contains(stdout, "complete: no gap in the chain of custody") {
		t.Fatalf("export printed:\n%s%s", stdout, stderr)
	}
	if out := f.must(f.desk, "verify-export", export, "--dir", f.desk.dir); !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify-export:\n%s", out)
	}
	// The subject access copy beside it, with a corner box hidden, proves
	// its source: the export just verified.
	if !strings.Contains(stdout, "redacted r1.ts: "+redacted) || !strings.Contains(stdout, "1 box made unrecognisable") {
		t.Fatalf("export --redact printed:\n%s%s", stdout, stderr)
	}
	if out := f.must(f.desk, "verify-export", redacted, "--dir", f.desk.dir); !strings.HasPrefix(out, "OK: ") ||
		!strings.Contains(out, "source: "+export) || strings.Contains(out, "not checked") {
		t.Fatalf("verify-export of the redacted copy:\n%s", out)
	}
	var m struct {
		Version  int `json:"version"`
		Segments []struct {
			Store string `json:"store"`
			Seq   uint64 `json:"seq"`
			Link  string `json:"link"`
		} `json:"segments"`
		Gaps []any `json:"gaps"`
	}
	b, err := os.ReadFile(export + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Version != 2 || len(m.Segments) < 2 || len(m.Gaps) != 0 {
		t.Fatalf("manifest: version %d, %d segments, %d gaps, %v", m.Version, len(m.Segments), len(m.Gaps), err)
	}
	for i, s := range m.Segments {
		if s.Store != "store-praha-1" || s.Seq != m.Segments[0].Seq+uint64(i) || len(s.Link) != 64 {
			t.Errorf("manifest segment %d: %+v, want store-praha-1's sequence %d", i, s, m.Segments[0].Seq+uint64(i))
		}
	}
	f.logf("exported %d segments (sequence %d to %d) from the replicas with the store dead",
		len(m.Segments), m.Segments[0].Seq, m.Segments[len(m.Segments)-1].Seq)
}
