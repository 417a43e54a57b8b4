package mesh

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
)

// A peer that dialled us while we were down (its handshake initiation went
// to a closed port) gets through as soon as we start and greet, whichever
// key is lower, not after WireGuard's retry 5 s after its last attempt.
func TestGreetCompletesAPeersPendingDial(t *testing.T) {
	for _, tc := range []struct {
		name        string
		lateIsLower bool
	}{{"late node greets first", true}, {"late node greets after the grace", false}} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			up := newTestMesh(t, "up", false)
			lateKey := keys.NewNodePrivate()
			for (lateKey.Public().Compare(up.PublicKey()) < 0) != tc.lateIsLower {
				lateKey.Zero()
				lateKey = keys.NewNodePrivate()
			}
			lateAddr := keys.MeshAddr(testPrefix, lateKey.Public())
			port := freeUDPPort(t)
			must(t, up.SetPeers([]Peer{{Name: "late", PublicKey: lateKey.Public(), Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}}))

			// The dial starts while the late node is down.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			dialed := make(chan error, 1)
			go func() {
				c, err := up.DialTCP(ctx, netip.AddrPortFrom(lateAddr, 80))
				if err == nil {
					c.Close()
				}
				dialed <- err
			}()
			time.Sleep(300 * time.Millisecond) // its first initiation is lost

			late, err := New(Config{PrivateKey: lateKey, Prefix: testPrefix, ListenPort: port, NoGossip: true, Name: "late",
				Logf: func(f string, a ...any) { t.Logf("late: "+f, a...) }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { late.Close() })
			echoTCP(t, late, 80)
			must(t, late.SetPeers([]Peer{loopPeer(up, "up")}))
			start := time.Now()
			late.Greet()
			if err := <-dialed; err != nil {
				t.Fatalf("the dial from before the start: %v", err)
			}
			// Without the greeting, WireGuard's retry comes about 4.7 s
			// after the start.
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("the pending dial got through %v after the greeting, want well under WireGuard's 5 s retry", took)
			}
			t.Logf("the pending dial got through %v after the greeting", time.Since(start).Round(time.Millisecond))
		})
	}
}
