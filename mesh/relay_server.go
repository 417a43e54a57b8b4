package mesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/envknob"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/custos-cctv/custos/keys"
)

// RelayServer is the relay a datacenter runs for nodes that cannot reach
// each other directly: tailscale's DERP server, over HTTP on a TCP listener
// the caller gives (the plan: the WireGuard port, on TCP).
//
// What it carries: DERP frames between admitted nodes, which in Custos are
// WireGuard packets, already encrypted and authenticated end to end. It
// authorizes nothing else, and a client it admits learns nothing but that
// it may send packets to other admitted keys.
//
// Choices:
//   - Plain HTTP, no TLS: WireGuard already encrypts and authenticates
//     every packet, and DERP's own handshake (a NaCl box sealed with the
//     client's private key) proves the client's key. An on-path attacker
//     could pose as the relay and drop packets, which it can do anyway.
//   - Admission: derpserver asks an admission controller URL after that
//     handshake, so the key it asks about is proven. The controller is
//     served here on a loopback listener of its own (never the public
//     port, which would tell anyone who is a member) and answers with
//     Admit. A controller that cannot be reached denies.
//   - Revocation: derpserver can close a key's connections only when a
//     trusted "mesh" client asks (ClosePeer). The server keeps one such
//     client of its own, connected in memory (net.Pipe) with a random mesh
//     key that never leaves the process; it watches who is connected and
//     closes every key Admit no longer accepts, at once on Recheck, on
//     every new connection, and at least every relayRecheckInterval.
type RelayServer struct {
	admit func(keys.NodePublic) bool
	logf  func(string, ...any)

	derp    *derpserver.Server
	meshKey key.DERPMesh
	web     *http.Server // DERP on the caller's listener
	ctrl    *http.Server // the admission controller on loopback
	recheck chan struct{}
	done    chan struct{}
	loops   sync.WaitGroup // serve loops, the control and check loops
	accepts sync.WaitGroup // DERP connections being served

	mu       sync.Mutex // guards the fields below
	closed   bool
	conns    map[net.Conn]struct{}       // hijacked DERP connections and the control pipe
	control  *derp.Client                // nil while (re)connecting
	ctlKey   key.NodePublic              // the control client's own key
	clients  map[key.NodePublic]struct{} // connected keys, as the control client sees them
	revoking map[key.NodePublic]struct{} // closed by us, not yet gone
}

// RelayServerConfig configures a RelayServer.
type RelayServerConfig struct {
	// Listener is where DERP is served (required); Close closes it.
	Listener net.Listener
	// Admit reports whether a node key may use the relay (required). It is
	// called concurrently, on every connection and every recheck.
	Admit func(keys.NodePublic) bool
	// Logf receives log lines; nil discards them.
	Logf func(format string, args ...any)
}

// relayRecheckInterval bounds how long a key whose admission was withdrawn
// without a Recheck keeps its connection.
const relayRecheckInterval = time.Second

// relayClientQueue is how many packets the relay buffers for each client.
// DERP's server queues 32 and drops beyond, sized for Tailscale's relays
// with thousands of clients on a mostly idle link; a federation's relay
// has tens to hundreds of clients and carries TCP streams (live view,
// replication) that a burst of drops at 32 halves (measured: relayed mesh
// TCP 0.6x direct at 32, 1.0x at 128). At 128 packets of at most ~1.5 KB,
// a client whose reader falls behind holds about 200 KB. The server reads
// the depth only from its environment knob, so it is set there, unless
// the operator set it.
const relayClientQueue = 128

const derpQueueKnob = "TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH"

// NewRelayServer starts serving DERP on cfg.Listener.
func NewRelayServer(cfg RelayServerConfig) (*RelayServer, error) {
	if cfg.Listener == nil || cfg.Admit == nil {
		return nil, errors.New("mesh: relay server needs a listener and an admission func")
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var raw [32]byte
	rand.Read(raw[:])
	meshKey, err := key.ParseDERPMesh(hex.EncodeToString(raw[:]))
	clear(raw[:])
	if err != nil {
		return nil, fmt.Errorf("mesh: relay server: %w", err)
	}
	if _, set := os.LookupEnv(derpQueueKnob); !set {
		envknob.Setenv(derpQueueKnob, strconv.Itoa(relayClientQueue))
	}
	ctrlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mesh: relay server: admission listener on loopback: %w", err)
	}
	s := &RelayServer{
		admit:    cfg.Admit,
		logf:     logf,
		derp:     derpserver.New(key.NewNode(), func(f string, a ...any) { logf("relay: "+f, a...) }),
		meshKey:  meshKey,
		recheck:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
		clients:  map[key.NodePublic]struct{}{},
		revoking: map[key.NodePublic]struct{}{},
	}
	if err := s.derp.SetMeshKey(meshKey.String()); err != nil {
		ctrlLn.Close()
		return nil, fmt.Errorf("mesh: relay server: %w", err)
	}
	s.derp.SetVerifyClientURL("http://" + ctrlLn.Addr().String() + "/admit")
	errLog := log.New(logWriter(logf), "relay: http: ", 0)
	mux := http.NewServeMux()
	mux.Handle("/derp", s.derpHandler())
	s.web = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10, ErrorLog: errLog}
	s.ctrl = &http.Server{Handler: http.HandlerFunc(s.serveAdmit), ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
	s.loops.Add(4)
	go func() { defer s.loops.Done(); s.web.Serve(cfg.Listener) }()
	go func() { defer s.loops.Done(); s.ctrl.Serve(ctrlLn) }()
	go s.controlLoop()
	go s.checkLoop()
	return s, nil
}

// Recheck closes, at once, the connections of keys Admit no longer accepts.
func (s *RelayServer) Recheck() {
	select {
	case s.recheck <- struct{}{}:
	default:
	}
}

