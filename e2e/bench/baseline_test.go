package bench

// Baseline benchmarks: no Custos code, only the building blocks the product
// is compared against. Run with
//
//	go test -run '^$' -bench Baseline -benchtime=3s ./e2e/bench/ | go run ./cmd/benchreport
//
// All traffic stays on 127.0.0.1 (WireGuard endpoints, local DERP/STUN and
// control server); see tsnetOffline for the knobs that keep tsnet offline.

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"tailscale.com/envknob"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

const benchPort = 5201

// ---- loopback references ----

func BenchmarkBaselineTCPLoopback(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	var d net.Dialer
	TCPStream(b, ln, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
}

func BenchmarkBaselineQUICLoopback(b *testing.B) {
	server := listenUDPLoopback(b)
	client := listenUDPLoopback(b)
	QUICStream(b, server, client, server.LocalAddr())
}

func listenUDPLoopback(b *testing.B) *net.UDPConn {
	b.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	return pc
}

// ---- plain wireguard-go + gVisor netstack ----

var (
	wgAddr1 = netip.MustParseAddr("fd7a::1")
	wgAddr2 = netip.MustParseAddr("fd7a::2")
)

const wgMTU = 1420

// BenchmarkBaselineWireguardNetstackTCP: TCP from node 2 to node 1 through
// two wireguard-go devices with netstack TUNs, UDP endpoints on 127.0.0.1.
func BenchmarkBaselineWireguardNetstackTCP(b *testing.B) {
	tnet1, tnet2 := wireguardPair(b)
	ln, err := tnet1.ListenTCPAddrPort(netip.AddrPortFrom(wgAddr1, benchPort))
	if err != nil {
		b.Fatal(err)
	}
	TCPStream(b, ln, func(ctx context.Context) (net.Conn, error) {
		return tnet2.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(wgAddr1, benchPort))
	})
}

// BenchmarkBaselineWireguardNetstackQUIC: one QUIC stream from node 2 to
// node 1 over netstack UDP conns (*gonet.UDPConn, unconnected, so usable as
// a net.PacketConn by quic-go).
func BenchmarkBaselineWireguardNetstackQUIC(b *testing.B) {
	tnet1, tnet2 := wireguardPair(b)
	serverPC, err := tnet1.ListenUDPAddrPort(netip.AddrPortFrom(wgAddr1, benchPort))
	if err != nil {
		b.Fatal(err)
	}
	clientPC, err := tnet2.ListenUDPAddrPort(netip.AddrPortFrom(wgAddr2, 0))
	if err != nil {
		serverPC.Close()
		b.Fatal(err)
	}
	QUICStream(b, serverPC, clientPC, net.UDPAddrFromAddrPort(netip.AddrPortFrom(wgAddr1, benchPort)))
}

type wgNode struct {
	dev  *device.Device
	tnet *netstack.Net
	pub  []byte
	port int
}

// wireguardPair starts two peered wireguard-go devices in this process and
// returns their netstacks. The devices are closed by b.Cleanup.
func wireguardPair(b *testing.B) (*netstack.Net, *netstack.Net) {
	b.Helper()
	n1 := newWGNode(b, wgAddr1)
	n2 := newWGNode(b, wgAddr2)
	setPeer(b, n1, n2, wgAddr2)
	setPeer(b, n2, n1, wgAddr1)
	return n1.tnet, n2.tnet
}

func newWGNode(b *testing.B, addr netip.Addr) *wgNode {
	b.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tun, tnet, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, wgMTU)
	if err != nil {
		b.Fatal(err)
	}
	dev := device.NewDevice(tun, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	b.Cleanup(dev.Close) // also closes tun and bind
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", hex.EncodeToString(key.Bytes()))); err != nil {
		b.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		b.Fatal(err)
	}
	cfg, err := dev.IpcGet()
	if err != nil {
		b.Fatal(err)
	}
	port := 0
	for line := range strings.Lines(cfg) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
			port, _ = strconv.Atoi(v)
		}
	}
	if port == 0 {
		b.Fatalf("wireguard device has no listen port:\n%s", cfg)
	}
	return &wgNode{dev: dev, tnet: tnet, pub: key.PublicKey().Bytes(), port: port}
}

// setPeer makes peer (owning peerAddr) a peer of n, reached on 127.0.0.1.
func setPeer(b *testing.B, n, peer *wgNode, peerAddr netip.Addr) {
	b.Helper()
	err := n.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s\n",
		hex.EncodeToString(peer.pub),
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(peer.port)),
		netip.PrefixFrom(peerAddr, peerAddr.BitLen())))
	if err != nil {
		b.Fatal(err)
	}
}

// ---- tsnet ----

// BenchmarkBaselineTsnetTCP: TCP from tsnet node s2 to tsnet node s1 over a
// direct (non-DERP) magicsock path on 127.0.0.1.
func BenchmarkBaselineTsnetTCP(b *testing.B) {
	s1, s2, ip1, _ := tsnetPair(b)
	ln, err := s1.Listen("tcp", fmt.Sprintf(":%d", benchPort))
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.AddrPortFrom(ip1, benchPort).String()
	TCPStream(b, ln, func(ctx context.Context) (net.Conn, error) {
		return s2.Dial(ctx, "tcp", addr)
	})
}

// tsnetQUICPacketSize fits Tailscale's default TUN MTU of 1280 over either
// IP family (1280 - 40 IPv6 - 8 UDP); TunnelQUICPacketSize (1350) does not.
const tsnetQUICPacketSize = 1232

