package mesh

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/keys"
)

// dropBind drops incoming WireGuard transport-data packets while drop is set:
// the symptom of wireguard-go's simultaneous-handshake race (a session whose
// one direction decrypts nothing) without having to win the race.
type dropBind struct {
	conn.Bind
	drop atomic.Bool
}

func (b *dropBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	return dropReceived(fns, func(pkt []byte) bool {
		return b.drop.Load() && pkt[0] == 4 // MessageTransportType
	}), p, err
}

func TestWatchdogRestartsOneWaySession(t *testing.T) {
	checkLeaks(t)
	bind := &dropBind{Bind: newUDPBind()}
	a := newTestMesh(t, "a", true)
	b, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, Name: "b", Bind: bind,
		Logf: func(f string, args ...any) { t.Logf("b: "+f, args...) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	echoTCP(t, a, 80)
	waitUntil(t, 15*time.Second, "first session", func() bool {
		st, _ := b.Status()
		return len(st) == 1 && st[0].Liveness == "alive"
	})
	// b now receives no data from a, although its session looks fine.
	bind.drop.Store(true)
	waitUntil(t, stuckAfter+probeTimeout+5*watchdogInterval, "watchdog reset", func() bool { return b.resets.Load() > 0 })
	bind.drop.Store(false)
	// After the reset a fresh handshake restores both directions well
	// before WireGuard's own 15 s timers would.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := b.DialTCP(ctx, netip.AddrPortFrom(a.Addr(), 80))
	if err != nil {
		t.Fatalf("after watchdog reset: %v", err)
	}
	c.Close()
	if a.resets.Load() != 0 {
		t.Fatalf("a restarted %d sessions; only the side that receives nothing should", a.resets.Load())
	}
}

// A healthy one-way flow (UDP push, the receiver silent) must not be taken
// for the race: the probe draws a reset from the peer, and nothing restarts.
func TestWatchdogLeavesOneWayFlowAlone(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	sink, err := b.ListenUDP(6000)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	src, err := a.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	}()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Addr(), 6000))
	deadline := time.Now().Add(stuckAfter + 4*watchdogInterval + probeTimeout)
	for time.Now().Before(deadline) {
		src.WriteTo(make([]byte, 1000), dst)
		time.Sleep(20 * time.Millisecond)
	}
	if got.Load() == 0 {
		t.Fatal("the one-way flow never arrived")
	}
	if n := a.resets.Load(); n != 0 {
		t.Fatalf("watchdog restarted a healthy one-way session %d times", n)
	}
}
