package rtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// errNotLoopback is what a Peer's sockets answer a send to another address.
var errNotLoopback = errors.New("rtc: refusing to send to an address that is not loopback")

// loopbackNet is the network stack pion gets: the machine's, except that
// every socket it opens or dials refuses to send to an address that is not
// loopback. loopbackOnly's filters already keep such addresses out of ICE;
// this makes "nothing leaves the machine" hold whatever pion does (a
// peer-reflexive address, a TURN server, a future default), and counts the
// attempts so tests can assert there were none.
type loopbackNet struct {
	*stdnet.Net
	refused *atomic.Uint64
}

func newLoopbackNet(refused *atomic.Uint64) (loopbackNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return loopbackNet{}, err
	}
	return loopbackNet{Net: n, refused: refused}, nil
}

// allowed reports whether a may be sent to, counting a refusal.
func (n loopbackNet) allowed(a net.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	if ip != nil && ip.IsLoopback() {
		return true
	}
	n.refused.Add(1)
	return false
}

func (n loopbackNet) allowedString(network, address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	n.refused.Add(1)
	return fmt.Errorf("%w: %s %s", errNotLoopback, network, address)
}

func (n loopbackNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return guardedUDP{c, n}, nil
}

func (n loopbackNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return guardedPacket{c, n}, nil
}

func (n loopbackNet) Dial(network, address string) (net.Conn, error) {
	if err := n.allowedString(network, address); err != nil {
		return nil, err
	}
	return n.Net.Dial(network, address)
}

func (n loopbackNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	if !n.allowed(raddr) {
		return nil, fmt.Errorf("%w: %s %s", errNotLoopback, network, raddr)
	}
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return guardedUDP{c, n}, nil
}

func (n loopbackNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	if !n.allowed(raddr) {
		return nil, fmt.Errorf("%w: %s %s", errNotLoopback, network, raddr)
	}
	return n.Net.DialTCP(network, laddr, raddr)
}

func (n loopbackNet) CreateDialer(d *net.Dialer) transport.Dialer {
	return guardedDialer{n.Net.CreateDialer(d), n}
}

func (n loopbackNet) CreateListenConfig(lc *net.ListenConfig) transport.ListenConfig {
	return guardedListenConfig{n.Net.CreateListenConfig(lc), n}
}

type guardedUDP struct {
	transport.UDPConn
	n loopbackNet
}

func (c guardedUDP) Write(b []byte) (int, error) {
	if !c.n.allowed(c.RemoteAddr()) {
		return 0, errNotLoopback
	}
	return c.UDPConn.Write(b)
}

func (c guardedUDP) WriteTo(b []byte, a net.Addr) (int, error) {
	if !c.n.allowed(a) {
		return 0, errNotLoopback
	}
	return c.UDPConn.WriteTo(b, a)
}

func (c guardedUDP) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) {
	if !c.n.allowed(a) {
		return 0, errNotLoopback
	}
	return c.UDPConn.WriteToUDP(b, a)
}

func (c guardedUDP) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	to := net.Addr(a)
	if a == nil {
		to = c.RemoteAddr() // a connected socket
	}
	if !c.n.allowed(to) {
		return 0, 0, errNotLoopback
	}
	return c.UDPConn.WriteMsgUDP(b, oob, a)
}

type guardedPacket struct {
	net.PacketConn
	n loopbackNet
}

func (c guardedPacket) WriteTo(b []byte, a net.Addr) (int, error) {
	if !c.n.allowed(a) {
		return 0, errNotLoopback
	}
	return c.PacketConn.WriteTo(b, a)
}

type guardedDialer struct {
	transport.Dialer
	n loopbackNet
}

func (d guardedDialer) Dial(network, address string) (net.Conn, error) {
	if err := d.n.allowedString(network, address); err != nil {
		return nil, err
	}
	return d.Dialer.Dial(network, address)
}

type guardedListenConfig struct {
	transport.ListenConfig
	n loopbackNet
}

func (l guardedListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	c, err := l.ListenConfig.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return guardedPacket{c, l.n}, nil
}