// Clients returns the keys connected now.
func (s *RelayServer) Clients() []keys.NodePublic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]keys.NodePublic, 0, len(s.clients))
	for k := range s.clients {
		out = append(out, fromDerpKey(k))
	}
	slices.SortFunc(out, keys.NodePublic.Compare)
	return out
}

// Close stops serving and closes every connection.
func (s *RelayServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	close(s.done)
	s.web.Close()
	s.derp.Close() // the connections it serves, the control pipe's too
	for _, c := range conns {
		c.Close() // hijacked but not yet handed to derpserver
	}
	s.accepts.Wait()
	s.ctrl.Close()
	s.loops.Wait()
	return nil
}

// track registers a connection for Close, or reports that the server is
// closed; each tracked connection is one accepts count.
func (s *RelayServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.accepts.Add(1)
	return true
}

func (s *RelayServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.accepts.Done()
}

// derpHandler is derpserver's handler with the hijacked connection tracked,
// so that Close can end a connection derpserver has not registered yet.
func (s *RelayServer) derpHandler() http.Handler {
	h := derpserver.Handler(s.derp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := &hijackTracker{ResponseWriter: w, s: s}
		h.ServeHTTP(hw, r)
		if hw.conn != nil {
			s.untrack(hw.conn)
		}
	})
}

type hijackTracker struct {
	http.ResponseWriter
	s    *RelayServer
	conn net.Conn
}

func (w *hijackTracker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("mesh: relay: connection cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if !w.s.track(c) {
		c.Close() // derpserver then fails on its first write, quietly
		return c, brw, nil
	}
	w.conn = c
	return c, brw, nil
}

// serveAdmit answers derpserver's admission question.
func (s *RelayServer) serveAdmit(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	pub, err := parseAdmitRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	allow := s.admit(pub) // derpserver logs a refusal
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
}

// parseAdmitRequest decodes derpserver's admission request.
func parseAdmitRequest(body []byte) (keys.NodePublic, error) {
	var req tailcfg.DERPAdmitClientRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return keys.NodePublic{}, fmt.Errorf("mesh: relay admission request: %w", err)
	}
	if req.NodePublic.IsZero() {
		return keys.NodePublic{}, errors.New("mesh: relay admission request without a key")
	}
	return fromDerpKey(req.NodePublic), nil
}

// controlLoop keeps the control client connected; while it reconnects, new
// connections are still admission-checked.
func (s *RelayServer) controlLoop() {
	defer s.loops.Done()
	for {
		err := s.runControl()
		select {
		case <-s.done:
			return
		default:
		}
		s.logf("relay: control connection ended (%v); reconnecting", err)
		select {
		case <-s.done:
			return
		case <-time.After(time.Second):
		}
	}
}

// runControl connects the control client through an in-memory pipe and
// follows connections until the pipe fails.
func (s *RelayServer) runControl() error {
	cc, sc := net.Pipe()
	if !s.track(sc) {
		cc.Close()
		sc.Close()
		return errors.New("closed")
	}
	go func() {
		defer s.untrack(sc)
		s.derp.Accept(context.Background(), sc, bufio.NewReadWriter(bufio.NewReader(sc), bufio.NewWriter(sc)), "relay-control")
	}()
	defer cc.Close()
	priv := key.NewNode()
	dc, err := derp.NewClient(priv, cc, bufio.NewReadWriter(bufio.NewReader(cc), bufio.NewWriter(cc)),
		func(string, ...any) {}, derp.MeshKey(s.meshKey))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.control, s.ctlKey = dc, priv.Public()
	clear(s.clients)
	clear(s.revoking)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.control = nil
		clear(s.clients)
		s.mu.Unlock()
	}()
	// The server writes its info before reading our next frame, and a pipe
	// has no buffer: read while the subscription is written.
	subscribed := make(chan error, 1)
	go func() { subscribed <- dc.WatchConnectionChanges() }()
	defer func() { cc.Close(); <-subscribed }()
	for {
		m, err := dc.Recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case derp.PeerPresentMessage:
			s.mu.Lock()
			if m.Key != s.ctlKey {
				s.clients[m.Key] = struct{}{}
			}
			s.mu.Unlock()
			s.Recheck() // closes it if it was revoked while being admitted
		case derp.PeerGoneMessage:
			s.mu.Lock()
			delete(s.clients, m.Peer)
			delete(s.revoking, m.Peer)
			s.mu.Unlock()
		}
	}
}

func (s *RelayServer) checkLoop() {
	defer s.loops.Done()
	t := time.NewTicker(relayRecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.recheck:
		}
		s.check()
	}
}

// check closes the connections of every connected key Admit refuses.
func (s *RelayServer) check() {
	s.mu.Lock()
	dc := s.control
	connected := make([]key.NodePublic, 0, len(s.clients))
	for k := range s.clients {
		connected = append(connected, k)
	}
	s.mu.Unlock()
	if dc == nil {
		return
	}
	for _, k := range connected {
		if s.admit(fromDerpKey(k)) {
			continue
		}
		s.mu.Lock()
		_, already := s.revoking[k]
		s.revoking[k] = struct{}{}
		s.mu.Unlock()
		if !already {
			s.logf("relay: closing %s: no longer admitted", fromDerpKey(k).ShortString())
		}
		if err := dc.ClosePeer(k); err != nil {
			s.logf("relay: closing %s: %v", fromDerpKey(k).ShortString(), err)
		}
	}
}

// logWriter adapts a Logf to an io.Writer for http.Server's error log.
type logWriter func(string, ...any)

func (f logWriter) Write(p []byte) (int, error) {
	f("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
