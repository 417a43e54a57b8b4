package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// testPassphrase is put into CUSTOS_PASSPHRASE before every runCLI: the
// CLI removes it from the environment once read.
var testPassphrase string

func setPass(t *testing.T, p string) {
	t.Helper()
	testPassphrase = p
	t.Cleanup(func() { testPassphrase = ""; os.Unsetenv("CUSTOS_PASSPHRASE") })
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	if testPassphrase != "" {
		os.Setenv("CUSTOS_PASSPHRASE", testPassphrase)
	}
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: custos"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"up"}, 2, "--dir is required"},
		{[]string{"up", "--dir", dir}, 2, "--listen is required"},
		{[]string{"up", "--dir", dir, "--listen", "no-such-host.invalid:5"}, 1, "give IP:PORT"},
		{[]string{"up", "--dir", dir, "--listen", "51820"}, 2, "want IP:PORT or HOST:PORT"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:0"}, 2, "port 0"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--uplink-mbit", "-1"}, 2, "--uplink-mbit -1: want 0 (unlimited)"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--uplink-mbit", "fast"}, 2, "invalid value \"fast\""},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--metrics", "0.0.0.0:9477"}, 2, "--metrics \"0.0.0.0:9477\": the metrics say what the federation records"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--metrics", "192.0.2.7:9477"}, 2, "serve them on loopback"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--metrics", "9477"}, 2, "want IP:PORT on loopback or the mesh"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas", "https://s3.example.net/b"}, 2, "--replicas: replicas location \"https://s3.example.net/b\": want s3://BUCKET/PREFIX"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas", "s3://Custos/x"}, 2, "may hold only lowercase letters"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas", "s3://ak:sk@custos/x"}, 2, "the endpoint and credentials come from the environment or --replicas-credentials"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas-credentials", filepath.Join(dir, "s3.toml")}, 2, "--replicas-credentials needs --replicas"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas", "s3://custos/dc-a", "--replicas-credentials", filepath.Join(dir, "none.toml")}, 2, "replicas credentials: stat"},
		{[]string{"invite", "--role", "datacenter", "--name", "dc-c", "--jurisdiction"}, 2, "flag needs an argument"},
		{[]string{"invite", "--role", "store", "--name", "s", "--expires", "1ms", "--dir", dir, "--as", "x.key"}, 2, "--expires must be between 1s and 720h"},
		{[]string{"live", "--dir", dir, "--camera", "praha-1/door", "--for", "-1s"}, 2, "--for must not be negative"},
		{[]string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--peers", filepath.Join(dir, "none.toml")}, 1, "no such file"},
		{[]string{"status"}, 2, "--dir is required"},
		{[]string{"status", "--dir", dir}, 1, "no node is running there"},
		{[]string{"status", "--dir", dir, "--wait", "300ms"}, 1, "not ready within 300ms: " + dir + ": no node is running there"},
		{[]string{"status", "--dir", dir, "--wait", "-1s"}, 2, "want a positive duration"},
		{[]string{"demo", "--for", "-1s"}, 2, "must not be negative"},
		{[]string{"key"}, 2, "--dir is required"},
		{[]string{"console", "--dir", dir}, 2, "--dir and --key are required"},
		{[]string{"console", "--dir", dir, "--key", "k", "--listen", "0.0.0.0:8080"}, 2, "loopback address only"},
		{[]string{"console", "--dir", dir, "--key", "k", "--listen", "localhost"}, 2, "want a loopback IP:PORT"},
		{[]string{"console", "--dir", dir, "--key", "k", "--idle", "1s"}, 2, "at least a minute"},
	}
	for _, tc := range cases {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("custos %q: exit %d, output %q; want exit %d mentioning %q", tc.args, code, out+errOut, tc.code, tc.want)
		}
	}
}

