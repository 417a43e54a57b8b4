package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/membership"
)

func mbps(n int64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }

// demoTCP sends size zero bytes over one TCP stream from one mesh to
// another and returns the throughput in Mbit/s.
func demoTCP(ctx context.Context, from, to *mesh.Mesh, size int64) (float64, error) {
	ln, err := to.ListenTCP(5001)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != size {
			err = fmt.Errorf("received %d of %d bytes", n, size)
		}
		got <- err
	}()
	c, err := from.DialTCP(ctx, netip.AddrPortFrom(to.Addr(), 5001))
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := io.CopyN(c, zeroReader{}, size); err != nil {
		c.Close()
		return 0, err
	}
	c.Close()
	if err := <-got; err != nil {
		return 0, err
	}
	return mbps(size, time.Since(t0)), nil
}

// demoQUIC does the same over one QUIC stream on the meshes' packet
// conns, with packets small enough for the tunnel.
func demoQUIC(ctx context.Context, from, to *mesh.Mesh, size int64) (float64, error) {
	spc, err := to.ListenUDP(4433)
	if err != nil {
		return 0, err
	}
	defer spc.Close()
	cpc, err := from.ListenUDP(0)
	if err != nil {
		return 0, err
	}
	defer cpc.Close()
	srvTLS, cliTLS, err := pinnedTLS()
	if err != nil {
		return 0, err
	}
	qc := &quic.Config{InitialPacketSize: mesh.QUICPacketSize, DisablePathMTUDiscovery: true}
	st, ct := &quic.Transport{Conn: spc}, &quic.Transport{Conn: cpc}
	defer st.Close()
	defer ct.Close()
	ln, err := st.Listen(srvTLS, qc)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			got <- err
			return
		}
		n, err := io.Copy(io.Discard, s)
		if err == nil && n != size {
			err = fmt.Errorf("received %d of %d bytes", n, size)
		}
		conn.CloseWithError(0, "")
		got <- err
	}()
	conn, err := ct.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 4433)), cliTLS, qc)
	if err != nil {
		return 0, err
	}
	defer conn.CloseWithError(0, "")
	t0 := time.Now()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyN(s, zeroReader{}, size); err != nil {
		return 0, err
	}
	s.Close()
	if err := <-got; err != nil {
		return 0, err
	}
	return mbps(size, time.Since(t0)), nil
}

// pinnedTLS makes a throwaway server certificate and a client config that
// accepts exactly that certificate. (The node-key certificates checked
// against the policy come with the QUIC service.)
func pinnedTLS() (srv, cli *tls.Config, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, err
	}
	srv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{"custos/1"}, MinVersion: tls.VersionTLS13}
	cli = &tls.Config{
		NextProtos: []string{"custos/1"}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the exact-certificate check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) != 1 || !bytes.Equal(raw[0], der) {
				return errors.New("unexpected server certificate")
			}
			return nil
		},
	}
	return srv, cli, nil
}

// demoRemoval keeps a TCP stream from dcb to store flowing, rewrites the
// store's peers file without dcb, and times how long the store's end of the
// stream lasts after that.
func demoRemoval(ctx context.Context, store, dcb *node.Node, peersOf func(string, []string) []mesh.Peer) (time.Duration, error) {
	ln, err := store.Mesh().ListenTCP(5002)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := dcb.Mesh().DialTCP(ctx, netip.AddrPortFrom(store.Mesh().Addr(), 5002))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 8<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(10 * time.Second):
		return 0, errors.New("store did not accept")
	}
	defer sc.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, sc)
		if err == nil {
			err = io.EOF
		}
		readErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let data flow first
	st, err := store.Status()
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(st.PeersFile, membership.FormatPeers(peersOf(store.Name(), []string{"dc-a", store.Name()})), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-readErr:
		return time.Since(t0), nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("stream still open 10 s after removal")
	}
}

// zeroReader is an endless source of zeros, for transfers.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
