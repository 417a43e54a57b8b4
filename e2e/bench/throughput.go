// Package bench owns Custos's end-to-end throughput benchmarks: reusable
// bulk-transfer measurement helpers ([TCPStream], [QUICStream]) that any
// transport can be plugged into, and the baseline benchmarks (plain
// wireguard-go over gVisor netstack, tsnet, loopback TCP/QUIC) that the
// Custos mesh numbers are compared against.
//
// The helpers drive the benchmark with [testing.B.Loop], so the calling
// benchmark function runs exactly once per -count and expensive transport
// setup done before the call is not repeated or timed. A benchmark (or
// sub-benchmark created with b.Run) must call exactly one helper and must not
// loop over b.N itself.
//
// Results are reported as bytes per iteration with b.SetBytes (so `go test
// -bench` prints MB/s) plus custom "Mbit/s" and "cpu-µs/Mbit" (the
// process's CPU time per megabit moved) metrics; cmd/benchreport summarises
// them.
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	// ChunkSize is the number of bytes written per benchmark iteration.
	ChunkSize = 64 << 10

	// ALPN is the TLS application protocol negotiated by [QUICStream].
	ALPN = "custos/1"

	// TunnelQUICPacketSize is the QUIC packet size [QUICStream] uses. It fits
	// a WireGuard tunnel with MTU 1420 over IPv6 (1420 - 40 IPv6 - 8 UDP =
	// 1372 bytes of UDP payload). Path MTU discovery is disabled because
	// netstack packet conns cannot set the DF bit and probe packets larger
	// than the tunnel MTU would just be dropped.
	TunnelQUICPacketSize = 1350

	// setupTimeout bounds connection establishment (dial, accept, handshake).
	setupTimeout = 30 * time.Second

	// stallTimeout aborts a transfer that makes no progress for this long.
	stallTimeout = 20 * time.Second
)

