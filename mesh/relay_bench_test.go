package mesh

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkMeshTCPPath measures TCP throughput inside the mesh between two
// nodes on loopback, over direct UDP and over the relay (direct UDP
// blocked). Run: go test -run '^$' -bench MeshTCPPath ./mesh/
func BenchmarkMeshTCPPath(b *testing.B) {
	for _, path := range []string{"direct", "relay"} {
		b.Run(path, func(b *testing.B) {
			r := startRelay(b)
			blocked := path == "relay"
			x, _ := newRelayMesh(b, "x", r, blocked)
			y, _ := newRelayMesh(b, "y", r, blocked)
			connectAll(b, map[string]*Mesh{"x": x, "y": y})
			ln, err := y.ListenTCP(91)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			got := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- -1
					return
				}
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				got <- n
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := x.DialTCP(ctx, netip.AddrPortFrom(y.Addr(), 91))
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 64<<10)
			c.Write(chunk) // the handshake and, for direct, the path's confirmation
			b.SetBytes(int64(len(chunk)))
			before := x.Relay().Stats()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			if n := <-got; n < int64(b.N+1)*int64(len(chunk)) {
				b.Fatalf("receiver got %d bytes, want %d", n, (b.N+1)*len(chunk))
			}
			b.StopTimer()
			after := x.Relay().Stats()
			total := float64(after.DirectTxBytes - before.DirectTxBytes + after.RelayTxBytes - before.RelayTxBytes)
			if total > 0 {
				b.ReportMetric(100*float64(after.RelayTxBytes-before.RelayTxBytes)/total, "%relayed")
			}
		})
	}
}
