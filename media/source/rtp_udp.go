package source

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/custos-cctv/custos/media/h264"
)

// rrEvery is how often a receiver report goes to the camera (RFC 3550
// §6.2 suggests 5 s as the minimum interval).
const rrEvery = 5 * time.Second

// udpPair is the RTP (even) and RTCP (odd) ports of one UDP session. Only
// datagrams from the camera's address — the one the control connection
// reaches — and, once SETUP named them, its ports are accepted: anyone
// else on the network could otherwise inject video.
type udpPair struct {
	rtp, rtcp         *net.UDPConn
	localPort         int
	server            netip.Addr
	rtpPort, rtcpPort int // the camera's, from server_port; 0 = not given
	foreign           atomic.Uint64
}

// listenUDPPair binds an even port and the odd one above it on the local
// address of the control connection.
func listenUDPPair(ctrl net.Conn) (*udpPair, error) {
	local, _ := netip.ParseAddrPort(ctrl.LocalAddr().String())
	remote, _ := netip.ParseAddrPort(ctrl.RemoteAddr().String())
	ip := net.IP(local.Addr().Unmap().AsSlice())
	var lastErr error
	for range 32 {
		port := 20000 + 2*rand.IntN(20000)
		a, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			lastErr = err
			continue
		}
		b, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port + 1})
		if err != nil {
			a.Close()
			lastErr = err
			continue
		}
		// An IDR frame arrives as a burst of datagrams: room for it.
		_ = a.SetReadBuffer(2 << 20)
		return &udpPair{rtp: a, rtcp: b, localPort: port, server: remote.Addr().Unmap()}, nil
	}
	return nil, fmt.Errorf("rtsp: no free UDP port pair for RTP: %w", lastErr)
}

func (u *udpPair) close() {
	u.rtp.Close()
	u.rtcp.Close()
}

// fromCamera reports whether a datagram came from the camera.
func (u *udpPair) fromCamera(from netip.AddrPort, port int) bool {
	return from.Addr().Unmap() == u.server && (port == 0 || int(from.Port()) == port)
}

