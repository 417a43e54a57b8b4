package mesh

// QUIC inside the mesh (DESIGN §5): quic-go over the netstack's UDP conns,
// ALPN custos/1, with TLS 1.3 mutual authentication bound to WireGuard.
//
// Identity. WireGuard keys are Curve25519 and cannot sign, so each side
// presents a fresh self-signed Ed25519 certificate (made per listener and
// per dial, never stored) whose only name is a URI SAN
// "custos:nodekey:<hex>". crypto/tls proves in the handshake that the peer
// holds that certificate's Ed25519 key. Nothing signs the claim with the
// node key, and nothing needs to: the claim is accepted only if it names
// exactly the WireGuard peer that owns the remote mesh address. WireGuard
// delivers a packet from address A only if it was sealed by the peer whose
// AllowedIPs is A/128 (peers.go gives each peer exactly its own
// keys.MeshAddr), and seals packets to A only for that peer, so the UDP path
// under QUIC already runs to the holder of that node's private key, and to no
// one else. Binding the TLS identity to the path makes the certificate
// unforgeable in the only place it is used: another peer can claim any key
// it likes, but it cannot send from that key's address. That is why the
// chain check is skipped (InsecureSkipVerify on the client, RequireAnyClientCert
// on the server): there is no CA whose word would add anything, and the
// checks in verifyCert/admitAddr replace it. Certificates carry no expiry
// that anyone checks for the same reason: the certificate is a claim
// proven live in each handshake, not a credential that could be replayed.
//
// Policy. After the binding, the caller's QUICConfig.Admit decides; nil
// refuses every peer. The server asks Admit when the ClientHello arrives
// (the address already names the key), so a refused client's dial fails;
// the client asks it before finishing its half of the handshake. Session
// tickets and 0-RTT are off, so every connection runs the full check.
//
// Revocation. Every connection watches OnPeerRemoved and is closed the
// moment its peer leaves the mesh, whatever path it took; a new dial or
// handshake from a removed peer fails the peer check.
//
// Packets and timers. The netstack conn is not a *net.UDPConn, so quic-go
// cannot probe the path MTU; path MTU discovery is off and every packet is
// quicPacketSize (QUICPacketSize for the default MTU). Handshakes may take
// quicHandshakeTimeout (it includes a first WireGuard handshake, whose
// initiation WireGuard retries after 5 s). Established connections send a
// keep-alive every quicKeepAlive and die after quicIdleTimeout without
// hearing from the peer, so a vanished peer is noticed within 30 s.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/keys"
)

// ALPN is the TLS application protocol of every QUIC connection in the mesh.
const ALPN = "custos/1"

const (
	quicHandshakeTimeout = 10 * time.Second
	quicIdleTimeout      = 30 * time.Second
	quicKeepAlive        = 10 * time.Second
	// DefaultQUICStreams is how many concurrent streams a peer may open on
	// one connection unless QUICConfig.MaxStreams says otherwise; further
	// opens wait for a stream to finish (QUIC flow control, not an error).
	DefaultQUICStreams = 100
	// QUIC application error codes we close connections with.
	quicCodeClosed      quic.ApplicationErrorCode = 0
	quicCodePeerRemoved quic.ApplicationErrorCode = 1
)

// ErrNotAdmitted is wrapped by a refusal from QUICConfig.Admit (or from its
// absence) on our side.
var ErrNotAdmitted = errors.New("peer not admitted")

// ErrNotYet, wrapped by an error of QUICConfig.Admit, marks a refusal as
// expected and passing: the node cannot decide yet (its policy replica is
// still catching up) and the peer will try again. The connection is refused
// all the same; the refusal is only not logged.
var ErrNotYet = errors.New("cannot admit yet")

// QUICConfig configures ListenQUIC and DialQUIC. The zero value refuses
// every peer.
type QUICConfig struct {
	// Admit is the policy check, given the peer's key once it is bound to
	// the WireGuard peer. An error refuses the connection; nil refuses all.
	Admit func(keys.NodePublic) error
	// MaxStreams caps the concurrent streams the peer may open on a
	// connection; 0 means DefaultQUICStreams.
	MaxStreams int
}

