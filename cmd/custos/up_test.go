package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer is a bytes.Buffer the node's goroutines may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// On SIGINT, up logs that it stops and why, then that it stopped, and
// exits 0; every log line starts with its time and zone.
func TestCLIUpLogsItsStop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	listen := net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t)))
	var logs syncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"up", "--dir", dir, "--listen", listen}, io.Discard, &logs) }()
	waitCLI(t, "status", "--dir", dir)
	// run has the signal (signal.NotifyContext): it does not end the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("up exited %d on SIGINT:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("up did not stop on SIGINT:\n%s", logs.String())
	}
	out := logs.String()
	stopping := strings.Index(out, " custos n1: stopping (interrupt signal received)\n")
	stopped := strings.Index(out, " custos n1: stopped\n")
	if stopping < 0 || stopped < stopping {
		t.Fatalf("up's log on SIGINT:\n%s", out)
	}
	for l := range strings.Lines(out) {
		stamp, _, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339, stamp); err != nil {
			t.Errorf("a log line without its time and zone: %q", l)
		}
	}
}

// `up --metrics` serves Prometheus metrics on loopback that Prometheus's
// own parser reads, with the node's name; an IPv6 address outside the
// mesh is refused once the node knows its prefix, and nothing keeps
// running.
func TestCLIUpMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dc-a")
	mport := freeLoopbackPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out syncBuffer
	go func() {
		done <- runUp(ctx, []string{"--dir", dir, "--listen", net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t))), "--quiet",
			"--metrics", net.JoinHostPort("127.0.0.1", itoa(mport))}, &out)
	}()
	url := "http://" + net.JoinHostPort("127.0.0.1", itoa(mport)) + "/metrics"
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			p := expfmt.NewTextParser(model.LegacyValidation)
			fams, err = p.TextToMetricFamilies(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatalf("the scrape does not parse: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics at %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info := fams["custos_node_info"]
	if info == nil || len(info.GetMetric()) != 1 {
		t.Fatalf("custos_node_info: %v", info)
	}
	found := false
	for _, l := range info.GetMetric()[0].GetLabel() {
		found = found || l.GetName() == "name" && l.GetValue() == "dc-a"
	}
	if !found || fams["custos_status_errors_total"] == nil {
		t.Fatalf("node_info %v, status errors %v", info, fams["custos_status_errors_total"])
	}
	if !strings.Contains(out.String(), "Prometheus metrics at http://127.0.0.1:") {
		t.Errorf("up did not say where the metrics are: %q", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("up: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the metrics endpoint still answers after up stopped")
	}

	// An IPv6 address that is not this node's mesh address.
	err := runUp(context.Background(), []string{"--dir", dir, "--listen", net.JoinHostPort("127.0.0.1", itoa(freeLoopbackPort(t))), "--quiet",
		"--metrics", "[2001:db8::1]:9477"}, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "serve them on loopback") {
		t.Fatalf("--metrics outside the mesh: %v, want a usage error", err)
	}
}
