package mesh

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/keys"
)

const testQUICPort = 4450

func admitAll(keys.NodePublic) error { return nil }

// quicEcho serves m's QUIC port: on every stream it writes the peer key the
// connection was authenticated as, one line, then echoes. Cleanup closes the
// listener and waits for every goroutine it started.
func quicEcho(t testing.TB, m *Mesh, cfg QUICConfig) *QUICListener {
	t.Helper()
	ln, err := m.ListenQUIC(testQUICPort, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					wg.Go(func() {
						defer s.Close()
						io.WriteString(s, c.PeerKey().String()+"\n")
						io.Copy(s, s)
					})
				}
			})
		}
	})
	return ln
}

// roundTrip sends msg on a new stream of c and checks the echo and that the
// server saw the connection as coming from want.
func roundTrip(ctx context.Context, c *QUICConn, want keys.NodePublic, msg string) error {
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer s.CancelRead(0)
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s, msg); err != nil {
		return err
	}
	s.Close()
	r := bufio.NewReader(s)
	who, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read peer line: %w", err)
	}
	if got := strings.TrimSpace(who); got != want.String() {
		return fmt.Errorf("server saw us as %s, want %s", got, want)
	}
	echo, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(echo) != msg {
		return fmt.Errorf("echo %q, want %q", echo, msg)
	}
	return nil
}

