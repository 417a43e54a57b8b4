package join

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Joining. A new node cannot reach anyone inside the mesh, since nobody has
// its key yet, so it hands its redeem to a datacenter over the underlay: TCP
// on the datacenter's listen address (the port number WireGuard uses for
// UDP). The redeem carries no secret, only a proof that binds the joining
// node's key, so the channel needs no encryption: someone who copies it can
// only admit the same key. The datacenter accepts nothing but redeems, and
// its leader dry-runs each one (vet) before it enters the log.

const (
	maxRequest = policy.MaxEnvelope
	// Timeout is how long a joiner waits for its answer.
	Timeout = 15 * time.Second
	// readTimeout: a joiner sends its redeem (at most maxRequest
	// bytes) as soon as it connects; a connection that has not sent all of
	// it by then is cut, so idle connections cannot hold the service.
	readTimeout = 5 * time.Second
	// MaxConns connections are served at once, at most
	// MaxPerSource of them from one source (an IPv4 address or an
	// IPv6 /64). When all are taken, a new connection displaces the
	// oldest one still sending its request: a real joiner sends at once,
	// so it is displaced only if MaxConns others arrive meanwhile.
	MaxConns     = 32
	MaxPerSource = 2
	// maxSubmits redeems are being committed at once; more wait.
	maxSubmits = 4
	// Refusals are audited once per source and reason per
	// auditEvery, and at most auditBurst at once and
	// auditPerSec after that over all sources.
	auditEvery  = 10 * time.Minute
	auditBurst  = 20
	auditPerSec = 0.2
	auditKeys   = 4096
	// answerMargin: the datacenter gives up committing a redeem this
	// long before the joiner gives up waiting, so the joiner hears how it
	// ended (if it stopped listening first and asked the next datacenter,
	// a redeem that did commit would look like a spent invite).
	answerMargin = 3 * time.Second
)

// ServerConfig is what the join service needs of its datacenter.
type ServerConfig struct {
	Listen netip.AddrPort // TCP, the address and port of WireGuard's UDP
	// Listener, if set, is used instead of listening on Listen (a
	// datacenter shares the port with its relay); Close closes it.
	Listener net.Listener
	Submit   Submitter // commits a redeem
	Policy   Policy    // dry-runs a redeem first (preVet)
	Audit    Auditor
}

// Server is the join service: TCP from anyone on the underlay, so
// everything about it is bounded (DESIGN §4 invariant 14): connections in
// all and per source, the time to send a request, its size, redeems being
// committed, and the audit entries refusals write.
type Server struct {
	cfg     ServerConfig
	ln      net.Listener
	wg      sync.WaitGroup
	submits chan struct{}
	gate    *auditGate

	mu          sync.Mutex
	readTimeout time.Duration // readTimeout; tests shorten it
	conns       map[net.Conn]*conn
	perSource   map[netip.Prefix]int
}

type conn struct {
	src         netip.Prefix
	start       time.Time
	readTimeout time.Duration
	reading     bool // still receiving its request: may be displaced
}

// StartServer starts the join service on cfg.Listen.
func StartServer(cfg ServerConfig) (*Server, error) {
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen.String()); err != nil {
			return nil, fmt.Errorf("node: join service on TCP %s: %w", cfg.Listen, err)
		}
	}
	js := &Server{cfg: cfg, ln: ln, readTimeout: readTimeout,
		submits: make(chan struct{}, maxSubmits),
		gate:    newAuditGate(auditEvery, auditPerSec, auditBurst, auditKeys),
		conns:   map[net.Conn]*conn{}, perSource: map[netip.Prefix]int{}}
	js.wg.Add(1)
	go js.accept()
	return js, nil
}

// Addr is the address the service listens on.
func (js *Server) Addr() net.Addr { return js.ln.Addr() }

// SetReadTimeout changes the time a connection has to send its request,
// for connections from now on (tests shorten it).
func (js *Server) SetReadTimeout(d time.Duration) {
	js.mu.Lock()
	js.readTimeout = d
	js.mu.Unlock()
}

// Conns is how many connections hold a slot.
func (js *Server) Conns() int {
	js.mu.Lock()
	defer js.mu.Unlock()
	return len(js.conns)
}

func (js *Server) accept() {
	defer js.wg.Done()
	for {
		c, err := js.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: keep serving.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		src := Source(c.RemoteAddr())
		jc, why := js.admit(c, src)
		if why != "" {
			c.Close() // the joiner tries again, or the next datacenter
			js.refuse(src, why, "", "")
			continue
		}
		js.wg.Add(1)
		go func() {
			defer js.wg.Done()
			defer js.release(c)
			js.serve(c, jc)
		}()
	}
}

