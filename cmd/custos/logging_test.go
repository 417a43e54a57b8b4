package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jsonLines parses every line of out as a JSON object with time, level and
// msg, failing on any line that is not one.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for l := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("a log line that is not JSON: %q: %v", l, err)
			continue
		}
		stamp, _ := m["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil {
			t.Errorf("a log line without its time: %q", l)
		}
		if m["level"] == nil || m["msg"] == nil {
			t.Errorf("a log line without level or msg: %q", l)
		}
		recs = append(recs, m)
	}
	return recs
}

// The node's Logf lines become records: the leading "node: ", "mesh: " or
// "custos NAME: " becomes the component (and the node's name), alarms in
// capitals are warnings, and --quiet keeps errors only.
func TestUpLoggerJSON(t *testing.T) {
	var b bytes.Buffer
	l := newUpLogger(&b, "json", false)
	l.logf("custos %s: stopping (%s)", "dc-a", "interrupt signal received")
	l.logf("node: AUDIT FAILURE: %v (events refused)", "disk full")
	l.logf("mesh: added peer %s (%s)", "store-1", "fd00::1")
	l.logf("%s", "no component here: but a colon")
	l.errorf(errors.New("node: the port is in use"))
	l.logf("[WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr=")
	l.logf("[ERROR] raft: failed to appendEntries to: peer=%s", "x")
	l.logf("[DEBUG] raft: chatter")
	recs := jsonLines(t, b.String())
	want := []map[string]any{
		{"level": "INFO", "msg": "stopping (interrupt signal received)", "component": "custos", "node": "dc-a"},
		{"level": "WARN", "msg": "AUDIT FAILURE: disk full (events refused)", "component": "node"},
		{"level": "INFO", "msg": "added peer store-1 (fd00::1)", "component": "mesh"},
		{"level": "INFO", "msg": "no component here: but a colon"},
		{"level": "ERROR", "msg": "the port is in use", "component": "custos"},
		{"level": "WARN", "msg": "heartbeat timeout reached, starting election: last-leader-addr=", "component": "raft"},
		{"level": "ERROR", "msg": "failed to appendEntries to: peer=x", "component": "raft"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d:\n%s", len(recs), len(want), b.String())
	}
	for i, w := range want {
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, recs[i][k], v)
			}
		}
		if _, ok := w["component"]; !ok && recs[i]["component"] != nil {
			t.Errorf("record %d has a component: %v", i, recs[i])
		}
	}

	b.Reset()
	q := newUpLogger(&b, "json", true)
	q.logf("node: AUDIT FAILURE: %v", "disk full")
	q.logf("mesh: added peer %s", "x")
	q.logf("[WARN]  raft: a warning")
	q.errorf(errors.New("it broke"))
	if recs := jsonLines(t, b.String()); len(recs) != 1 || recs[0]["level"] != "ERROR" {
		t.Errorf("--quiet kept %v, want the error only", recs)
	}
}

// The text log is what it always was: the time with its zone, then the
// line the node wrote, component prefix and all.
func TestUpLoggerText(t *testing.T) {
	var b bytes.Buffer
	l := newUpLogger(&b, "text", false)
	l.logf("custos %s: stopped", "n1")
	l.logf("node: REVOKED: %s", "by alice")
	l.logf("plain %d", 3)
	l.logf("[INFO]  raft: entering leader state")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := []string{"custos n1: stopped", "node: REVOKED: by alice", "plain 3", "[INFO]  raft: entering leader state"}
	if len(lines) != len(want) {
		t.Fatalf("text log:\n%s", b.String())
	}
	for i, l := range lines {
		stamp, msg, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339, stamp); err != nil || msg != want[i] {
			t.Errorf("line %q, want an RFC 3339 time and %q", l, want[i])
		}
	}
	b.Reset()
	newUpLogger(&b, "text", true).logf("node: something")
	if b.Len() != 0 {
		t.Errorf("--quiet logged %q", b.String())
	}
}

// A node run with log-format = "json" from its config file logs nothing but
// JSON: its start (name, key, mesh address), its stop and why; stdout stays
// empty.
func TestCLIUpJSONLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	listen := net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t)))
	cfg := writeConfig(t, "dir = "+tomlString(dir)+"\nlisten = "+tomlString(listen)+"\nlog-format = \"json\"\n")
	var logs, out syncBuffer
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), stderrKey{}, &logs))
	done := make(chan error, 1)
	go func() { done <- runUp(ctx, []string{"--config", cfg}, &out) }()
	waitCLI(t, "status", "--dir", dir)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("up did not stop:\n%s", logs.String())
	}
	if out.String() != "" {
		t.Errorf("up printed on stdout with JSON logs: %q", out.String())
	}
	recs := jsonLines(t, logs.String())
	var up, stopping, stopped bool
	for _, r := range recs {
		switch {
		case r["public_key"] != nil:
			up = r["node"] == "n1" && strings.HasPrefix(r["public_key"].(string), "nodekey:") && r["mesh_addr"] != nil && r["level"] == "INFO"
		case r["msg"] == "stopping (its context ended)":
			stopping = r["component"] == "custos" && r["node"] == "n1"
		case r["msg"] == "stopped":
			stopped = r["component"] == "custos" && r["node"] == "n1"
		}
	}
	if !up || !stopping || !stopped {
		t.Errorf("JSON log (up %v, stopping %v, stopped %v):\n%s", up, stopping, stopped, logs.String())
	}
}

// With JSON logs, why up failed after it set its log up is an ERROR record,
// not a text line; the exit status is the same.
func TestCLIUpJSONFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	listen := net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t)))
	code, _, errOut := runCLI("up", "--dir", dir, "--listen", listen, "--log-format", "json", "--metrics", "[2001:db8::1]:9477")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	recs := jsonLines(t, errOut)
	if len(recs) == 0 || recs[len(recs)-1]["level"] != "ERROR" || !strings.Contains(recs[len(recs)-1]["msg"].(string), "serve them on loopback") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.key")); err != nil {
		t.Errorf("the node never started: %v", err)
	}
}