// playUDP reads RTP from the UDP pair until an error or ctx ends. The
// control connection is read by a goroutine of its own (keep-alive
// answers, or the camera closing it, which ends the session); RTCP by
// another (sender reports, for our receiver reports).
func (c *rtspConn) playUDP(ctx context.Context, tr track, u *udpPair, emit func(h264.Frame) error) error {
	src := c.src
	recv := &rtpReceiver{ssrc: rand.Uint32(), clockRate: tr.clockRate}
	var recvMu sync.Mutex // recv is shared with the RTCP reader

	// The control connection has no deadline while UDP plays: the RTP
	// read timeout notices a dead camera. Cleared here, before the reader
	// starts, so the deferred stop below cannot be overwritten.
	if err := c.readDeadline(ctx, 0); err != nil {
		return err
	}
	ctrlErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		_ = c.conn.SetReadDeadline(aLongTimeAgo)
		u.close()
	}()
	wg.Go(func() {
		err := c.readControl(ctx)
		ctrlErr <- err
		_ = u.rtp.SetReadDeadline(aLongTimeAgo)
	})
	wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, from, err := u.rtcp.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			if !u.fromCamera(from, u.rtcpPort) {
				u.foreign.Add(1)
				continue
			}
			info, err := parseRTCP(b[:n])
			if err != nil {
				continue
			}
			if info.srNTP != 0 {
				recvMu.Lock()
				recv.senderReport(info.srNTP, time.Now())
				recvMu.Unlock()
			}
			if info.bye {
				src.log.Info("camera sent RTCP BYE")
			}
		}
	})
	var rtcpTo netip.AddrPort
	if u.rtcpPort != 0 {
		rtcpTo = netip.AddrPortFrom(u.server, uint16(u.rtcpPort))
	}

	dp := tr.depacketizer() // H.264 or H.265, as SETUP found
	wall := rtpClock{rate: tr.clockRate}
	timeout := src.opt.ReadTimeout
	noFrame := 3 * timeout
	fallback := src.opt.Transport == TransportAuto
	start := src.opt.clock.Now()
	lastFrame, lastPkt, gotAny := start, start, false
	nextRR, nextStats := time.Now().Add(src.opt.rrEvery), time.Now()
	var ro reorder
	var reported [3]uint64 // lost, reordered, foreign already in Stats
	publish := func() {
		f := u.foreign.Load()
		src.stats.packets(ro.lost-reported[0], ro.reordered-reported[1], f-reported[2])
		reported = [3]uint64{ro.lost, ro.reordered, f}
	}
	defer publish()

	var pkt rtp.Packet
	var emitErr error
	var now time.Time
	handle := func(b []byte) {
		if emitErr != nil || pkt.Unmarshal(b) != nil || pkt.PayloadType != tr.payloadType {
			return
		}
		recvMu.Lock()
		recv.packet(pkt.SequenceNumber, pkt.Timestamp, pkt.SSRC, now)
		recvMu.Unlock()
		for _, au := range dp.push(&pkt) {
			f := h264.Frame{Time: wall.at(au.ts, now), Key: au.key, Data: au.data, Codec: au.codec}
			if err := emit(f); err != nil {
				emitErr = errEmit{err}
				return
			}
			src.stats.frame(len(f.Data))
			lastFrame = now
		}
	}
	buf := make([]byte, 64<<10)
	for {
		wait := timeout
		if fallback && !gotAny {
			wait = src.opt.UDPFallback
		}
		if ro.held > 0 {
			wait = reorderWait
		}
		_ = u.rtp.SetReadDeadline(time.Now().Add(wait))
		if err := ctx.Err(); err != nil {
			return err
		}
		select { // the control reader's stop may predate the deadline just set
		case cerr := <-ctrlErr:
			return cerr
		default:
		}
		n, from, err := u.rtp.ReadFromUDPAddrPort(buf)
		now = src.opt.clock.Now()
		if err != nil {
			select {
			case cerr := <-ctrlErr:
				return cerr
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("rtsp: read RTP over UDP: %w", err)
			}
			ro.flush(now, handle)
			switch {
			case emitErr != nil:
				return emitErr
			case fallback && !gotAny && now.Sub(start) >= src.opt.UDPFallback:
				return errFallbackTCP
			case now.Sub(lastPkt) >= timeout:
				return fmt.Errorf("rtsp: read: %w: no RTP over UDP for %s", ErrTimeout, timeout)
			}
			continue
		}
		// The sequence number is all the reorder window needs; the
		// rest is parsed once the packet is in order.
		if !u.fromCamera(from, u.rtpPort) {
			u.foreign.Add(1)
			continue
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue // not RTP
		}
		gotAny, lastPkt = true, now
		ro.push(binary.BigEndian.Uint16(buf[2:4]), buf[:n], now, handle)
		ro.flush(now, handle)
		if emitErr != nil {
			return emitErr
		}
		if now.Sub(lastFrame) > noFrame {
			return fmt.Errorf("rtsp: packets arrive but no whole frame for %v (a fragment that never ends, or only damaged frames): %w", noFrame, ErrTimeout)
		}
		if t := time.Now(); t.After(nextStats) {
			nextStats = t.Add(min(time.Second, src.opt.rrEvery))
			publish()
			if t.After(nextRR) && rtcpTo.IsValid() {
				nextRR = t.Add(src.opt.rrEvery)
				recvMu.Lock()
				rr := recv.report(t)
				recvMu.Unlock()
				if rr != nil {
					_, _ = u.rtcp.WriteToUDPAddrPort(rr, rtcpTo)
				}
			}
		}
	}
}

// readControl reads the control connection while RTP comes over UDP:
// answers to keep-alives, and requests from the camera, all ignored but
// a session that ended. It returns when the connection fails.
func (c *rtspConn) readControl(ctx context.Context) error {
	for {
		b, err := c.br.Peek(1)
		if err != nil {
			return c.readErr(ctx, "read", 0, err)
		}
		if b[0] == '$' {
			if _, c.rbuf, err = readInterleaved(c.br, c.rbuf); err != nil {
				return c.readErr(ctx, "read", 0, err)
			}
			continue
		}
		m, err := readMessage(c.br)
		if err != nil {
			return c.readErr(ctx, "read", 0, err)
		}
		if err := c.keepAliveAnswer(m); err != nil {
			return err
		}
	}
}
