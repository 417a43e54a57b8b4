package mesh

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// netTUN is the node's userspace network: a gVisor TCP/IP stack whose only
// interface is a wireguard-go tun.Device. It does what wireguard-go's
// tun/netstack does, with one difference that made us write it: upstream's
// Close closes the channel that carries outbound packets while gVisor's
// goroutines may still be sending on it (a packet that arrives during
// shutdown and draws a TCP reset is enough), a data race and a possible
// "send on closed channel" panic. Here Close stops the stack and waits for
// its goroutines before anything is torn down, and senders give up once the
// device is closed. Owning the link is also what lets packets cross it in
// batches, with segmentation offload both ways (link.go).
//
// The mesh is IPv6 only: one address, the node's mesh address.
type netTUN struct {
	ep     *link
	stack  *stack.Stack
	events chan tun.Event
	done   chan struct{} // closed by Close
	once   sync.Once
	mtu    int
}

const nicID = 1

var _ tun.Device = (*netTUN)(nil)

func newNetTUN(addr netip.Addr, mtu int) (*netTUN, error) {
	if !addr.Is6() {
		return nil, fmt.Errorf("mesh: netstack address %v is not IPv6", addr)
	}
	done := make(chan struct{})
	t := &netTUN{
		ep: newLink(uint32(mtu), done),
		stack: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv6.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol6},
			HandleLocal:        true,
		}),
		events: make(chan tun.Event, 1),
		done:   done,
		mtu:    mtu,
	}
	// SACK recovers from loss in one round trip instead of many; gVisor
	// leaves it off by default.
	sack := tcpip.TCPSACKEnabled(true)
	if err := t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("mesh: netstack: enable SACK: %v", err)
	}
	// gVisor's RACK loss detection leaves a stream crawling for minutes
	// after a burst of loss (a path failing over, a flapping link;
	// TestTCPRecoversAfterBlackout); Tailscale turns it off for the same
	// reason. Recovery is then SACK's.
	recovery := tcpip.TCPRecovery(0)
	if err := t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &recovery); err != nil {
		return nil, fmt.Errorf("mesh: netstack: disable RACK: %v", err)
	}
	// Buffers as Tailscale sizes them: gVisor grows a connection's receive
	// window up to Max as the reader keeps up (moderation, on by default),
	// so a path with a large bandwidth-delay product is not capped by a
	// 1 MiB window.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: 8 << 20}
	if err := t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); err != nil {
		return nil, fmt.Errorf("mesh: netstack: receive buffer: %v", err)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: 6 << 20}
	if err := t.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); err != nil {
		return nil, fmt.Errorf("mesh: netstack: send buffer: %v", err)
	}
	if err := t.stack.CreateNIC(nicID, t.ep); err != nil {
		return nil, fmt.Errorf("mesh: netstack: create NIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddrFromSlice(addr.AsSlice()).WithPrefix()}
	if err := t.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("mesh: netstack: add address %v: %v", addr, err)
	}
	// Every destination goes to WireGuard, whose AllowedIPs then decide.
	t.stack.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	t.events <- tun.EventUp
	return t, nil
}

func (t *netTUN) Name() (string, error)    { return "custos", nil }
func (t *netTUN) File() *os.File           { return nil }
func (t *netTUN) Events() <-chan tun.Event { return t.events }
func (t *netTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *netTUN) BatchSize() int           { return conn.IdealBatchSize }

// Read hands wireguard-go a batch of the packets gVisor sent.
func (t *netTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, ok := t.ep.read(bufs, sizes, offset)
	if !ok {
		return 0, os.ErrClosed
	}
	return n, nil
}

// Write gives gVisor a batch of the packets wireguard-go decrypted.
func (t *netTUN) Write(bufs [][]byte, offset int) (int, error) {
	t.ep.write(bufs, offset)
	return len(bufs), nil
}

// Close stops the stack and waits for its goroutines, then the endpoint.
func (t *netTUN) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.stack.RemoveNIC(nicID)
		t.stack.Close()
		t.stack.Wait()
		t.ep.drain()
		close(t.events)
	})
	return nil
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}
}

func (t *netTUN) dialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, t.stack, fullAddr(dst), ipv6.ProtocolNumber)
}

func (t *netTUN) listenTCP(local netip.AddrPort) (*gonet.TCPListener, error) {
	return gonet.ListenTCP(t.stack, fullAddr(local), ipv6.ProtocolNumber)
}

func (t *netTUN) listenUDP(local netip.AddrPort) (*gonet.UDPConn, error) {
	fa := fullAddr(local)
	return gonet.DialUDP(t.stack, &fa, nil, ipv6.ProtocolNumber)
}
