package rtc

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// localNonLoopback is an address of this machine that is not loopback:
// were every guard to fail, what is sent to it still stays on the machine.
func localNonLoopback(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	t.Skip("this machine has no IPv4 address but loopback")
	return nil
}

// TestGuardRefuses: a Peer's sockets send to loopback and refuse anything
// else before it reaches the kernel.
func TestGuardRefuses(t *testing.T) {
	var refused atomic.Uint64
	n, err := newLoopbackNet(&refused)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := &net.UDPAddr{IP: localNonLoopback(t), Port: 9}
	if _, err := c.WriteTo([]byte("x"), other); !errors.Is(err, errNotLoopback) {
		t.Errorf("WriteTo %s: %v", other, err)
	}
	if _, err := c.WriteToUDP([]byte("x"), other); !errors.Is(err, errNotLoopback) {
		t.Errorf("WriteToUDP %s: %v", other, err)
	}
	if _, _, err := c.WriteMsgUDP([]byte("x"), nil, other); !errors.Is(err, errNotLoopback) {
		t.Errorf("WriteMsgUDP %s: %v", other, err)
	}
	if _, err := n.Dial("udp4", other.String()); !errors.Is(err, errNotLoopback) {
		t.Errorf("Dial %s: %v", other, err)
	}
	if _, err := n.DialUDP("udp4", nil, other); !errors.Is(err, errNotLoopback) {
		t.Errorf("DialUDP %s: %v", other, err)
	}
	if got := refused.Load(); got != 5 {
		t.Errorf("refused %d, want 5", got)
	}
	if _, err := c.WriteTo([]byte("x"), c.LocalAddr()); err != nil {
		t.Errorf("WriteTo itself on loopback: %v", err)
	}
}

// TestBrowserCandidateElsewhere: a browser that offers a candidate on
// another interface (as Chromium does) is reached on loopback only, and no
// send to the other address is even attempted.
func TestBrowserCandidateElsewhere(t *testing.T) {
	other := localNonLoopback(t)
	p := newPeer(t, Config{})
	b := newGoBrowser(t)
	offer := b.offer(t)
	// Put the other address first, with the highest priority.
	i := strings.Index(offer, "a=candidate:")
	if i < 0 {
		t.Fatalf("no candidate in the offer:\n%s", offer)
	}
	offer = offer[:i] + "a=candidate:9 1 udp 2130706431 " + other.String() + " 50000 typ host\r\n" + offer[i:]
	answer, err := p.Answer(offer)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() { fed <- p.Feed(ctx, pr) }()
	camera(ctx, t, "pace=real", 25, pw)
	time.Sleep(200 * time.Millisecond)
	pw.Close()
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	pair, err := p.sender.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || !isLoopbackAddr(pair.Remote.Address) {
		t.Errorf("selected pair %v (%v), want loopback", pair, err)
	}
	if st := p.Stats(); st.Refused != 0 || st.Frames != 25 {
		t.Errorf("stats %+v, want 25 frames and no refused send", st)
	}
	if n := len(b.frames()); n != 25 {
		t.Errorf("received %d frames, want 25", n)
	}
}
