package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
