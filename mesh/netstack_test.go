package mesh

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/keys"
)

// A TCP stream inside the mesh must pick up its pace after the underlay
// drops everything for a moment (a path failing over to the relay, a
// flapping link). With gVisor's RACK loss detection on, it crawled at a few
// kilobytes a second for minutes afterwards.
func TestTCPRecoversAfterBlackout(t *testing.T) {
	checkLeaks(t)
	mk := func(name string) (*Mesh, *blockableBind) {
		bind := &blockableBind{Bind: newUDPBind()}
		m, err := New(Config{PrivateKey: keys.NewNodePrivate(), Prefix: testPrefix, Name: name, NoGossip: true, Bind: bind})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m, bind
	}
	a, ab := mk("a")
	b, bb := mk("b")
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	rx := streamCounter(t, a, 90)
	streamTo(t, b, a, 90)
	waitUntil(t, 15*time.Second, "data flowing", func() bool { return rx.Load() > 1<<20 })

	ab.blocked.Store(true)
	bb.blocked.Store(true)
	time.Sleep(1500 * time.Millisecond)
	ab.blocked.Store(false)
	bb.blocked.Store(false)
	at, healed := rx.Load(), time.Now()
	waitUntil(t, 4*time.Second, "1 MiB more after the blackout", func() bool { return rx.Load() > at+1<<20 })
	t.Logf("1 MiB delivered %v after the path came back", time.Since(healed).Round(10*time.Millisecond))
}

// blockableBind is wireguard-go's default bind with a switch that drops
// every direct packet both ways: a NAT or firewall between two nodes.
type blockableBind struct {
	conn.Bind
	blocked atomic.Bool
}

func (b *blockableBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	return dropReceived(fns, func([]byte) bool { return b.blocked.Load() }), p, err
}

// dropReceived wraps receive funcs so that every packet drop says yes to
// is ignored (wireguard-go skips empty packets).
func dropReceived(fns []conn.ReceiveFunc, drop func(pkt []byte) bool) []conn.ReceiveFunc {
	for i, fn := range fns {
		fns[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(bufs, sizes, eps)
			for j := range n {
				if sizes[j] > 0 && drop(bufs[j][:sizes[j]]) {
					sizes[j] = 0
				}
			}
			return n, err
		}
	}
	return fns
}

func (b *blockableBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.blocked.Load() {
		return nil
	}
	return b.Bind.Send(bufs, ep)
}

// streamCounter accepts one connection on m's port and counts what arrives.
func streamCounter(t testing.TB, m *Mesh, port uint16) *atomic.Int64 {
	t.Helper()
	ln, err := m.ListenTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var rx atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			rx.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	return &rx
}

// streamTo writes to m's port until the test ends or a write fails.
func streamTo(t testing.TB, from, to *Mesh, port uint16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := from.DialTCP(ctx, netip.AddrPortFrom(to.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		chunk := make([]byte, 16<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}
