package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
)

// The request commands against a running datacenter: file a request, list
// it, self-approval refused (exit 4), an approver's approval counted, an
// export with one approval refused (exit 4), a second decision by the same
// approver refused; verify-export accepts a signed export and rejects a
// flipped byte. (The release and export themselves run across a federation
// in node's TestReleaseAndExport.)
func TestCLIRequestFlow(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice, bob, carol, m1 := filepath.Join(tmp, "alice.key"), filepath.Join(tmp, "bob.key"), filepath.Join(tmp, "carol.key"), filepath.Join(tmp, "m1.key")
	for _, k := range []string{alice, bob, carol, m1} {
		if code, _, errOut := runCLI("admin", "keygen", "--out", k, "--name", strings.TrimSuffix(filepath.Base(k), ".key")); code != 0 {
			t.Fatalf("keygen: %s", errOut)
		}
	}
	dir := filepath.Join(tmp, "dc-a")
	port := freeLoopbackPort(t)
	listen := net.JoinHostPort("127.0.0.1", itoa(port))
	rkFile := newRecoveryKey(t, tmp)
	code, _, errOut := runCLI("init", "--dir", dir, "--name", "dc-a", "--listen", listen, "--federation", "acme", "--admin-key", alice+".pub", "--recovery", rkFile+".pub")
	if code != 0 {
		t.Fatal(errOut)
	}
	cancel, done := startUp(dir, port)
	defer func() { cancel(); <-done }()
	waitCLI(t, "members", "--dir", dir)
	must := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("custos %q: exit %d: %s%s", args, code, out, errOut)
		}
		return out
	}
	refused := func(code int, want string, args ...string) {
		t.Helper()
		c, out, errOut := runCLI(args...)
		if c != code || !strings.Contains(out+errOut, want) {
			t.Fatalf("custos %q: exit %d %s%s; want exit %d mentioning %q", args, c, out, errOut, code, want)
		}
	}
	must("site", "add", "--name", "praha-1", "--dir", dir, "--as", alice)
	must("camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsp://10.0.0.7/s1", "--purpose", "protection of property", "--dir", dir, "--as", alice)
	must("admin", "add", "--name", "bob", "--key", bob+".pub", "--role", "approver", "--dir", dir, "--as", alice)

	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(-59 * time.Minute).UTC().Format(time.RFC3339)
	checkGovernance(t, dir, alice, bob, carol, m1, from, to, must, refused)
	refused(2, "--cameras, --from, --to, --purpose and --basis are required", "request", "--cameras", "praha-1/door", "--dir", dir, "--as", alice)
	refused(2, "RFC 3339", "request", "--cameras", "praha-1/door", "--from", "yesterday", "--to", to, "--purpose", "p", "--basis", "b", "--dir", dir, "--as", alice)
	// stdout holds only the ID (scripts read it); stderr says what comes next.
	if code, out, errOut := runCLI("request", "--cameras", "praha-1/door", "--from", from, "--to", to, "--purpose", "theft at the door",
		"--basis", "art. 6(1)(f)", "--id", "r1", "--dir", dir, "--as", alice); code != 0 || strings.TrimSpace(out) != "r1" ||
		!strings.Contains(errOut, "custos approve r1") || !strings.Contains(errOut, "custos export r1") {
		t.Fatalf("request: exit %d, printed %q, hint %q", code, out, errOut)
	}
	if out := must("requests", "--dir", dir); !strings.Contains(out, "r1") || !strings.Contains(out, "pending") || !strings.Contains(out, "0/2") {
		t.Fatalf("requests:\n%s", out)
	}
	refused(4, "never the requester", "approve", "r1", "--dir", dir, "--as", alice)
	refused(2, "usage: custos approve ID", "approve", "--dir", dir, "--as", bob)
	// approve shows what bob approves (alice's request) before it names
	// bob as the one who approved.
	if out := must("approve", "r1", "--dir", dir, "--as", bob); !strings.Contains(out, "requester  alice") || !strings.Contains(out, "cameras    praha-1/door") ||
		!strings.Contains(out, "approvals  0 of 2: none yet") || !strings.HasSuffix(out, "approved r1 as bob (1 of 2 approvals: bob)\n") {
		t.Fatalf("approve:\n%s", out)
	}
	var rows []struct {
		ID        string `json:"id"`
		Node      string `json:"node"`
		Key       string `json:"key"`
		Status    string `json:"status"`
		Approvals []struct{ User string }
	}
	if err := json.Unmarshal([]byte(must("requests", "--dir", dir, "--json")), &rows); err != nil || len(rows) != 1 ||
		rows[0].Node != "dc-a" || len(rows[0].Key) != 64 || len(rows[0].Approvals) != 1 || rows[0].Approvals[0].User != "bob" {
		t.Fatalf("requests --json: %+v %v", rows, err)
	}
	out := filepath.Join(tmp, "r1.ts")
	refused(4, "pending (1 of 2 approvals)", "export", "r1", "--out", out, "--dir", dir, "--as", alice)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused export left %s", out)
	}
	checkRecoverSharesRefused(t, tmp, dir, rkFile)
	refused(4, "already approved or denied", "deny", "r1", "--reason", "no", "--dir", dir, "--as", bob)
	refused(2, "--reason is required", "deny", "r1", "--dir", dir, "--as", bob)
	checkApprovedExport(t, tmp, dir, alice, bob, carol, must, refused)
	checkRelativeRequest(t, dir, alice, bob, must)
	checkEraseAndHold(t, dir, alice, bob, carol, from, to, must, refused)

	checkVerifyExport(t, tmp, dir, alice)
	checkRedactWithPolicy(t, tmp, dir, alice)
}