// up --replicas takes the endpoint and keys from the environment, refuses
// what is missing or unsafe, and never repeats a secret in its error; a
// group-readable credentials file is refused.
func TestUpReplicasCredentials(t *testing.T) {
	dir := t.TempDir()
	up := []string{"up", "--dir", dir, "--listen", "127.0.0.1:1", "--replicas", "s3://custos/dc-a"}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "no S3 endpoint: set CUSTOS_S3_ENDPOINT"},
		{map[string]string{"CUSTOS_S3_ENDPOINT": "s3.example.net", "CUSTOS_S3_SECRET_KEY": "topsecret-42"}, "a secret key but no access key"},
		{map[string]string{"CUSTOS_S3_ENDPOINT": "10.1.2.3:9000", "CUSTOS_S3_INSECURE": "1"}, "plain HTTP is allowed only to a loopback address"},
	} {
		for _, k := range []string{"CUSTOS_S3_ENDPOINT", "CUSTOS_S3_ACCESS_KEY", "CUSTOS_S3_SECRET_KEY", "CUSTOS_S3_REGION", "CUSTOS_S3_INSECURE"} {
			t.Setenv(k, c.env[k])
		}
		code, out, errOut := runCLI(up...)
		if code != 2 || !strings.Contains(out+errOut, c.want) || strings.Contains(out+errOut, "topsecret-42") {
			t.Errorf("env %v: exit %d, %q; want exit 2 saying %q, without the secret", c.env, code, out+errOut, c.want)
		}
	}
	creds := filepath.Join(dir, "s3.toml")
	if err := os.WriteFile(creds, []byte("endpoint = \"s3.example.net\"\naccess_key = \"ak\"\nsecret_key = \"topsecret-42\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(append(up, "--replicas-credentials", creds)...)
	if code != 2 || !strings.Contains(out+errOut, "mode 0644 lets group or others read or write it; chmod 600") || strings.Contains(out+errOut, "topsecret-42") {
		t.Errorf("a 0644 credentials file: exit %d, %q", code, out+errOut)
	}
}

func TestCLIVersionAndKey(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "custos ") {
		t.Fatalf("version: %d %q", code, out)
	}
	dir := t.TempDir()
	code, out, _ = runCLI("key", "--dir", dir, "--json")
	var k struct {
		PublicKey string `json:"public_key"`
		MeshAddr  string `json:"mesh_addr"`
		Created   bool   `json:"created"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || !strings.HasPrefix(k.PublicKey, "nodekey:") || !k.Created {
		t.Fatalf("key: %d %q", code, out)
	}
	if strings.Contains(out, "privkey") {
		t.Fatal("key printed the private key")
	}
	_, out2, _ := runCLI("key", "--dir", dir, "--json")
	if !strings.Contains(out2, k.PublicKey) || strings.Contains(out2, `"created":true`) {
		t.Fatalf("second key call: %q", out2)
	}
}

func TestCLIUpAndStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store-1")
	port := freeLoopbackPort(t)
	cancel, done := startUp(dir, port)
	var st node.Status
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut := runCLI("status", "--dir", dir, "--json")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status --json: %v\n%s", err, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never answered: %s", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Name != "store-1" || int(st.ListenPort) != port || !st.MeshAddr.IsValid() {
		t.Fatalf("status = %+v", st)
	}
	code, out, _ := runCLI("status", "--dir", dir)
	if code != 0 || !strings.Contains(out, "store-1") || !strings.Contains(out, st.PublicKey.String()) || !strings.Contains(out, "(no peers)") {
		t.Fatalf("status text: %d\n%s", code, out)
	}
	// A second node in the same directory is refused with a clear error.
	code, _, errOut := runCLI("up", "--dir", dir, "--listen", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "already running") {
		t.Fatalf("second up: %d %q", code, errOut)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up returned %v on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("up did not stop after its context ended")
	}
	if code, _, _ := runCLI("status", "--dir", dir); code != 1 {
		t.Fatal("status still answers after shutdown")
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	// Free for UDP and TCP alike (the datacenter's relay listens on TCP at
	// its WireGuard port), and below the ephemeral range, so that no
	// outgoing connection takes it before the node binds it.
	lo := net.IPv4(127, 0, 0, 1)
	for range 200 {
		p := 20000 + rand.IntN(12000)
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo, Port: p})
		if err != nil {
			continue
		}
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: lo, Port: p})
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// startUp runs `custos up` in the background; cancel stops it and done
// reports how it ended.
func startUp(dir string, port int) (cancel func(), done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() {
		ch <- runUp(ctx, []string{"--dir", dir, "--listen", net.JoinHostPort("127.0.0.1", itoa(port)), "--quiet"}, io.Discard)
	}()
	return cancel, ch
}

func TestCLIAudit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dc-a")
	cancel, done := startUp(dir, freeLoopbackPort(t))
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var code int
		code, out, _ = runCLI("audit", "--dir", dir, "--json", "--since", "1h")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("audit never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, `"action": "node-start"`) {
		t.Fatalf("audit lacks node-start:\n%s", out)
	}
	if code, out, _ := runCLI("audit", "verify", "--dir", dir); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("audit verify on a running node: %d %s", code, out)
	}
	if code, _, errOut := runCLI("audit", "--dir", dir, "--since", "yesterday"); code != 2 || !strings.Contains(errOut, "RFC 3339") {
		t.Fatalf("bad --since: %d %s", code, errOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Offline: an edited entry is caught, with its own exit status.
	if code, _, _ := runCLI("audit", "verify", "--dir", dir); code != 0 {
		t.Fatal("verify of a stopped node's intact journal failed")
	}
	j := filepath.Join(dir, "audit", "journal.jsonl")
	b, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(j, bytes.Replace(b, []byte("node-start"), []byte("node-stxrt"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI("audit", "verify", "--dir", dir)
	if code != 3 || !strings.Contains(out, "1") {
		t.Fatalf("verify of an edited journal: exit %d\n%s", code, out)
	}
	t.Logf("audit verify on the edited journal: %s", strings.TrimSpace(out))
}

func TestCLIAdminKeygen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "alice.key")
	setPass(t, "a long enough passphrase")
	code, stdout, errOut := runCLI("admin", "keygen", "--out", out, "--name", "alice")
	if code != 0 || !strings.Contains(stdout, "fingerprint") {
		t.Fatalf("keygen: %d %s %s", code, stdout, errOut)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi, err)
	}
	if _, err := os.Stat(out + ".pub"); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI("admin", "keygen", "--out", out, "--name", "alice"); code != 1 || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("second keygen: %d %s", code, errOut)
	}
	if code, _, _ := runCLI("admin", "keygen", "--name", "x"); code != 2 {
		t.Fatal("missing --out accepted")
	}
	setPass(t, "short")
	if code, _, errOut := runCLI("admin", "keygen", "--out", filepath.Join(dir, "b.key"), "--name", "b"); code != 1 || !strings.Contains(errOut, "shorter than 8") {
		t.Fatalf("short passphrase: %d %s", code, errOut)
	}
}

func TestCLIPolicyFlow(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice := filepath.Join(tmp, "alice.key")
	bob := filepath.Join(tmp, "bob.key")
	for _, k := range []string{alice, bob} {
		if code, _, errOut := runCLI("admin", "keygen", "--out", k, "--name", strings.TrimSuffix(filepath.Base(k), ".key")); code != 0 {
			t.Fatalf("keygen: %s", errOut)
		}
	}
	dir := filepath.Join(tmp, "dc-a")
	pc, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	listen := pc.LocalAddr().String()
	pc.Close()
	// The recovery key is made apart from the node; init takes its public
	// half (TestCLIInitRecovery checks that nothing secret reaches dc-a).
	rk := newRecoveryKey(t, tmp)
	code, out, errOut := runCLI("init", "--dir", dir, "--name", "dc-a", "--listen", listen, "--federation", "acme", "--admin-key", alice+".pub", "--recovery", rk+".pub")
	if code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	// key prints the address the node has: in the federation the
	// directory belongs to, not the default one.
	prefix, _ := keys.MeshPrefix("acme")
	if code, out, _ := runCLI("key", "--dir", dir); code != 0 || !strings.Contains(out, strings.TrimSuffix(prefix.Addr().String(), "::")) {
		t.Errorf("key on a node of acme: %d %q, want an address in %s", code, out, prefix)
	}
	if code, _, errOut := runCLI("key", "--dir", dir, "--federation", "other"); code != 2 || !strings.Contains(errOut, `belongs to federation "acme"`) {
		t.Errorf("key with another federation: %d %q", code, errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runUp(ctx, []string{"--dir", dir, "--listen", listen, "--quiet"}, io.Discard) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, _ := runCLI("members", "--dir", dir); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node never answered")
		}
		time.Sleep(100 * time.Millisecond)
	}
	must := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("custos %q: exit %d: %s%s", args, code, out, errOut)
		}
		return out
	}
	must("site", "add", "--name", "praha-1", "--dir", dir, "--as", alice)
	must("admin", "add", "--name", "bob", "--key", bob+".pub", "--role", "viewer", "--dir", dir, "--as", alice)
	must("grant", "--to", "user:bob", "--action", "live", "--cameras", "praha-1/*", "--until", "8h", "--purpose", "night shift", "--id", "g1", "--dir", dir, "--as", alice)
	out = must("grants", "--dir", dir)
	if !strings.Contains(out, "g1") || !strings.Contains(out, "night shift") || !strings.Contains(out, "active") {
		t.Fatalf("grants:\n%s", out)
	}
	// bob is a viewer: the policy refuses his change with its own exit status.
	code, _, errOut = runCLI("site", "add", "--name", "brno-1", "--dir", dir, "--as", bob)
	if code != 4 || !strings.Contains(errOut, "needs role admin") {
		t.Fatalf("viewer changing the policy: exit %d %s", code, errOut)
	}
	must("revoke", "grant", "g1", "--dir", dir, "--as", alice)
	checkGrantEnds(t, dir, alice, must)
	if out := must("grants", "--dir", dir, "--json"); !strings.Contains(out, `"revoked":true`) {
		t.Fatalf("grants after revoke: %s", out)
	}
	if out := must("members", "--dir", dir); !strings.Contains(out, "dc-a") || !strings.Contains(out, "datacenter") ||
		!strings.Contains(out, fmt.Sprintf("(protocol %d)", policy.Protocol)) {
		t.Fatalf("members:\n%s", out)
	}
	// Cameras: credentials are kept only by the site's store, never sent
	// to the policy through another node.
	code, _, errOut = runCLI("camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsp://admin:hunter2@10.0.0.7/s1",
		"--purpose", "protection of property", "--dir", dir, "--as", alice)
	if code != 1 || !strings.Contains(errOut, "only on the store of site") || strings.Contains(errOut, "hunter2") {
		t.Fatalf("camera with credentials through a datacenter: exit %d %s", code, errOut)
	}
	// So are its transport and certificate settings.
	code, _, errOut = runCLI("camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsps://10.0.0.7/s1", "--transport", "udp",
		"--purpose", "protection of property", "--dir", dir, "--as", alice)
	if code != 1 || !strings.Contains(errOut, "only on the store of site") {
		t.Fatalf("camera settings through a datacenter: exit %d %s", code, errOut)
	}
	code, _, errOut = runCLI("camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsp://10.0.0.7/s1",
		"--purpose", "protection of property", "--retention", "240h", "--dir", dir, "--as", alice)
	if code != 4 || !strings.Contains(errOut, "justification") {
		t.Fatalf("10 days of retention without a justification: exit %d %s", code, errOut)
	}
	must("camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsp://10.0.0.7/s1", "--purpose", "protection of property", "--dir", dir, "--as", alice)
	if out := must("camera", "list", "--dir", dir); !strings.Contains(out, "praha-1/door") || !strings.Contains(out, "rtsp://10.0.0.7/s1") || !strings.Contains(out, "72h0m0s") {
		t.Fatalf("camera list:\n%s", out)
	}
	if code, _, errOut := runCLI("cameras", "--dir", dir); code != 1 || !strings.Contains(errOut, "not a store") {
		t.Fatalf("cameras on a datacenter: exit %d %s", code, errOut)
	}
	// Live view: bad flags are usage errors; an unknown camera is an error
	// that leaves no file behind; an existing file is never overwritten.
	if code, _, errOut := runCLI("live", "--dir", dir); code != 2 || !strings.Contains(errOut, "--camera") {
		t.Fatalf("live without --camera: exit %d %s", code, errOut)
	}
	liveOut := filepath.Join(t.TempDir(), "live.ts")
	if code, _, errOut := runCLI("live", "--dir", dir, "--camera", "praha-1/nope", "--out", liveOut, "--for", "5s"); code != 1 || !strings.Contains(errOut, `no camera "praha-1/nope"`) {
		t.Fatalf("live of an unknown camera: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(liveOut); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed live view left %s: %v", liveOut, err)
	}
	os.WriteFile(liveOut, []byte("keep"), 0o600)
	if code, _, errOut := runCLI("live", "--dir", dir, "--camera", "praha-1/door", "--out", liveOut); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("live over an existing file: exit %d %s", code, errOut)
	}
	must("camera", "remove", "praha-1/door", "--dir", dir, "--as", alice)
	// Bad input is a usage error, not a submission.
	if code, _, _ := runCLI("grant", "--to", "bob", "--action", "live", "--cameras", "*", "--dir", dir, "--as", alice); code != 2 {
		t.Fatal("a bad --to was not a usage error")
	}
	setPass(t, "the wrong passphrase")
	if code, _, errOut := runCLI("site", "add", "--name", "x", "--dir", dir, "--as", alice); code != 1 || !strings.Contains(errOut, "wrong passphrase") {
		t.Fatalf("wrong passphrase: %d %s", code, errOut)
	}
	// Every change and the refusal are in the audit journal.
	out = must("audit", "--dir", dir, "--json")
	if strings.Count(out, `"action": "policy-change"`) < 5 || !strings.Contains(out, "needs role admin") {
		t.Fatalf("audit lacks the policy changes:\n%s", out)
	}
	checkAuditWidth(t, dir, alice)
	checkAuditQuery(t, dir, alice)
}

func TestCLIInviteAndJoin(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice := filepath.Join(tmp, "alice.key")
	if code, _, errOut := runCLI("admin", "keygen", "--out", alice, "--name", "alice"); code != 0 {
		t.Fatal(errOut)
	}
	dc := filepath.Join(tmp, "dc-a")
	dcPort := freeLoopbackPort(t)
	dcListen := net.JoinHostPort("127.0.0.1", itoa(dcPort))
	rk := newRecoveryKey(t, tmp)
	if code, _, errOut := runCLI("init", "--dir", dc, "--name", "dc-a", "--listen", dcListen, "--federation", "acme", "--admin-key", alice+".pub", "--recovery", rk+".pub"); code != 0 {
		t.Fatal(errOut)
	}
	cancel, done := startUp(dc, dcPort)
	defer func() { cancel(); <-done }()
	waitCLI(t, "members", "--dir", dc)
	if code, _, errOut := runCLI("site", "add", "--name", "praha-1", "--dir", dc, "--as", alice); code != 0 {
		t.Fatal(errOut)
	}
	code, token, errOut := runCLI("invite", "--role", "store", "--name", "store-1", "--site", "praha-1", "--expires", "1h", "--dir", dc, "--as", alice)
	if code != 0 || !strings.HasPrefix(token, "custos1.") || strings.Count(token, "\n") != 1 || !strings.Contains(errOut, "custos join --dir DIR --token TOKEN") {
		t.Fatalf("invite: %d %s %s", code, token, errOut)
	}
	token = strings.TrimSpace(token)
	st := filepath.Join(tmp, "store-1")
	stPort := freeLoopbackPort(t)
	if code, out, errOut := runCLI("join", "--dir", st, "--token", token, "--listen", net.JoinHostPort("127.0.0.1", itoa(stPort))); code != 0 {
		t.Fatalf("join: %s %s", out, errOut)
	}
	// The token is spent: a second join is refused by the policy (exit 4).
	if code, _, errOut := runCLI("join", "--dir", filepath.Join(tmp, "x"), "--token", token, "--listen", net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t)))); code != 4 || !strings.Contains(errOut, "already used") {
		t.Fatalf("reused token: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("join", "--dir", filepath.Join(tmp, "y"), "--token", token+"x", "--listen", "127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "bad join token") {
		t.Fatalf("altered token: %d %s", code, errOut)
	}
	cancel2, done2 := startUp(st, stPort)
	defer func() { cancel2(); <-done2 }()
	// status --wait returns once the store holds the current policy: what
	// was committed before it joined is there at once.
	if code, out, errOut := runCLI("status", "--dir", st, "--wait", "60s"); code != 0 {
		t.Fatalf("status --wait: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := runCLI("members", "--dir", st); code != 0 || !strings.Contains(out, "store-1") || !strings.Contains(out, "praha-1") {
		t.Fatalf("members right after status --wait: %d\n%s%s", code, out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, members, _ := runCLI("members", "--dir", st)
		code, status, _ := runCLI("status", "--dir", st)
		if code == 0 && strings.Contains(members, "store-1") && strings.Contains(status, "raft       follower (non-voter), leader dc-a,") &&
			strings.Contains(status, "members    dc-a (voter, leader), store-1 (non-voter, this node)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the joined store never received the policy:\n%s\n%s", members, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkLiveRefused(t, tmp, dc, alice)
}

// waitCLI runs a command until it succeeds (up to 20 s) and returns its output.
func waitCLI(t *testing.T, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut := runCLI(args...)
		if code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("custos %q never succeeded: %s", args, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