func TestQUICThreeNodesRoundTrip(t *testing.T) {
	checkLeaks(t)
	ms := map[string]*Mesh{"a": newTestMesh(t, "a", false), "b": newTestMesh(t, "b", false), "c": newTestMesh(t, "c", false)}
	connectAll(t, ms)
	for _, m := range ms {
		quicEcho(t, m, QUICConfig{Admit: admitAll})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for from, fm := range ms {
		for to, tm := range ms {
			if from == to {
				continue
			}
			c, err := fm.DialQUIC(ctx, netip.AddrPortFrom(tm.Addr(), testQUICPort), QUICConfig{Admit: admitAll})
			if err != nil {
				t.Fatalf("%s→%s dial: %v", from, to, err)
			}
			if got := c.PeerKey(); got != tm.PublicKey() {
				t.Errorf("%s→%s PeerKey = %s, want %s", from, to, got, tm.PublicKey())
			}
			if p := c.ConnectionState().TLS.NegotiatedProtocol; p != ALPN {
				t.Errorf("%s→%s ALPN = %q, want %q", from, to, p, ALPN)
			}
			if err := roundTrip(ctx, c, fm.PublicKey(), "hello from "+from+" to "+to); err != nil {
				t.Errorf("%s→%s: %v", from, to, err)
			}
			c.Close()
		}
	}
}

func TestQUICAdmit(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	refuse := func(keys.NodePublic) error { return errors.New("not in policy") }

	// a serves with an Admit the cases switch; it records whom it was asked about.
	var mu sync.Mutex
	var serverAdmit func(keys.NodePublic) error
	var asked []keys.NodePublic
	quicEcho(t, a, QUICConfig{Admit: func(k keys.NodePublic) error {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, k)
		if serverAdmit == nil {
			return errors.New("test: nil")
		}
		return serverAdmit(k)
	}})
	nilServer, err := a.ListenQUIC(testQUICPort+1, QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer nilServer.Close()

	cases := []struct {
		name         string
		server       func(keys.NodePublic) error
		port         uint16
		client       func(keys.NodePublic) error
		ok           bool
		wantNotAdmit bool // the refusal is ours (client side), so errors.Is works
	}{
		{"both admit", admitAll, testQUICPort, admitAll, true, false},
		{"server refuses client", refuse, testQUICPort, admitAll, false, false},
		{"client refuses server", admitAll, testQUICPort, refuse, false, true},
		{"client has nil Admit", admitAll, testQUICPort, nil, false, true},
		{"server has nil Admit", nil, testQUICPort + 1, admitAll, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			serverAdmit, asked = tc.server, nil
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := b.DialQUIC(ctx, netip.AddrPortFrom(a.Addr(), tc.port), QUICConfig{Admit: tc.client})
			if tc.ok {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				if err := roundTrip(ctx, c, b.PublicKey(), "admitted"); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(asked) != 1 || asked[0] != b.PublicKey() {
					t.Fatalf("server Admit asked about %v, want exactly [b]", asked)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded, want refusal")
			}
			if got := errors.Is(err, ErrNotAdmitted); got != tc.wantNotAdmit {
				t.Fatalf("errors.Is(%v, ErrNotAdmitted) = %v, want %v", err, got, tc.wantNotAdmit)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// rawQUICConfig is what a hostile or buggy node controls: any certificate.
func rawQUICTLS(t testing.TB, claim keys.NodePublic) *tls.Config {
	t.Helper()
	cert, err := newQUICCert(claim)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, ClientAuth: tls.RequireAnyClientCert,
	}
}

func TestQUICCertMustNameTheWireGuardPeer(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	c := newTestMesh(t, "c", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b, "c": c})
	qc := &quic.Config{InitialPacketSize: QUICPacketSize, DisablePathMTUDiscovery: true, HandshakeIdleTimeout: 3 * time.Second}

	for _, claim := range []struct {
		name string
		key  keys.NodePublic
	}{{"another peer", c.PublicKey()}, {"a stranger", keys.NewNodePrivate().Public()}} {
		t.Run("client claims "+claim.name, func(t *testing.T) {
			var mu sync.Mutex
			var asked []keys.NodePublic
			ln, err := a.ListenQUIC(testQUICPort, QUICConfig{Admit: func(k keys.NodePublic) error {
				mu.Lock()
				asked = append(asked, k)
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan *QUICConn, 1)
			go func() {
				if c, err := ln.Accept(context.Background()); err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			defer func() {
				ln.Close()
				if c, ok := <-accepted; ok {
					c.Close()
					t.Error("a accepted a connection whose certificate names someone else")
				}
			}()
			pc, err := b.ListenUDP(0)
			if err != nil {
				t.Fatal(err)
			}
			tr := &quic.Transport{Conn: pc}
			defer func() { tr.Close(); pc.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Addr(), testQUICPort)), rawQUICTLS(t, claim.key), qc)
			if err == nil {
				// TLS 1.3 clients finish first: the refusal arrives next.
				defer conn.CloseWithError(0, "")
				s, err := conn.OpenStreamSync(ctx)
				if err == nil {
					s.Write([]byte("x"))
					_, err = s.Read(make([]byte, 1))
				}
				if err == nil {
					t.Fatal("stream to a works with a certificate naming someone else")
				}
				t.Logf("client sees: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, k := range asked {
				if k != b.PublicKey() {
					t.Fatalf("Admit was asked about %s; only b's key may come from b's address", k.ShortString())
				}
			}
		})
		t.Run("server claims "+claim.name, func(t *testing.T) {
			pc, err := b.ListenUDP(testQUICPort)
			if err != nil {
				t.Fatal(err)
			}
			tr := &quic.Transport{Conn: pc}
			defer func() { tr.Close(); pc.Close() }()
			ln, err := tr.Listen(rawQUICTLS(t, claim.key), qc)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := a.DialQUIC(ctx, netip.AddrPortFrom(b.Addr(), testQUICPort), QUICConfig{Admit: admitAll})
			if err == nil {
				conn.Close()
				t.Fatal("a accepted a server whose certificate names someone else")
			}
			if !strings.Contains(err.Error(), "certificate names") {
				t.Fatalf("err = %v, want a certificate mismatch", err)
			}
		})
	}
}

func TestQUICPeerRemoved(t *testing.T) {
	checkLeaks(t)
	a := newTestMesh(t, "a", false)
	b := newTestMesh(t, "b", false)
	connectAll(t, map[string]*Mesh{"a": a, "b": b})
	ln, err := a.ListenQUIC(testQUICPort, QUICConfig{Admit: admitAll})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *QUICConn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	bc, err := b.DialQUIC(ctx, netip.AddrPortFrom(a.Addr(), testQUICPort), QUICConfig{Admit: admitAll})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	ac, ok := <-accepted
	if !ok {
		t.Fatal("a accepted nothing")
	}
	if ac.PeerKey() != b.PublicKey() {
		t.Fatalf("accepted PeerKey = %s, want b", ac.PeerKey())
	}

	must(t, a.SetPeers(nil))
	select {
	case <-ac.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a's connection with b outlived b's removal")
	}
	// b still has a as a peer and tries; a's WireGuard drops it.
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dcancel()
	if c, err := b.DialQUIC(dctx, netip.AddrPortFrom(a.Addr(), testQUICPort), QUICConfig{Admit: admitAll}); err == nil {
		c.Close()
		t.Fatal("removed peer b dialed a")
	}
	// a cannot even try.
	if _, err := a.DialQUIC(ctx, netip.AddrPortFrom(b.Addr(), testQUICPort), QUICConfig{Admit: admitAll}); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("a→removed b: err = %v, want ErrNoPeer", err)
	}
}

func TestQUICPacketSizeFitsTunnel(t *testing.T) {
	for _, tc := range []struct{ mtu, want int }{{DefaultMTU, QUICPacketSize}, {1280, 1232}, {9000, QUICPacketSize}} {
		m := &Mesh{mtu: tc.mtu}
		if got := m.quicPacketSize(); int(got) != tc.want {
			t.Errorf("MTU %d: packet size %d, want %d", tc.mtu, got, tc.want)
		}
		if c := m.quicConfig(QUICConfig{}); !c.DisablePathMTUDiscovery || c.KeepAlivePeriod == 0 || c.MaxIdleTimeout == 0 {
			t.Errorf("quic config %+v: want PMTUD off and explicit timers", c)
		}
	}
}

func certDER(t testing.TB, mutate func(*x509.Certificate), signer any) []byte {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{{Scheme: "custos", Opaque: keys.NewNodePrivate().Public().String()}},
	}
	var key, sig any = pub, priv
	if signer != nil {
		switch s := signer.(type) {
		case *ecdsa.PrivateKey:
			key, sig = s.Public(), s
		case ed25519.PrivateKey:
			sig = s // a key other than the certificate's own
		}
	}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key, sig)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestNodeKeyFromCert(t *testing.T) {
	k := keys.NewNodePrivate().Public()
	good, err := newQUICCert(k)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	upper := "custos:nodekey:" + strings.ToUpper(k.WireGuardHex())
	cases := []struct {
		name  string
		chain [][]byte
		ok    bool
	}{
		{"ours", good.Certificate, true},
		{"none", nil, false},
		{"two certificates", [][]byte{good.Certificate[0], good.Certificate[0]}, false},
		{"ecdsa", [][]byte{certDER(t, nil, ec)}, false},
		{"signed by another key", [][]byte{certDER(t, nil, other)}, false},
		{"extra dns name", [][]byte{certDER(t, func(c *x509.Certificate) { c.DNSNames = []string{"x"} }, nil)}, false},
		{"two uris", [][]byte{certDER(t, func(c *x509.Certificate) { c.URIs = append(c.URIs, c.URIs[0]) }, nil)}, false},
		{"wrong scheme", [][]byte{certDER(t, func(c *x509.Certificate) { c.URIs[0].Scheme = "https" }, nil)}, false},
		{"uppercase hex", [][]byte{certDER(t, func(c *x509.Certificate) { c.URIs[0], _ = url.Parse(upper) }, nil)}, false},
		{"fragment", [][]byte{certDER(t, func(c *x509.Certificate) { c.URIs[0].Fragment = "x" }, nil)}, false},
		{"private key", [][]byte{certDER(t, func(c *x509.Certificate) { c.URIs[0].Opaque = "privkey:" + k.WireGuardHex() }, nil)}, false},
	}
	for _, tc := range cases {
		var chain []*x509.Certificate
		for _, der := range tc.chain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			chain = append(chain, c)
		}
		got, err := nodeKeyFromCert(chain)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok && got != k {
			t.Errorf("%s: key %s, want %s", tc.name, got, k)
		}
		if err != nil && strings.Contains(err.Error(), k.WireGuardHex()) {
			t.Errorf("%s: error echoes key material: %v", tc.name, err)
		}
	}
}

func FuzzNodeKeyFromCert(f *testing.F) {
	good, err := newQUICCert(keys.NewNodePrivate().Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Certificate[0])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		k, err := nodeKeyFromCert([]*x509.Certificate{c})
		if err != nil {
			return
		}
		if k.IsZero() || c.URIs[0].String() != "custos:"+k.String() {
			t.Fatalf("accepted %q as %s", c.URIs[0], k)
		}
	})
}