// checkApprovedExport: the second approval completes the quorum and says
// so; an approved request is still refused (exit 4) to anyone but its
// requester; a failed export is a sentence, not an HTTP status.
func checkApprovedExport(t *testing.T, tmp, dir, alice, bob, carol string, must func(...string) string, refused func(int, string, ...string)) {
	t.Helper()
	out := must("approve", "r1", "--dir", dir, "--as", carol)
	if !strings.Contains(out, "approvals  1 of 2: bob") || !strings.HasSuffix(out, "approved r1 as carol (2 of 2 approvals: bob, carol)\n"+
		"the quorum has approved request r1: alice can export it on dc-a (custos export r1)\n") {
		t.Fatalf("the second approval:\n%s", out)
	}
	checkZoned(t, "approve", out)
	file := filepath.Join(tmp, "bob.ts")
	refused(4, "refused by the policy: request \"r1\" was filed by alice; only its requester may export it, not bob", "export", "r1", "--out", file, "--dir", dir, "--as", bob)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused export left %s", file)
	}
	os.WriteFile(file, []byte("keep"), 0o600)
	code, _, errOut := runCLI("export", "r1", "--out", file, "--dir", dir, "--as", alice)
	if code != 1 || !strings.HasSuffix(errOut, "\ncustos export: "+file+" exists; refusing to overwrite it\n") {
		t.Fatalf("export over an existing file: exit %d %q", code, errOut)
	}
	refused(1, "no request or proposal \"r9\" in the policy of the node in", "approve", "r9", "--dir", dir, "--as", bob)
}

// checkRelativeRequest: request's --from and --to take durations back
// from now, and a sign; requests prints the range with its zone.
func checkRelativeRequest(t *testing.T, dir, alice, bob string, must func(...string) string) {
	t.Helper()
	before := time.Now()
	must("request", "--cameras", "praha-1/door", "--from", "2h", "--to", "-1h", "--purpose", "p", "--basis", "b", "--id", "r2", "--dir", dir, "--as", alice)
	var rows []struct {
		ID       string
		From, To time.Time
	}
	if err := json.Unmarshal([]byte(must("requests", "--dir", dir, "--json")), &rows); err != nil || len(rows) != 2 || rows[1].ID != "r2" {
		t.Fatalf("requests --json: %+v %v", rows, err)
	}
	if d := before.Add(-2 * time.Hour).Sub(rows[1].From); d < -time.Minute || d > time.Minute || rows[1].To.Sub(rows[1].From).Round(time.Minute) != time.Hour {
		t.Errorf("--from 2h --to -1h made %v to %v (filed at %v)", rows[1].From, rows[1].To, before)
	}
	out := must("requests", "--dir", dir)
	checkZoned(t, "requests", out)
	must("deny", "r2", "--reason", "a test", "--dir", dir, "--as", bob)
}

