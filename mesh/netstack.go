package mesh

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
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
// device is closed. Owning the link is also where segmentation offload and
// batching will go (see README, Performance).
//
// The mesh is IPv6 only: one address, the node's mesh address.
type netTUN struct {
	ep       *channel.Endpoint
	stack    *stack.Stack
	notify   *channel.NotificationHandle
	events   chan tun.Event
	outbound chan *buffer.View // packets gVisor sends, for wireguard-go to encrypt
	done     chan struct{}     // closed by Close
	once     sync.Once
	mtu      int
}

const nicID = 1

var _ tun.Device = (*netTUN)(nil)

func newNetTUN(addr netip.Addr, mtu int) (*netTUN, error) {
	if !addr.Is6() {
		return nil, fmt.Errorf("mesh: netstack address %v is not IPv6", addr)
	}
	t := &netTUN{
		ep: channel.New(1024, uint32(mtu), ""),
		stack: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv6.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol6},
			HandleLocal:        true,
		}),
		events:   make(chan tun.Event, 1),
		outbound: make(chan *buffer.View),
		done:     make(chan struct{}),
		mtu:      mtu,
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
	t.notify = t.ep.AddNotify(t)
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
func (t *netTUN) BatchSize() int           { return 1 }

// Read hands wireguard-go the next packet gVisor sent.
func (t *netTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case v := <-t.outbound:
		n, err := v.Read(bufs[0][offset:])
		v.Release()
		if err != nil {
			return 0, err
		}
		sizes[0] = n
		return 1, nil
	case <-t.done:
		return 0, os.ErrClosed
	}
}

// Write gives gVisor the packets wireguard-go decrypted.
func (t *netTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 {
			continue
		}
		if p[0]>>4 != 6 {
			continue // not IPv6: nothing in the mesh sends it
		}
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		t.ep.InjectInbound(header.IPv6ProtocolNumber, pkb)
		pkb.DecRef()
	}
	return len(bufs), nil
}

// WriteNotify is called by the channel endpoint when gVisor queued a packet.
func (t *netTUN) WriteNotify() {
	pkt := t.ep.Read()
	if pkt == nil {
		return
	}
	v := pkt.ToView()
	pkt.DecRef()
	select {
	case t.outbound <- v:
	case <-t.done:
		v.Release()
	}
}

// Close stops the stack and waits for its goroutines, then the endpoint.
func (t *netTUN) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.stack.RemoveNIC(nicID)
		t.stack.Close()
		t.stack.Wait()
		t.ep.RemoveNotify(t.notify)
		t.ep.Close()
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