// Source is whom per-source limits count a connection against: its
// IPv4 address, or its IPv6 /64 (one host's usual share). The datacenter's
// shared TCP port counts by it too.
func Source(a net.Addr) netip.Prefix {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// admit takes a slot for c, or says why not.
func (js *Server) admit(c net.Conn, src netip.Prefix) (*conn, string) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.perSource[src] >= MaxPerSource {
		return nil, fmt.Sprintf("more than %d connections at once from this source", MaxPerSource)
	}
	if len(js.conns) >= MaxConns {
		var oldest net.Conn
		for oc, jc := range js.conns {
			if jc.reading && (oldest == nil || jc.start.Before(js.conns[oldest].start)) {
				oldest = oc
			}
		}
		if oldest == nil {
			return nil, "join service busy"
		}
		js.dropLocked(oldest)
		oldest.Close() // its reader fails at once
	}
	jc := &conn{src: src, start: time.Now(), readTimeout: js.readTimeout, reading: true}
	js.conns[c] = jc
	js.perSource[src]++
	return jc, ""
}

func (js *Server) dropLocked(c net.Conn) {
	jc := js.conns[c]
	if jc == nil {
		return
	}
	delete(js.conns, c)
	if js.perSource[jc.src]--; js.perSource[jc.src] <= 0 {
		delete(js.perSource, jc.src)
	}
}

func (js *Server) release(c net.Conn) {
	js.mu.Lock()
	js.dropLocked(c)
	js.mu.Unlock()
}

func (js *Server) doneReading(c net.Conn) {
	js.mu.Lock()
	if jc := js.conns[c]; jc != nil {
		jc.reading = false
	}
	js.mu.Unlock()
}

// Close stops the service and waits for its connections to end.
func (js *Server) Close() {
	js.ln.Close()
	js.mu.Lock()
	for c := range js.conns {
		c.SetReadDeadline(time.Now()) // readers stop; redeems in commit end by their deadline
	}
	js.mu.Unlock()
	js.wg.Wait()
}

// refuse audits a refused join attempt, if the gate lets it: once per
// source and reason per auditEvery, within the overall rate. why is
// one of a few fixed texts, so that junk cannot vary the key; detail (what
// exactly was wrong, maybe chosen by the sender) goes only into the entry.
func (js *Server) refuse(src netip.Prefix, why, object, detail string) {
	ok, note := js.gate.pass(src.String()+"\x00"+why, time.Now())
	if !ok {
		return
	}
	reason := why
	if detail != "" {
		reason += ": " + clipText(detail, 300)
	}
	js.cfg.Audit.Event(audit.Event{Actor: src.String(), Action: "join", Object: clipText(object, 100), Decision: audit.Deny, Reason: reason + note})
}

// clipText cuts s to at most n bytes of valid UTF-8.
func clipText(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (js *Server) serve(c net.Conn, jc *conn) {
	defer c.Close()
	src, start := jc.src, jc.start
	c.SetDeadline(start.Add(jc.readTimeout))
	b, err := io.ReadAll(io.LimitReader(c, maxRequest+1))
	js.doneReading(c)
	c.SetDeadline(start.Add(Timeout))
	res := policy.ApplyResult{}
	defer func() { json.NewEncoder(c).Encode(res) }()
	if err != nil || len(b) > maxRequest {
		res.Reason = fmt.Sprintf("join request unreadable, over %d bytes, or not sent within %v", maxRequest, jc.readTimeout)
		js.refuse(src, "join request unreadable, too large or too slow", "", "")
		return
	}
	env, err := policy.DecodeEnvelope(b)
	var cmd *policy.Command
	if err == nil {
		cmd, err = policy.DecodeCommand(env.Body)
	}
	if err == nil && (cmd.Kind != policy.KindRedeemInvite || cmd.Redeem == nil) {
		err = errors.New("the join service takes only invite redeems")
	}
	if err != nil {
		res.Reason = err.Error()
		js.refuse(src, "not an invite redeem", "", err.Error())
		return
	}
	object := "invite " + cmd.Redeem.Invite
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(Timeout-answerMargin))
	defer cancel()
	// The leader vets every command, but a refusal there is audited as a
	// policy change on every try; the dry run here refuses junk first,
	// through the gate.
	if err := preVet(ctx, js.cfg.Policy, env, cmd); err != nil {
		res.Reason = err.Error()
		js.refuse(src, "redeem refused", object, err.Error())
		return
	}
	select {
	case js.submits <- struct{}{}:
		defer func() { <-js.submits }()
	case <-ctx.Done():
		res.Reason = "join service busy; try again"
		return
	}
	res, err = js.cfg.Submit.Submit(ctx, env)
	if err != nil {
		res.Reason = err.Error()
	}
	if !res.Applied {
		js.refuse(src, "redeem not applied", object, res.Reason)
		return
	}
	js.cfg.Audit.Event(audit.Event{Actor: cmd.Redeem.PublicKey, Action: "join", Object: object, Decision: audit.Allow, Reason: res.Reason})
}

// preVet dry-runs a redeem on this node's replica, and once more on a
// replica made current if the first try fails (it may lag behind the
// invite).
func preVet(ctx context.Context, p Policy, env policy.Envelope, cmd *policy.Command) error {
	if d := time.Since(cmd.Time); d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Errorf("command time %s is more than %v from this datacenter's clock", cmd.Time.UTC().Format(time.RFC3339), MaxClockSkew)
	}
	try := func(st *policy.State) error {
		dry := st.Clone()
		_, err := dry.Apply(env)
		return err
	}
	err := try(p.State())
	if err == nil {
		return nil
	}
	st, serr := p.Sync(ctx)
	if serr != nil {
		return err
	}
	return try(st)
}