// QUICConn is an authenticated QUIC connection with a mesh peer. The
// embedded *quic.Conn gives streams; Close or CloseWithError ends it.
type QUICConn struct {
	*quic.Conn
	peer keys.NodePublic
}

// PeerKey is the peer's node key, proven by WireGuard and bound to the TLS
// handshake.
func (c *QUICConn) PeerKey() keys.NodePublic { return c.peer }

// Close closes the connection with no error code.
func (c *QUICConn) Close() error { return c.CloseWithError(quicCodeClosed, "") }

// QUICListener accepts authenticated QUIC connections on one mesh UDP port.
type QUICListener struct {
	m    *Mesh
	pc   net.PacketConn
	tr   *quic.Transport
	ln   *quic.Listener
	port uint16

	mu     sync.Mutex // guards conns
	conns  map[*QUICConn]struct{}
	closed bool
}

// ListenQUIC serves QUIC on a UDP port of this node's mesh address. Only
// current peers that present their own node key and pass cfg.Admit complete
// a handshake.
func (m *Mesh) ListenQUIC(port uint16, cfg QUICConfig) (*QUICListener, error) {
	cert, err := newQUICCert(m.pub)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen quic port %d: %w", port, err)
	}
	pc, err := m.ListenUDP(port)
	if err != nil {
		return nil, err
	}
	l := &QUICListener{m: m, pc: pc, tr: &quic.Transport{Conn: pc}, conns: map[*QUICConn]struct{}{}, port: port}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		l.port = uint16(ua.Port)
	}
	l.ln, err = l.tr.Listen(m.serverTLS(cert, cfg.Admit), m.quicConfig(cfg))
	if err != nil {
		l.tr.Close()
		pc.Close()
		return nil, fmt.Errorf("mesh: listen quic port %d: %w", port, err)
	}
	return l, nil
}

// Port is the UDP port the listener serves.
func (l *QUICListener) Port() uint16 { return l.port }