// BenchmarkBaselineTsnetQUIC: one QUIC stream from s2 to s1 over
// tsnet.Server.ListenPacket conns (unconnected gVisor UDP conns).
func BenchmarkBaselineTsnetQUIC(b *testing.B) {
	s1, s2, ip1, ip2 := tsnetPair(b)
	serverAddr := netip.AddrPortFrom(ip1, benchPort)
	serverPC, err := s1.ListenPacket("udp", serverAddr.String())
	if err != nil {
		b.Fatal(err)
	}
	clientPC, err := s2.ListenPacket("udp", netip.AddrPortFrom(ip2, 0).String())
	if err != nil {
		serverPC.Close()
		b.Fatal(err)
	}
	QUICStreamPacketSize(b, serverPC, clientPC, net.UDPAddrFromAddrPort(serverAddr), tsnetQUICPacketSize)
}

var tsnetOfflineOnce sync.Once

// tsnetOffline sets the tailscale knobs that keep in-process tsnet nodes
// from talking to anything but the local control/DERP/STUN servers. They
// must go through envknob.Setenv: knobs registered at package init ignore
// later os.Setenv calls.
func tsnetOffline() {
	tsnetOfflineOnce.Do(func() {
		for k, v := range map[string]string{
			// No log uploads (logtail is also off under `go test`).
			"TS_NO_LOGS_NO_SUPPORT": "true",
			// No UPnP/NAT-PMP/PCP probes to the LAN gateway.
			"TS_DISABLE_PORTMAPPER": "true",
			// Advertise only the STUN-discovered 127.0.0.1 endpoint, not
			// the host's interface addresses, so disco and WireGuard
			// traffic goes to 127.0.0.1 only.
			"TS_DEBUG_OMIT_LOCAL_ADDRS": "true",
			// Fail loudly rather than contact the real control plane.
			"TS_PANIC_IF_HIT_MAIN_CONTROL": "true",
		} {
			envknob.Setenv(k, v)
		}
	})
}

// tsnetPair starts a local DERP+STUN server, a testcontrol server and two
// ephemeral tsnet nodes, following tailscale's own tsnet_test.go, and waits
// until s2 reaches s1 over a direct UDP path. It returns the nodes and their
// Tailscale IPv4 addresses. Everything is torn down by b.Cleanup.
func tsnetPair(b *testing.B) (s1, s2 *tsnet.Server, ip1, ip2 netip.Addr) {
	b.Helper()
	tsnetOffline()
	// As in tsnet_test.go: no SO_MARK / interface binding for test sockets.
	netns.SetEnabled(false)
	b.Cleanup(func() { netns.SetEnabled(true) })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	derpMap := integration.RunDERPAndSTUN(quietTB{b}, logger.Discard, "127.0.0.1")
	control := &testcontrol.Server{
		DERPMap:        derpMap,
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: "tail-scale.ts.net",
		Logf:           logger.Discard,
	}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	b.Cleanup(control.HTTPTestServer.Close)
	controlURL := control.HTTPTestServer.URL

	s1, ip1 = startTsnet(b, ctx, controlURL, "s1")
	s2, ip2 = startTsnet(b, ctx, controlURL, "s2")
	waitDirect(b, ctx, s2, ip1)
	waitDirect(b, ctx, s1, ip2)
	return s1, s2, ip1, ip2
}

// quietTB drops Logf/Log output (DERP/STUN chatter that would otherwise be
// printed under the benchmark result); everything else goes to the wrapped TB.
type quietTB struct{ testing.TB }

func (quietTB) Log(...any)          {}
func (quietTB) Logf(string, ...any) {}

func startTsnet(b *testing.B, ctx context.Context, controlURL, hostname string) (*tsnet.Server, netip.Addr) {
	b.Helper()
	s := &tsnet.Server{
		Dir:        b.TempDir(),
		ControlURL: controlURL,
		Hostname:   hostname,
		Store:      new(mem.Store),
		Ephemeral:  true,
		Logf:       logger.Discard,
		UserLogf:   logger.Discard,
	}
	b.Cleanup(func() { s.Close() })
	st, err := s.Up(ctx)
	if err != nil {
		b.Fatalf("tsnet %s: up: %v", hostname, err)
	}
	for _, ip := range st.TailscaleIPs {
		if ip.Is4() {
			return s, ip
		}
	}
	b.Fatalf("tsnet %s: no Tailscale IPv4 address in %v", hostname, st.TailscaleIPs)
	return nil, netip.Addr{}
}

// waitDirect disco-pings ip from s until the reply arrives over a direct
// UDP endpoint rather than DERP, so the benchmark measures the data path
// and not the DERP relay.
func waitDirect(b *testing.B, ctx context.Context, s *tsnet.Server, ip netip.Addr) {
	b.Helper()
	lc, err := s.LocalClient()
	if err != nil {
		b.Fatal(err)
	}
	var last string
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := lc.Ping(pctx, ip, tailcfg.PingDisco)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case res.Err != "":
			last = res.Err
		case res.Endpoint != "" && res.DERPRegionID == 0:
			// Guard the offline setup: the direct path must be loopback.
			if ap, err := netip.ParseAddrPort(res.Endpoint); err != nil || !ap.Addr().IsLoopback() {
				b.Fatalf("direct path to %v uses non-loopback endpoint %q", ip, res.Endpoint)
			}
			return
		default:
			last = fmt.Sprintf("reply via DERP region %d", res.DERPRegionID)
		}
		select {
		case <-ctx.Done():
			b.Fatalf("no direct path to %v: %s", ip, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
