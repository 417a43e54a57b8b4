package e2e

// Helpers the harness runs as separate processes (this test binary with
// CUSTOS_NETNS_HELPER set) inside a namespace: the userspace impairer, and a
// UDP echo server and prober for the harness's self-test, and a fake ONVIF
// camera (netns_onvif_test.go).

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func runNetnsHelper(kind string) int {
	var err error
	switch kind {
	case "impair":
		err = runImpairer()
	case "echo":
		err = runEcho(os.Getenv("ECHO_LISTEN"))
	case "probe":
		err = runProbe()
	case "onvif":
		err = runOnvifDevice()
	default:
		err = fmt.Errorf("unknown helper %q", kind)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns helper %s: %v\n", kind, err)
		return 1
	}
	return 0
}

// runImpairer forwards Ethernet frames between two interfaces (IMPAIR_A and
// IMPAIR_B, off any bridge) with AF_PACKET sockets, dropping IMPAIR_LOSS
// percent of them at random and delaying each by IMPAIR_DELAY, each
// direction on its own and in order. It stands in for netem, which the CI
// kernel lacks (no CONFIG_NET_SCH_NETEM). It runs until killed.
func runImpairer() error {
	delay, err := time.ParseDuration(os.Getenv("IMPAIR_DELAY"))
	if err != nil {
		return err
	}
	loss, err := strconv.ParseFloat(os.Getenv("IMPAIR_LOSS"), 64)
	if err != nil {
		return err
	}
	a, err := openPacketSocket(os.Getenv("IMPAIR_A"))
	if err != nil {
		return err
	}
	b, err := openPacketSocket(os.Getenv("IMPAIR_B"))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	errc := make(chan error, 4)
	go func() { errc <- impairDirection(a, b, delay, loss/100) }()
	go func() { errc <- impairDirection(b, a, delay, loss/100) }()
	return <-errc
}

// openPacketSocket opens a promiscuous raw packet socket on ifname that
// passes the virtio-net header along with each frame: frames from a local
// sender over veth may carry only a partial checksum (and offload state),
// which the header lets the kernel complete when we send the frame on.
func openPacketSocket(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	// Protocol 0 until bound, so no other interface's frames queue up.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return -1, fmt.Errorf("PACKET_VNET_HDR: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
	all := htons(unix.ETH_P_ALL)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index}); err != nil {
		return -1, fmt.Errorf("bind to %s: %w", ifname, err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return -1, fmt.Errorf("promiscuous %s: %w", ifname, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

type delayedFrame struct {
	due   time.Time
	frame []byte
}

// impairDirection reads frames arriving on from and sends them on to, after
// the delay; a queue keeps them in order (the delay is the same for all).
// A full queue drops, as a router's would.
func impairDirection(from, to int, delay time.Duration, loss float64) error {
	q := make(chan delayedFrame, 1<<15)
	errc := make(chan error, 1)
	go func() {
		for f := range q {
			if d := time.Until(f.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := unix.Write(to, f.frame); err != nil && err != unix.ENOBUFS && err != unix.EMSGSIZE {
				errc <- fmt.Errorf("send: %w", err)
				return
			}
		}
	}()
	buf := make([]byte, 1<<16+64)
	for {
		n, sa, err := unix.Recvfrom(from, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		// Our own sends on this interface come back as outgoing: skip them.
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if rand.Float64() < loss {
			continue
		}
		select {
		case q <- delayedFrame{due: time.Now().Add(delay), frame: slices.Clone(buf[:n])}:
		case err := <-errc:
			return err
		default: // queue full: dropped
		}
	}
}

// runEcho answers every UDP datagram on addr with itself, except a "count?"
// query, answered with how many datagrams it has echoed.
func runEcho(addr string) error {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	var echoed int
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == "count?" {
			pc.WriteTo([]byte("count="+strconv.Itoa(echoed)), from)
			continue
		}
		echoed++
		pc.WriteTo(buf[:n], from)
	}
}

// probeResult is what the prober prints: how many probes it sent, how many
// the echo server saw and how many came back, and round-trip times.
type probeResult struct {
	Sent     int           `json:"sent"`
	Echoed   int           `json:"echoed"` // -1 if the server's count never came back
	Received int           `json:"received"`
	RTTs     time.Duration `json:"rtt_median"`
	RTTMin   time.Duration `json:"rtt_min"`
}

// runProbe sends PROBE_COUNT datagrams to PROBE_TO, one every
// PROBE_INTERVAL, waits a second for stragglers, then asks the echo server
// how many it saw, and prints a probeResult as JSON.
func runProbe() error {
	count, _ := strconv.Atoi(os.Getenv("PROBE_COUNT"))
	interval, err := time.ParseDuration(os.Getenv("PROBE_INTERVAL"))
	if err != nil {
		return err
	}
	raddr, err := net.ResolveUDPAddr("udp4", os.Getenv("PROBE_TO"))
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		return err
	}
	// The server's count of an earlier probe run must not count here: ask
	// for it first (it may be lost on an impaired link: retry).
	tries := 20
	if os.Getenv("PROBE_NO_COUNT") == "1" { // a cut link: don't wait for answers
		tries = 0
	}
	base, _ := queryCount(c, tries)
	got := map[uint32]time.Duration{}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			c.SetReadDeadline(time.Now().Add(time.Duration(count)*interval + time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n == 64 {
				seq := binary.BigEndian.Uint32(buf)
				sent := time.Duration(binary.BigEndian.Uint64(buf[4:]))
				got[seq] = time.Since(start) - sent
			}
		}
	}()
	msg := make([]byte, 64)
	for i := range count {
		binary.BigEndian.PutUint32(msg, uint32(i))
		binary.BigEndian.PutUint64(msg[4:], uint64(time.Since(start)))
		c.Write(msg)
		time.Sleep(interval)
	}
	<-done
	res := probeResult{Sent: count, Received: len(got), Echoed: -1}
	if n, ok := queryCount(c, tries); ok {
		res.Echoed = n - base
	}
	var rtts []time.Duration
	for _, d := range got {
		rtts = append(rtts, d)
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		res.RTTs, res.RTTMin = rtts[len(rtts)/2], rtts[0]
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func queryCount(c *net.UDPConn, tries int) (int, bool) {
	buf := make([]byte, 64)
	for range tries {
		c.Write([]byte("count?"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			var v int
			if _, err := fmt.Sscanf(string(buf[:n]), "count=%d", &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}