// Accept waits for the next authenticated connection.
func (l *QUICListener) Accept(ctx context.Context) (*QUICConn, error) {
	for {
		qc, err := l.ln.Accept(ctx)
		if err != nil {
			return nil, fmt.Errorf("mesh: quic accept: %w", err)
		}
		// The handshake verified the certificate; read back what it named.
		peer, err := nodeKeyFromCert(qc.ConnectionState().TLS.PeerCertificates)
		if err != nil {
			qc.CloseWithError(quicCodeClosed, "")
			continue
		}
		c, err := l.m.adoptQUIC(qc, peer, nil)
		if err != nil {
			continue // removed between handshake and here
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, fmt.Errorf("mesh: quic accept: %w", net.ErrClosed)
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		context.AfterFunc(qc.Context(), func() {
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		})
		return c, nil
	}
}

// Close stops accepting, closes every accepted connection and the socket.
func (l *QUICListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	open := make([]*QUICConn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	err := l.ln.Close()
	for _, c := range open {
		c.CloseWithError(quicCodeClosed, "server closing")
	}
	l.tr.Close()
	l.pc.Close()
	return err
}

// DialQUIC connects to a peer's QUIC listener over the mesh. It fails at
// once with ErrNoPeer when no current peer owns to's address. The server
// refuses a client it does not admit during the handshake, so DialQUIC
// fails then too; only a client presenting a certificate that names
// another key learns of its refusal after DialQUIC returned, on its
// first stream.
func (m *Mesh) DialQUIC(ctx context.Context, to netip.AddrPort, cfg QUICConfig) (*QUICConn, error) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if err := m.checkPeerAddr(to.Addr()); err != nil {
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	cert, err := newQUICCert(m.pub)
	if err != nil {
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	pc, err := m.ListenUDP(0)
	if err != nil {
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	// One socket per dialed connection: its lifetime is the connection's.
	tr := &quic.Transport{Conn: pc}
	release := func() { tr.Close(); pc.Close() }
	qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(to), m.clientTLS(cert, to.Addr(), cfg.Admit), m.quicConfig(cfg))
	if err != nil {
		release()
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	peer, err := nodeKeyFromCert(qc.ConnectionState().TLS.PeerCertificates)
	if err != nil { // cannot happen: VerifyConnection checked it
		qc.CloseWithError(quicCodeClosed, "")
		release()
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	c, err := m.adoptQUIC(qc, peer, release)
	if err != nil {
		return nil, fmt.Errorf("mesh: quic dial %s: %w", to, err)
	}
	return c, nil
}

// adoptQUIC closes qc when peer leaves the mesh, and runs release when qc
// ends. The watch is in place before the final peer check, so a removal
// either fails the check or reaches the watch.
func (m *Mesh) adoptQUIC(qc *quic.Conn, peer keys.NodePublic, release func()) (*QUICConn, error) {
	unwatch := m.OnPeerRemoved(func(p Peer) {
		if p.PublicKey == peer {
			qc.CloseWithError(quicCodePeerRemoved, "peer removed from mesh")
		}
	})
	context.AfterFunc(qc.Context(), func() {
		unwatch()
		if release != nil {
			release()
		}
	})
	if cur, ok := m.PeerByAddr(m.AddrOf(peer)); !ok || cur.PublicKey != peer {
		qc.CloseWithError(quicCodePeerRemoved, "peer removed from mesh")
		return nil, fmt.Errorf("connection with %s: %w", peer.ShortString(), ErrNoPeer)
	}
	return &QUICConn{Conn: qc, peer: peer}, nil
}

func (m *Mesh) quicConfig(cfg QUICConfig) *quic.Config {
	streams := int64(cfg.MaxStreams)
	if streams <= 0 {
		streams = DefaultQUICStreams
	}
	return &quic.Config{
		HandshakeIdleTimeout:    quicHandshakeTimeout,
		MaxIdleTimeout:          quicIdleTimeout,
		KeepAlivePeriod:         quicKeepAlive,
		InitialPacketSize:       m.quicPacketSize(),
		DisablePathMTUDiscovery: true, // with it off, the initial size is also the largest
		MaxIncomingStreams:      streams,
		MaxIncomingUniStreams:   -1, // unused: refuse
	}
}

// quicPacketSize is QUICPacketSize, or less for a tunnel MTU under 1420
// (40 bytes of IPv6 and 8 of UDP header go inside the tunnel).
func (m *Mesh) quicPacketSize() uint16 { return uint16(min(QUICPacketSize, m.mtu-48)) }

// serverTLS asks for a client certificate and checks it in VerifyConnection,
// which GetConfigForClient installs per handshake because only there is the
// client's address known. The base config's VerifyConnection refuses, so a
// handshake that somehow bypassed GetConfigForClient fails closed.
func (m *Mesh) serverTLS(cert tls.Certificate, admit func(keys.NodePublic) error) *tls.Config {
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection:       func(tls.ConnectionState) error { return errors.New("mesh: quic: client address unknown") },
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		ua, ok := hello.Conn.RemoteAddr().(*net.UDPAddr)
		if !ok {
			return nil, errors.New("mesh: quic: client address unknown")
		}
		remote := ua.AddrPort().Addr().Unmap()
		// Refuse before answering: the address already names the key.
		want, err := m.admitAddr(remote, admit)
		if err != nil {
			if !errors.Is(err, ErrNotYet) {
				m.logf("%v", err) // the client only sees a TLS alert
			}
			return nil, err
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verifyCert(cs, want); err != nil {
				err = fmt.Errorf("mesh: quic client %s: %w", remote, err)
				m.logf("%v", err)
				return err
			}
			// Still a peer when the handshake ends (not re-admitted).
			if cur, ok := m.PeerByAddr(remote); !ok || cur.PublicKey != want {
				return fmt.Errorf("mesh: quic client %s: %w", remote, ErrNoPeer)
			}
			return nil
		}
		return c, nil
	}
	return base
}

// clientTLS checks the server's certificate against the peer that owns the
// address we dialed.
func (m *Mesh) clientTLS(cert tls.Certificate, server netip.Addr, admit func(keys.NodePublic) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		Certificates: []tls.Certificate{cert},
		// The chain check is replaced by VerifyConnection (see the file
		// comment); no session cache, so no handshake skips it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			want, err := m.admitAddr(server, admit)
			if err != nil {
				return err
			}
			if err := verifyCert(cs, want); err != nil {
				return fmt.Errorf("mesh: quic server %s: %w", server, err)
			}
			return nil
		},
	}
}

// admitAddr returns the current peer that owns remote, if Admit accepts it.
func (m *Mesh) admitAddr(remote netip.Addr, admit func(keys.NodePublic) error) (keys.NodePublic, error) {
	p, ok := m.PeerByAddr(remote)
	if !ok || m.AddrOf(p.PublicKey) != remote {
		return keys.NodePublic{}, fmt.Errorf("mesh: quic %s: %w", remote, ErrNoPeer)
	}
	if admit == nil {
		return keys.NodePublic{}, fmt.Errorf("mesh: quic %s: %w: no admission policy", p.PublicKey.ShortString(), ErrNotAdmitted)
	}
	if err := admit(p.PublicKey); err != nil {
		return keys.NodePublic{}, fmt.Errorf("mesh: quic %s: %w: %w", p.PublicKey.ShortString(), ErrNotAdmitted, err)
	}
	return p.PublicKey, nil
}

// verifyCert checks that the handshake negotiated our protocol and that the
// peer's certificate names exactly want.
func verifyCert(cs tls.ConnectionState, want keys.NodePublic) error {
	if cs.NegotiatedProtocol != ALPN {
		return fmt.Errorf("protocol %q, want %q", cs.NegotiatedProtocol, ALPN)
	}
	got, err := nodeKeyFromCert(cs.PeerCertificates)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("certificate names %s but the WireGuard peer at this address is %s", got.ShortString(), want.ShortString())
	}
	return nil
}

const certURIScheme = "custos"

// nodeKeyFromCert returns the node key a peer's certificate claims. It
// accepts only what newQUICCert makes: one self-signed Ed25519 certificate
// whose only name is one canonical custos:nodekey:<hex> URI.
func nodeKeyFromCert(chain []*x509.Certificate) (keys.NodePublic, error) {
	if len(chain) != 1 {
		return keys.NodePublic{}, fmt.Errorf("certificate: %d certificates, want 1", len(chain))
	}
	c := chain[0]
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok || c.SignatureAlgorithm != x509.PureEd25519 {
		return keys.NodePublic{}, errors.New("certificate: not an Ed25519 certificate")
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		return keys.NodePublic{}, errors.New("certificate: not self-signed")
	}
	if len(c.URIs) != 1 || len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
		return keys.NodePublic{}, errors.New("certificate: want exactly one name, a custos:nodekey URI")
	}
	s, ok := strings.CutPrefix(c.URIs[0].String(), certURIScheme+":")
	if !ok {
		return keys.NodePublic{}, errors.New("certificate: name is not a custos:nodekey URI")
	}
	k, err := keys.ParseNodePublic(s)
	if err != nil || k.String() != s { // canonical form only
		return keys.NodePublic{}, errors.New("certificate: malformed node key")
	}
	return k, nil
}

// newQUICCert makes a self-signed Ed25519 certificate naming node.
func newQUICCert(node keys.NodePublic) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Hour),
		// RFC 5280 4.1.2.5: no well-defined expiration (see the file comment).
		NotAfter:    time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		URIs:        []*url.URL{{Scheme: certURIScheme, Opaque: node.String()}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}