// TCPStream measures one-way bulk throughput over a stream connection: it
// dials once with dial, accepts the connection on ln, and then writes one
// 64 KiB chunk per benchmark iteration from the dialed side to the accepted
// side. The timer covers the writes and the time until the last byte has
// been read by the receiver.
//
// TCPStream takes ownership of ln: it is closed, together with both ends of
// the connection, before TCPStream returns. Any error or a transfer stalled
// for 20s fails the benchmark with b.Fatal.
func TCPStream(b *testing.B, ln net.Listener, dial func(ctx context.Context) (net.Conn, error)) {
	b.Helper()
	defer ln.Close()

	type acceptResult struct {
		c   net.Conn
		err error
	}
	accepted := make(chan acceptResult, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- acceptResult{c, err}
	}()
	// closeAccepted unblocks and reaps the accept goroutine on early return.
	closeAccepted := func() {
		ln.Close()
		if r := <-accepted; r.c != nil {
			r.c.Close()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	client, err := dial(ctx)
	if err != nil {
		closeAccepted()
		b.Fatalf("TCPStream: dial: %v", err)
	}
	defer client.Close()

	var server net.Conn
	select {
	case r := <-accepted:
		if r.err != nil {
			b.Fatalf("TCPStream: accept: %v", r.err)
		}
		server = r.c
	case <-ctx.Done():
		closeAccepted()
		b.Fatalf("TCPStream: accept: %v", ctx.Err())
	}
	defer server.Close()

	bulk(b, "TCPStream", client, server, func() {
		client.Close()
		server.Close()
	})
}

// QUICStream measures one-way bulk throughput over a single QUIC stream. It
// runs a quic-go server on serverPC (ALPN [ALPN], a self-signed ed25519
// certificate generated in memory), dials it from clientPC via a
// [quic.Transport], and writes one 64 KiB chunk per benchmark iteration from
// client to server. serverAddr is the address of serverPC as seen from
// clientPC.
//
// The packet conns need not be *net.UDPConn (gVisor netstack conns work).
// QUIC packets are fixed at [TunnelQUICPacketSize] bytes with path MTU
// discovery off; use [QUICStreamPacketSize] for paths with a smaller MTU.
//
// QUICStream takes ownership of serverPC and clientPC and closes them before
// returning. Any error or a transfer stalled for 20s fails the benchmark with
// b.Fatal.
func QUICStream(b *testing.B, serverPC, clientPC net.PacketConn, serverAddr net.Addr) {
	b.Helper()
	QUICStreamPacketSize(b, serverPC, clientPC, serverAddr, TunnelQUICPacketSize)
}

// QUICStreamPacketSize is [QUICStream] with an explicit QUIC packet size
// (UDP payload bytes, at least 1200). It must not exceed the path MTU minus
// IP and UDP headers: e.g. 1232 for a 1280-byte tunnel MTU such as
// Tailscale's default.
func QUICStreamPacketSize(b *testing.B, serverPC, clientPC net.PacketConn, serverAddr net.Addr, packetSize uint16) {
	b.Helper()
	defer serverPC.Close()
	defer clientPC.Close()

	if packetSize < 1200 {
		b.Fatalf("QUICStream: packet size %d below the QUIC minimum of 1200", packetSize)
	}
	// quic-go cannot size the socket buffers of non-*net.UDPConn conns and
	// would log a warning into the middle of the benchmark output.
	if _, ok := os.LookupEnv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING"); !ok {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	}

	serverTLS, clientTLS, err := selfSignedTLS()
	if err != nil {
		b.Fatalf("QUICStream: %v", err)
	}
	conf := &quic.Config{
		InitialPacketSize:       packetSize,
		DisablePathMTUDiscovery: true,
		HandshakeIdleTimeout:    setupTimeout,
		MaxIdleTimeout:          stallTimeout,
	}

	serverTr := &quic.Transport{Conn: serverPC}
	defer serverTr.Close()
	clientTr := &quic.Transport{Conn: clientPC}
	defer clientTr.Close()

	ln, err := serverTr.Listen(serverTLS, conf)
	if err != nil {
		b.Fatalf("QUICStream: listen: %v", err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	// Server side: accept the connection and its single stream, then consume
	// the one-byte stream header so that setup finishes before timing starts.
	type serverResult struct {
		conn *quic.Conn
		str  *quic.Stream
		err  error
	}
	served := make(chan serverResult, 1)
	go func() {
		var r serverResult
		defer func() { served <- r }()
		r.conn, r.err = ln.Accept(ctx)
		if r.err != nil {
			r.err = fmt.Errorf("accept: %w", r.err)
			return
		}
		r.str, r.err = r.conn.AcceptStream(ctx)
		if r.err != nil {
			r.err = fmt.Errorf("accept stream: %w", r.err)
			return
		}
		var hdr [1]byte
		if _, r.err = io.ReadFull(r.str, hdr[:]); r.err != nil {
			r.err = fmt.Errorf("read stream header: %w", r.err)
		}
	}()
	// reapServer waits for the server goroutine and closes what it opened.
	reapServer := func() {
		cancel()
		if r := <-served; r.conn != nil {
			r.conn.CloseWithError(0, "")
		}
	}

	client, err := clientTr.Dial(ctx, serverAddr, clientTLS, conf)
	if err != nil {
		reapServer()
		b.Fatalf("QUICStream: dial %v: %v", serverAddr, err)
	}
	defer client.CloseWithError(0, "")
	str, err := client.OpenStreamSync(ctx)
	if err != nil {
		reapServer()
		b.Fatalf("QUICStream: open stream: %v", err)
	}
	if _, err := str.Write([]byte{0}); err != nil {
		reapServer()
		b.Fatalf("QUICStream: write stream header: %v", err)
	}

	r := <-served
	if r.conn != nil {
		defer r.conn.CloseWithError(0, "")
	}
	if r.err != nil {
		b.Fatalf("QUICStream: %v", r.err)
	}

	bulk(b, "QUICStream", str, r.str, func() {
		client.CloseWithError(0, "")
		r.conn.CloseWithError(0, "")
	})
}

// bulk runs the timed transfer: one ChunkSize write to w per b.Loop
// iteration, with a goroutine counting what arrives on r. After the loop the
// timer is restarted until the receiver has seen every byte, so bytes still
// in flight when b.Loop stops are part of the measurement. abort must unblock
// any pending Read or Write on r and w; it is called on errors, on stalls and
// once the transfer is complete.
func bulk(b *testing.B, name string, w io.Writer, r io.Reader, abort func()) {
	b.Helper()

	var (
		received atomic.Int64
		target   atomic.Int64 // total bytes expected; -1 until the loop ends
		done     = make(chan struct{})
		doneOnce sync.Once
		finished atomic.Bool
	)
	target.Store(-1)
	finish := func() {
		doneOnce.Do(func() {
			finished.Store(true)
			close(done)
		})
	}

	var abortOnce sync.Once
	abortAll := func() { abortOnce.Do(abort) }

	// Receiver.
	recvErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				tot := received.Add(int64(n))
				if t := target.Load(); t >= 0 && tot >= t {
					finish()
				}
			}
			if err != nil {
				if finished.Load() {
					recvErr <- nil
					return
				}
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				recvErr <- fmt.Errorf("receive after %d bytes: %w", received.Load(), err)
				abortAll() // unblock the writer
				return
			}
		}
	}()

	// Watchdog: abort if no byte arrives for stallTimeout.
	var stalled atomic.Bool
	stopWatchdog := make(chan struct{})
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last, lastChange := received.Load(), time.Now()
		for {
			select {
			case <-stopWatchdog:
				return
			case <-done:
				return
			case now := <-tick.C:
				if cur := received.Load(); cur != last {
					last, lastChange = cur, now
				} else if now.Sub(lastChange) > stallTimeout {
					stalled.Store(true)
					abortAll()
					return
				}
			}
		}
	}()

	// Reap both goroutines on every exit path, including b.Fatal.
	receiverReaped := false
	var receiverErr error
	defer func() {
		close(stopWatchdog)
		<-watchdogDone
		abortAll()
		if !receiverReaped {
			<-recvErr
		}
	}()
	failf := func(format string, args ...any) {
		b.Helper()
		if stalled.Load() {
			format = "%s: stalled for %v: " + format
			args = append([]any{name, stallTimeout}, args...)
		} else {
			format = "%s: " + format
			args = append([]any{name}, args...)
		}
		b.Fatalf(format, args...)
	}

	chunk := make([]byte, ChunkSize)
	for i := range chunk {
		chunk[i] = byte(i)
	}

	b.SetBytes(ChunkSize)
	cpu0 := processCPU()
	var chunks int64
	var writeErr error
	for b.Loop() {
		if _, err := w.Write(chunk); err != nil {
			writeErr = err
			break
		}
		chunks++
	}
	if writeErr != nil {
		abortAll()
		receiverReaped = true
		if err := <-recvErr; err != nil {
			failf("write after %d chunks: %v (receiver: %v)", chunks, writeErr, err)
		}
		failf("write after %d chunks: %v", chunks, writeErr)
	}

	// Keep timing until the receiver has everything.
	b.StartTimer()
	total := chunks * ChunkSize
	target.Store(total)
	if received.Load() >= total {
		finish()
	}
	select {
	case <-done:
	case receiverErr = <-recvErr:
		receiverReaped = true
		if receiverErr == nil { // cannot happen: nil is only sent after done
			receiverErr = errors.New("receiver exited early")
		}
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	if receiverErr != nil {
		failf("%v", receiverErr)
	}
	if got := received.Load(); got != total {
		failf("received %d bytes, sent %d", got, total)
	}
	if int64(b.N) != chunks {
		failf("b.N = %d but %d chunks were written", b.N, chunks)
	}
	if secs := b.Elapsed().Seconds(); secs > 0 {
		b.ReportMetric(float64(total)*8/secs/1e6, "Mbit/s")
	}
	if total > 0 {
		// Both ends run in this process, so this is the whole path's cost:
		// sender, tunnel both ways and receiver.
		b.ReportMetric(float64(cpu.Microseconds())/(float64(total)*8/1e6), "cpu-µs/Mbit")
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfSignedTLS returns matching server and client TLS configs: the server
// presents a fresh self-signed ed25519 certificate, which the client trusts
// as its only root.
func selfSignedTLS() (server, client *tls.Config, err error) {
	const serverName = "custos-bench.invalid"
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: serverName},
		DNSNames:              []string{serverName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: cert}},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		RootCAs:    roots,
		ServerName: serverName,
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
	}
	return server, client, nil
}