// checkRecoverSharesRefused: recover-shares wants --dir and --key, refuses
// a file that is no recovery key without echoing it, a wrong passphrase,
// an unencrypted key, and a request filed on a custodian. (Its success,
// with a datacenter missing, is in node's TestReleaseAndExport.)
func checkRecoverSharesRefused(t *testing.T, tmp, dir, rkFile string) {
	t.Helper()
	junk, plain, wrong := filepath.Join(tmp, "junk.asc"), filepath.Join(tmp, "plain.key"), filepath.Join(tmp, "wrong-pass")
	if err := os.WriteFile(junk, []byte("SECRET-LOOKING-JUNK"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fid, err := node.FederationIDOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := keys.LoadRecoveryKey(rkFile, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	err = keys.WriteCustodianKey(plain, rk)
	rk.Zero()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{2, "--dir, --key and --federation are required", []string{"recover-shares", "r1", "--dir", dir, "--key", rkFile}},
		{2, "usage: custos recover-shares ID", []string{"recover-shares", "--dir", dir, "--key", rkFile, "--federation", fid}},
		{1, "not one armored OpenPGP private key", []string{"recover-shares", "r1", "--dir", dir, "--key", junk, "--federation", fid}},
		{1, "wrong passphrase", []string{"recover-shares", "r1", "--dir", dir, "--key", rkFile, "--passphrase-file", wrong, "--federation", fid}},
		{1, "not passphrase-protected", []string{"recover-shares", "r1", "--dir", dir, "--key", plain, "--federation", fid}},
		// r1 was filed on dc-a, a custodian: the recovery key never answers there.
		{1, "the recovery key answers only to a node that holds no share", []string{"recover-shares", "r1", "--dir", dir, "--key", rkFile, "--federation", fid}},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) || strings.Contains(out+errOut, "SECRET-LOOKING") || strings.Contains(out+errOut, "PRIVATE KEY") {
			t.Errorf("custos %q: exit %d %s%s; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
}

// checkVerifyExport writes an export and its manifest signed with alice's
// key as export does, and checks verify-export on it and on a copy with one
// byte flipped.
func checkVerifyExport(t *testing.T, tmp, dir, aliceFile string) {
	t.Helper()
	k, err := keys.LoadAdminKey(aliceFile, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	file := filepath.Join(tmp, "x.ts")
	data := []byte(strings.Repeat("not really video ", 100))
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	from := time.Now().Add(-time.Hour).Truncate(time.Second)
	m := &keys.Manifest{Version: keys.ManifestVersion, Federation: "acme", RequestID: "r1", Requester: "carol", Approvers: []string{"bob", "dave"},
		Purpose: "p", Basis: "b", Cameras: []string{"praha-1/door"}, From: from, To: from.Add(time.Minute), Exporter: "alice", ExporterNode: "dc-a",
		Created: time.Now(), Segments: []keys.ManifestSegment{{Camera: "praha-1/door", Start: from, End: from.Add(time.Second), CiphertextSHA256: h, PlaintextSHA256: h, Store: "store-1", Link: h}},
		Output: keys.ManifestOutput{Name: "x.ts", Bytes: int64(len(data)), SHA256: h, Frames: 1}}
	body, sig, err := keys.SignManifest(k, m)
	if err != nil {
		t.Fatal(err)
	}
	bp, sp := manifestPaths(file)
	os.WriteFile(bp, body, 0o600)
	os.WriteFile(sp, sig, 0o600)
	code, out, errOut := runCLI("verify-export", file, "--dir", dir)
	if code != 0 || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "signature: the manifest is signed by key "+k.Fingerprint()+", alice's key in the policy") ||
		!strings.Contains(out, "exporter: alice is a user of federation \"acme\"") || !strings.Contains(out, "file: "+file+" has the") || strings.Contains(out, "not checked") {
		t.Fatalf("verify-export --dir: exit %d %s%s", code, out, errOut)
	}
	checkZoned(t, "verify-export", out)
	// Offline: with the key export writes beside the manifest, the files'
	// integrity is checked, and the output says whose key is not.
	refused := func(code int, want string, args ...string) {
		t.Helper()
		if c, out, errOut := runCLI(append([]string{"verify-export", file}, args...)...); c != code || !strings.Contains(out+errOut, want) {
			t.Errorf("verify-export %q: exit %d %s%s; want exit %d mentioning %q", args, c, out, errOut, code, want)
		}
	}
	refused(1, "no "+file+".manifest.pub beside the export", nil...)
	os.WriteFile(manifestKeyPath(file), k.ArmoredPublicKey(), 0o600)
	code, out, errOut = runCLI("verify-export", file)
	if code != 0 || !strings.HasPrefix(out, "INTACT: ") || !strings.Contains(out, "which came with the export") ||
		!strings.Contains(out, "not checked: whose key "+k.Fingerprint()+" is") {
		t.Fatalf("verify-export without --dir: exit %d %s%s", code, out, errOut)
	}
	bobPub := filepath.Join(tmp, "bob.key.pub")
	refused(0, "OK: ", "--key", aliceFile+".pub")
	refused(1, "signature", "--key", bobPub)
	refused(2, "not both", "--key", bobPub, "--dir", dir)
	data[7] ^= 1
	os.WriteFile(file, data, 0o600)
	refused(1, "does not match", "--dir", dir)
	refused(1, "does not match", nil...)
	data[7] ^= 1
	os.WriteFile(file, data, 0o600)
	// A manifest re-signed by another key, with that key beside it, is
	// intact offline, and refused against the policy.
	bob, err := keys.LoadAdminKey(filepath.Join(tmp, "bob.key"), []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	body, sig, err = keys.SignManifest(bob, m)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bp, body, 0o600)
	os.WriteFile(sp, sig, 0o600)
	os.WriteFile(manifestKeyPath(file), bob.ArmoredPublicKey(), 0o600)
	refused(0, "not checked: whose key "+bob.Fingerprint()+" is", nil...)
	refused(1, "signature does not verify", "--dir", dir)
}

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{{0, "[..........]"}, {0.5, "[#####.....]"}, {1, "[##########]"}, {1.7, "[##########]"}, {-1, "[..........]"}} {
		if got := progressBar(tc.f, 10); got != tc.want {
			t.Errorf("progressBar(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

// checkGovernance: before the seal no request is accepted and sealing needs
// three approvers; once sealed, alice alone cannot add an approver: her
// command becomes a proposal that waits for two approvers besides her.
func checkGovernance(t *testing.T, dir, alice, bob, carol, m1, from, to string, must func(...string) string, refused func(int, string, ...string)) {
	t.Helper()
	refused(4, "not sealed yet", "request", "--cameras", "praha-1/door", "--from", from, "--to", to, "--purpose", "p",
		"--basis", "b", "--dir", dir, "--as", alice)
	if out := must("quorum", "show", "--dir", dir); !strings.Contains(out, "bootstrap: not sealed") {
		t.Fatalf("quorum show before the seal:\n%s", out)
	}
	refused(4, "needs at least 3 users who can approve", "quorum", "seal", "--dir", dir, "--as", alice)
	must("admin", "add", "--name", "carol", "--key", carol+".pub", "--role", "approver", "--dir", dir, "--as", alice)
	out := must("quorum", "seal", "--dir", dir, "--as", alice)
	if n := strings.Count(out, "rescue "); n < 3 || !strings.Contains(out, "applied quorum.seal") {
		t.Fatalf("quorum seal printed:\n%s", out)
	}
	out = must("admin", "add", "--name", "m1", "--key", m1+".pub", "--role", "approver", "--dir", dir, "--as", alice)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := lines[len(lines)-1]
	if !strings.HasPrefix(id, "p-") || !strings.Contains(out, "takes effect once 2 approvers other than you approve") {
		t.Fatalf("admin add on a sealed federation printed:\n%s", out)
	}
	if out := must("proposals", "--dir", dir); !strings.Contains(out, id) || !strings.Contains(out, "0/2") || !strings.Contains(out, "user.add m1") {
		t.Fatalf("proposals:\n%s", out)
	}
	refused(4, "never the proposer", "approve", id, "--dir", dir, "--as", alice)
	if out := must("approve", id, "--dir", dir, "--as", bob); !strings.HasPrefix(out, "proposal "+id+"\n  proposer   alice\n  change     user.add m1 (role approver") ||
		!strings.HasSuffix(out, "approved "+id+" as bob (1 of 2 approvals: bob)\n") {
		t.Fatalf("approve of a proposal:\n%s", out)
	}
	for _, cmd := range []string{"proposals", "quorum show"} {
		checkZoned(t, cmd, must(append(strings.Fields(cmd), "--dir", dir)...))
	}
	if out := must("quorum", "show", "--dir", dir); strings.Contains(out, "m1") {
		t.Fatalf("one approval besides alice's made m1 an approver:\n%s", out)
	}
	must("approve", id, "--dir", dir, "--as", carol)
	if out := must("quorum", "show", "--dir", dir); !strings.Contains(out, "m1") || !strings.Contains(out, "sealed at") {
		t.Fatalf("the quorum's approval did not add m1:\n%s", out)
	}
}

// checkEraseAndHold: an erasure is filed, shown to approvers as one,
// approved by the quorum and carried out (erase status --wait: each node's
// receipt); a hold is approved, listed, and refuses a later erasure of its
// footage, naming it.
func checkEraseAndHold(t *testing.T, dir, alice, bob, carol, from, to string, must func(...string) string, refused func(int, string, ...string)) {
	t.Helper()
	refused(2, "--camera, --from, --to and --reason are required", "erase", "--camera", "praha-1/door", "--dir", dir, "--as", alice)
	refused(2, "--until are required", "hold", "--camera", "praha-1/door", "--from", from, "--to", to, "--reason", "r", "--dir", dir, "--as", alice)
	refused(4, "after the command's time", "erase", "--camera", "praha-1/door", "--from", from, "--to", "+1h", "--reason", "r", "--dir", dir, "--as", alice)
	// r1's footage is released (approved, its keys live): not erasable yet.
	refused(4, `is released to request "r1"`, "erase", "--camera", "praha-1/door", "--from", from, "--to", to, "--reason", "r", "--dir", dir, "--as", alice)
	out := must("erase", "--camera", "praha-1/door", "--from", "5h", "--to", "4h", "--reason", "the subject's request of 2026-12-01", "--id", "e1", "--dir", dir, "--as", alice)
	if !strings.HasSuffix(out, "\ne1\n") || !strings.Contains(out, "segment granularity") {
		t.Fatalf("erase printed %q", out)
	}
	if out := must("approve", "e1", "--dir", dir, "--as", bob); !strings.Contains(out, "ERASURE request e1") || !strings.Contains(out, "deleted whole") {
		t.Fatalf("approve of an erasure:\n%s", out)
	}
	if out := must("approve", "e1", "--dir", dir, "--as", carol); !strings.Contains(out, "the quorum has approved erasure e1") {
		t.Fatalf("the erasure's second approval:\n%s", out)
	}
	if out := must("erase", "status", "e1", "--dir", dir, "--wait", "30s"); !strings.Contains(out, "erasure e1: done") ||
		!strings.Contains(out, "dc-a") || !strings.Contains(out, "signed with its node key") {
		t.Fatalf("erase status:\n%s", out)
	}
	refused(1, "not an erasure", "erase", "status", "r1", "--dir", dir)

	if out := must("hold", "--camera", "praha-1/door", "--from", "3h", "--to", "2h", "--reason", "police case 12/2026", "--until", "24h",
		"--id", "h1", "--dir", dir, "--as", alice); strings.TrimSpace(out) != "h1" {
		t.Fatalf("hold printed %q", out)
	}
	must("approve", "h1", "--dir", dir, "--as", bob)
	must("approve", "h1", "--dir", dir, "--as", carol)
	if out := must("holds", "--dir", dir); !strings.Contains(out, "h1") || !strings.Contains(out, "active") || !strings.Contains(out, "police case") {
		t.Fatalf("holds:\n%s", out)
	}
	refused(4, `hold "h1"`, "erase", "--camera", "praha-1/door", "--from", "150m", "--to", "140m", "--reason", "r", "--dir", dir, "--as", alice)
	// A second hold over the same footage is filed, and told of the first.
	if code, out, errOut := runCLI("hold", "--camera", "praha-1/*", "--from", "150m", "--to", "140m", "--reason", "insurance claim", "--until", "48h",
		"--id", "h2", "--dir", dir, "--as", alice); code != 0 || strings.TrimSpace(out) != "h2" || !strings.Contains(errOut, "overlaps hold h1") {
		t.Fatalf("overlapping hold: exit %d, %q, %q", code, out, errOut)
	}
}
