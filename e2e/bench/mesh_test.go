package bench

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
)

// Custos's mesh as the product runs it (gossip and session watchdog on),
// measured with the same helpers as the baselines it is compared to.

func meshPair(b *testing.B) (*mesh.Mesh, *mesh.Mesh) {
	b.Helper()
	prefix, err := keys.MeshPrefix("bench")
	if err != nil {
		b.Fatal(err)
	}
	mk := func() *mesh.Mesh {
		m, err := mesh.New(mesh.Config{PrivateKey: keys.NewNodePrivate(), Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return m
	}
	x, y := mk(), mk()
	lo := netip.MustParseAddr("127.0.0.1")
	if err := x.SetPeers([]mesh.Peer{{Name: "y", PublicKey: y.PublicKey(), Endpoint: netip.AddrPortFrom(lo, y.ListenPort())}}); err != nil {
		b.Fatal(err)
	}
	if err := y.SetPeers([]mesh.Peer{{Name: "x", PublicKey: x.PublicKey(), Endpoint: netip.AddrPortFrom(lo, x.ListenPort())}}); err != nil {
		b.Fatal(err)
	}
	// Wait for a session so that setup is not measured.
	ln, err := y.ListenTCP(benchPort + 1)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := x.DialTCP(ctx, netip.AddrPortFrom(y.Addr(), benchPort+1))
	if err != nil {
		b.Fatal(err)
	}
	c.Close()
	return x, y
}

func BenchmarkMeshTCP(b *testing.B) {
	x, y := meshPair(b)
	ln, err := y.ListenTCP(benchPort)
	if err != nil {
		b.Fatal(err)
	}
	TCPStream(b, ln, func(ctx context.Context) (net.Conn, error) {
		return x.DialTCP(ctx, netip.AddrPortFrom(y.Addr(), benchPort))
	})
}

func BenchmarkMeshQUIC(b *testing.B) {
	x, y := meshPair(b)
	server, err := y.ListenUDP(benchPort)
	if err != nil {
		b.Fatal(err)
	}
	client, err := x.ListenUDP(0)
	if err != nil {
		b.Fatal(err)
	}
	QUICStreamPacketSize(b, server, client, net.UDPAddrFromAddrPort(netip.AddrPortFrom(y.Addr(), benchPort)), mesh.QUICPacketSize)
}
