package consensustest

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dial(t *testing.T, h *Host, to netip.AddrPort) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.Dial(ctx, to)
}

// The twin behaves as the mesh must for consensus: authenticated source
// addresses, refused dials to nowhere, cuts that break and refuse, and
// Accept returning an error after Close.
func TestNet(t *testing.T) {
	n := New()
	a, b := n.Host(Addr(1)), n.Host(Addr(2))
	ln, err := b.Listen(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := b.Listen(7000); err == nil {
		t.Error("second Listen on the same address and port succeeded")
	}
	if got, want := ln.Addr().String(), "[fd00:c057::2]:7000"; got != want {
		t.Errorf("listener Addr = %s, want %s", got, want)
	}
	if _, err := dial(t, a, netip.AddrPortFrom(Addr(3), 7000)); err == nil {
		t.Error("Dial to a host that does not listen succeeded")
	}

	c, err := dial(t, a, netip.AddrPortFrom(Addr(2), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != Addr(1) {
		t.Errorf("accepted RemoteAddr = %v, want the dialer's mesh address %v", got, Addr(1))
	}
	if got := c.RemoteAddr().String(); got != "[fd00:c057::2]:7000" {
		t.Errorf("dialed RemoteAddr = %s", got)
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want hi", buf, err)
	}
	if got := n.Dials(Addr(1), Addr(2)); got != 1 {
		t.Errorf("Dials = %d, want 1", got)
	}
	if got := n.Accepts(Addr(1), Addr(2)); got != 1 {
		t.Errorf("Accepts = %d, want 1", got)
	}

	n.Cut(Addr(1), Addr(2))
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(buf); err == nil {
		t.Error("Read on a cut conn succeeded")
	}
	if _, err := dial(t, b, netip.AddrPortFrom(Addr(1), 7000)); err == nil {
		t.Error("Dial across a cut succeeded")
	}
	if _, err := dial(t, a, netip.AddrPortFrom(Addr(2), 7000)); err == nil {
		t.Error("Dial across a cut succeeded")
	}
	n.Heal(Addr(1), Addr(2))
	c2, err := dial(t, a, netip.AddrPortFrom(Addr(2), 7000))
	if err != nil {
		t.Fatalf("Dial after Heal: %v", err)
	}
	c2.Close()

	ln.Close()
	if _, err := ln.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
}
