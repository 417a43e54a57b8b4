package node

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// startShare serves a tcpShare on loopback with a short sniff timeout.
func startShare(t *testing.T, sniff time.Duration) (*tcpShare, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	addr := ln.Addr().String()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := newTCPShare(ln)
	s.mu.Lock()
	s.sniff = sniff
	s.mu.Unlock()
	t.Cleanup(func() { s.Close() })
	return s, addr
}

// acceptOne reads everything the first connection on l sends.
func acceptOne(t *testing.T, l net.Listener) <-chan string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	return got
}

func sendAndClose(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
}

func TestTCPShareRoutesByFirstBytes(t *testing.T) {
	s, addr := startShare(t, 5*time.Second)
	relay := acceptOne(t, s.http)
	joins := acceptOne(t, s.other)
	httpReq := "GET /derp HTTP/1.1\r\nHost: x\r\n\r\n"
	redeem := `{"body":"a redeem"}`
	sendAndClose(t, addr, redeem)
	sendAndClose(t, addr, httpReq)
	for _, c := range []struct {
		ch   <-chan string
		want string
	}{{relay, httpReq}, {joins, redeem}} {
		select {
		case got := <-c.ch:
			if got != c.want {
				t.Fatalf("service got %q, want %q: the sniffed bytes must be replayed, and each connection go to its own service", got, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a connection never reached its service")
		}
	}
}

// A stranger who connects and sends nothing holds a slot only until the
// sniff timeout, and cannot hold more than shareMaxPerSource at once.
func TestTCPShareBoundsSilentConnections(t *testing.T) {
	s, addr := startShare(t, 300*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a silent connection got data")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("a silent connection was held %v", d)
	}

	s.mu.Lock()
	s.sniff = time.Minute
	s.mu.Unlock()
	var held []net.Conn
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for range shareMaxPerSource {
		h, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
	}
	// Wait until the share has counted them all.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := s.pending
		s.mu.Unlock()
		if n == shareMaxPerSource {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections pending, want %d", n, shareMaxPerSource)
		}
		time.Sleep(10 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = extra.Read(make([]byte, 1))
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a connection over the per-source limit was kept (read: %v)", err)
	}
}
