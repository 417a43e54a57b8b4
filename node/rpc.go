package node

// Node-to-node requests over the mesh's authenticated QUIC (mesh.ListenQUIC,
// mesh.DialQUIC), for key release, export, replication and live view. The
// connection already names the peer (QUICConn.PeerKey); every handler gets
// that key and decides what it may have. An op nobody registered is refused.
//
// One request per stream. All integers are big-endian; lengths are fixed
// 4-byte (2-byte for the status message) rather than uvarints, so that each
// value has exactly one encoding and a bound can be checked before anything
// is allocated.
//
//	request  (client → server, then the client closes its side)
//	  version  uint8     1; anything else is answered with rpcBadVersion
//	  oplen    uint8     1..rpcMaxOp
//	  op       [oplen]   lowercase letters, digits, '-' and '.'
//	  bodylen  uint32    0..rpcMaxBody (64 KiB)
//	  body     [bodylen] JSON (empty: no arguments)
//
//	status   (server → client, first)
//	  version  uint8     1
//	  code     uint8     rpcOK or an error code
//	  msglen   uint16    0..rpcMaxMessage (1 KiB)
//	  message  [msglen]  UTF-8, for humans; empty when OK
//
//	data     (server → client, after an OK status only, any number)
//	  len      uint32    1..rpcMaxData (16 MiB)
//	  payload  [len]
//	end      uint32 0, then the server closes the stream
//
// An error status is the whole response. A response cut short (a handler
// that fails after sending data, a deadline, shutdown) is a stream reset,
// never a clean end, so a reader can always tell a complete answer.
//
// Deadlines: the request must arrive within requestTimeout; every write of
// the response must make progress within writeTimeout (bulk responses may
// run for hours, so there is no total limit: a handler bounds its own work
// with ctx). At most maxStreams handlers run per connection, and
// maxPeerStreams over all of one peer's connections; further streams wait
// in QUIC's own stream limit (mesh.QUICConfig.MaxStreams). A peer may hold
// maxPeerConns connections at once; one more is closed with
// rpcConnTooMany. A peer is authenticated, not trusted: these bounds keep
// one compromised or broken node from growing another's memory without
// bound (DESIGN §4 invariant 14).

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
)

const (
	rpcVersion    = 1
	rpcMaxOp      = 32
	rpcMaxBody    = 64 << 10
	rpcMaxMessage = 1 << 10
	rpcMaxData    = 16 << 20

	rpcRequestTimeout = 10 * time.Second
	rpcWriteTimeout   = 30 * time.Second
	rpcMaxStreams     = 16
	// A datacenter opens the most connections to one node: its
	// replication lanes (4 by default), exports and live views.
	rpcMaxPeerConns   = 32
	rpcMaxPeerStreams = 64
	// rpcMaxFramesBytes bounds what readFrames collects in memory from one
	// response, rpcMaxFrames how many frames.
	rpcMaxFramesBytes = 64 << 20
	rpcMaxFrames      = 1 << 16
	// rpcWriteChunk is how much of a data frame is written per write
	// deadline, so that the deadline measures progress, not frame size.
	rpcWriteChunk = 64 << 10
)

// rpcCode is a status code.
type rpcCode uint8

const (
	rpcOK          rpcCode = 0
	rpcBadRequest  rpcCode = 1 // malformed, oversize or late request
	rpcBadVersion  rpcCode = 2 // the message says which version we speak
	rpcUnknownOp   rpcCode = 3
	rpcDenied      rpcCode = 4 // the peer may not have this
	rpcFailed      rpcCode = 5 // the handler failed; the message says why
	rpcUnavailable rpcCode = 6 // the server is shutting down
)

func (c rpcCode) String() string {
	switch c {
	case rpcOK:
		return "ok"
	case rpcBadRequest:
		return "bad request"
	case rpcBadVersion:
		return "unsupported version"
	case rpcUnknownOp:
		return "unknown op"
	case rpcDenied:
		return "denied"
	case rpcFailed:
		return "failed"
	case rpcUnavailable:
		return "unavailable"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Stream reset codes: why a response ended without its end frame.
const (
	rpcResetFailed   quic.StreamErrorCode = 1 // the handler failed mid-response
	rpcResetDeadline quic.StreamErrorCode = 2 // a write made no progress in time
	rpcResetShutdown quic.StreamErrorCode = 3 // the server is closing
	rpcResetCanceled quic.StreamErrorCode = 4 // the client gave up

	// rpcConnShutdown closes the connections of a closing server.
	rpcConnShutdown quic.ApplicationErrorCode = 0x100
	// rpcConnTooMany closes a connection over the peer's limit.
	rpcConnTooMany quic.ApplicationErrorCode = 0x101
)

// rpcError is a non-OK status. Handlers return one to choose the code;
// any other error becomes rpcFailed with the error's text, which therefore
// must say what a remote node may know and nothing secret.
type rpcError struct {
	Code    rpcCode
	Message string
}

// Error is the message, which says what happened in a sentence of its own.
func (e *rpcError) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

// rpcRequest is a decoded request frame.
type rpcRequest struct {
	Op   string
	Body []byte
}

var (
	errRPCVersion  = errors.New("unsupported rpc version")
	errRPCTooLarge = errors.New("frame too large")
)

// validOp reports whether op may be sent: 1..rpcMaxOp of [a-z0-9.-].
func validOp(op string) bool {
	if len(op) == 0 || len(op) > rpcMaxOp {
		return false
	}
	for i := range len(op) {
		c := op[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// encodeRequestFrame checks req as the server will and encodes it.
func encodeRequestFrame(req rpcRequest) ([]byte, error) {
	if !validOp(req.Op) {
		return nil, fmt.Errorf("op %q is not 1..%d of [a-z0-9.-]", req.Op, rpcMaxOp)
	}
	if len(req.Body) > rpcMaxBody {
		return nil, fmt.Errorf("body of %d bytes: %w (max %d)", len(req.Body), errRPCTooLarge, rpcMaxBody)
	}
	if len(req.Body) > 0 && !json.Valid(req.Body) {
		return nil, errors.New("body is not JSON")
	}
	b := make([]byte, 0, 2+len(req.Op)+4+len(req.Body))
	b = append(b, rpcVersion, byte(len(req.Op)))
	b = append(b, req.Op...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(req.Body)))
	return append(b, req.Body...), nil
}

// readRequestFrame decodes one request. An unknown version is reported
// (errRPCVersion) after reading only the version byte.
func readRequestFrame(r io.Reader) (rpcRequest, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return rpcRequest{}, err
	}
	if hdr[0] != rpcVersion {
		return rpcRequest{}, fmt.Errorf("%w %d", errRPCVersion, hdr[0])
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return rpcRequest{}, noEOF(err)
	}
	if n := int(hdr[1]); n == 0 || n > rpcMaxOp {
		return rpcRequest{}, fmt.Errorf("op length %d out of 1..%d", n, rpcMaxOp)
	}
	op := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, op); err != nil {
		return rpcRequest{}, noEOF(err)
	}
	if !validOp(string(op)) {
		return rpcRequest{}, errors.New("op is not [a-z0-9.-]")
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return rpcRequest{}, noEOF(err)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > rpcMaxBody {
		return rpcRequest{}, fmt.Errorf("body of %d bytes: %w (max %d)", n, errRPCTooLarge, rpcMaxBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return rpcRequest{}, noEOF(err)
	}
	if n > 0 && !json.Valid(body) {
		return rpcRequest{}, errors.New("body is not JSON")
	}
	return rpcRequest{Op: string(op), Body: body}, nil
}

func writeStatusFrame(w io.Writer, code rpcCode, msg string) error {
	msg = clipMessage(msg)
	b := make([]byte, 0, 4+len(msg))
	b = append(b, rpcVersion, byte(code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// readStatusFrame decodes a status; a non-OK one is returned as *rpcError.
func readStatusFrame(r io.Reader) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return noEOF(err)
	}
	if hdr[0] != rpcVersion {
		return fmt.Errorf("status: %w %d", errRPCVersion, hdr[0])
	}
	n := binary.BigEndian.Uint16(hdr[2:])
	if n > rpcMaxMessage {
		return fmt.Errorf("status message of %d bytes: %w (max %d)", n, errRPCTooLarge, rpcMaxMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return noEOF(err)
	}
	if !utf8.Valid(msg) {
		return errors.New("status message is not UTF-8")
	}
	code := rpcCode(hdr[1])
	if code == rpcOK {
		if n != 0 {
			return errors.New("OK status with a message")
		}
		return nil
	}
	return &rpcError{Code: code, Message: string(msg)}
}

// readDataHeader returns the length of the next data frame; 0 is the end.
func readDataHeader(r io.Reader) (int, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return 0, noEOF(err)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > rpcMaxData {
		return 0, fmt.Errorf("data frame of %d bytes: %w (max %d)", n, errRPCTooLarge, rpcMaxData)
	}
	return int(n), nil
}

// readDataFrame reads one whole data frame; (nil, io.EOF) is the end frame.
func readDataFrame(r io.Reader) ([]byte, error) {
	n, err := readDataHeader(r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, noEOF(err)
	}
	return p, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clipMessage makes msg valid UTF-8 of at most rpcMaxMessage bytes.
func clipMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) <= rpcMaxMessage {
		return msg
	}
	cut := rpcMaxMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

// rpcHandler serves one op. body is the request's JSON (maybe empty). It
// returns nil after writing its data to w (or none), or an error: an
// *rpcError picks the status, anything else is rpcFailed. ctx ends when the
// client gives up, the connection ends or the server closes; handlers must
// return promptly then, since close waits for them.
type rpcHandler func(ctx context.Context, peer keys.NodePublic, body []byte, w *rpcWriter) error

// rpcServer serves requests on authenticated mesh QUIC connections. Its
// limits are fixed before the first serve call; zero means the default.
type rpcServer struct {
	requestTimeout time.Duration // default rpcRequestTimeout
	writeTimeout   time.Duration // default rpcWriteTimeout
	maxStreams     int           // handlers at once per connection; default rpcMaxStreams
	maxPeerConns   int           // connections at once per peer; default rpcMaxPeerConns
	maxPeerStreams int           // handlers at once per peer; default rpcMaxPeerStreams
	logf           func(string, ...any)

	handlers map[string]rpcHandler // set before serving, read-only after

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection loops and handlers

	mu     sync.Mutex // guards the fields below
	closed bool
	conns  map[*mesh.QUICConn]struct{}
	peers  map[keys.NodePublic]*rpcPeer
}

// rpcPeer is what one peer holds of the server.
type rpcPeer struct {
	conns int
	slots chan struct{} // one per running handler, over all its connections
}

func newRPCServer(logf func(string, ...any)) *rpcServer {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &rpcServer{logf: logf, handlers: map[string]rpcHandler{}, ctx: ctx, cancel: cancel,
		conns: map[*mesh.QUICConn]struct{}{}, peers: map[keys.NodePublic]*rpcPeer{}}
}

// handle registers h for op. It is wiring, done before serving: a bad or
// duplicate op is a programming error and panics.
func (s *rpcServer) handle(op string, h rpcHandler) {
	if !validOp(op) || h == nil {
		panic(fmt.Sprintf("rpc: bad registration of op %q", op))
	}
	if _, dup := s.handlers[op]; dup {
		panic(fmt.Sprintf("rpc: op %q registered twice", op))
	}
	s.handlers[op] = h
}

// serve accepts connections from ln until close (or until ln fails) and
// serves each. It does not close ln.
func (s *rpcServer) serve(ln *mesh.QUICListener) error {
	for {
		c, err := ln.Accept(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("rpc: serve: %w", err)
		}
		s.serveConn(c)
	}
}

// serveConn serves the streams c's peer opens, in the background, until c
// ends or the server closes. It takes c over: close closes it.
func (s *rpcServer) serveConn(c *mesh.QUICConn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.CloseWithError(rpcConnShutdown, "server shutting down")
		return
	}
	key := c.PeerKey()
	p := s.peers[key]
	if p == nil {
		p = &rpcPeer{slots: make(chan struct{}, cmp.Or(s.maxPeerStreams, rpcMaxPeerStreams))}
		s.peers[key] = p
	}
	if limit := cmp.Or(s.maxPeerConns, rpcMaxPeerConns); p.conns >= limit {
		s.mu.Unlock()
		s.logf("rpc: %s holds %d connections already; refusing one more", key.ShortString(), limit)
		c.CloseWithError(rpcConnTooMany, fmt.Sprintf("more than %d connections from one node at once", limit))
		return
	}
	p.conns++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			if p.conns--; p.conns == 0 {
				delete(s.peers, key)
			}
			s.mu.Unlock()
		}()
		slots := make(chan struct{}, cmp.Or(s.maxStreams, rpcMaxStreams))
		for {
			// Take a slot before accepting: while all are busy, further
			// streams wait in QUIC, costing us nothing. The peer's slot
			// is taken after: an idle connection must not hold one.
			select {
			case slots <- struct{}{}:
			case <-s.ctx.Done():
				return
			case <-c.Context().Done():
				return
			}
			st, err := c.AcceptStream(s.ctx)
			if err != nil {
				return
			}
			select {
			case p.slots <- struct{}{}:
			case <-s.ctx.Done():
				st.CancelRead(rpcResetShutdown)
				st.CancelWrite(rpcResetShutdown)
				return
			case <-c.Context().Done():
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-p.slots; <-slots }()
				s.serveStream(key, st)
			}()
		}
	}()
}

// close stops serving: handlers' contexts are cancelled, close waits for
// them to return, then closes every connection served.
func (s *rpcServer) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*mesh.QUICConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	// Statuses still in flight may be lost with the connection; the
	// close code tells clients what happened.
	for _, c := range conns {
		c.CloseWithError(rpcConnShutdown, "server shutting down")
	}
	return nil
}

func (s *rpcServer) serveStream(peer keys.NodePublic, st *quic.Stream) {
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()

	w := &rpcWriter{st: st, timeout: cmp.Or(s.writeTimeout, rpcWriteTimeout)}
	st.SetReadDeadline(time.Now().Add(cmp.Or(s.requestTimeout, rpcRequestTimeout)))
	req, err := readRequestFrame(st)
	if err == nil {
		// One request per stream: the client's side must end here.
		if n, e := st.Read(make([]byte, 1)); n != 0 || e != io.EOF {
			err = errors.New("data after the request frame")
			if e != nil && e != io.EOF {
				err = e
			}
		}
	}
	st.CancelRead(0) // nothing more will be read
	if err != nil {
		code, msg := rpcBadRequest, "bad request: "+err.Error()
		switch {
		case errors.Is(err, errRPCVersion):
			code, msg = rpcBadVersion, fmt.Sprintf("%v; this node speaks version %d", err, rpcVersion)
		case errors.Is(err, os.ErrDeadlineExceeded):
			msg = "request not received in time"
		}
		s.logf("rpc: from %s: %s", peer.ShortString(), msg)
		w.fail(&rpcError{Code: code, Message: msg})
		return
	}
	h, ok := s.handlers[req.Op]
	if !ok {
		w.fail(&rpcError{Code: rpcUnknownOp, Message: fmt.Sprintf("unknown op %q", req.Op)})
		return
	}
	if err := h(ctx, peer, req.Body, w); err != nil {
		if s.ctx.Err() != nil {
			err = &rpcError{Code: rpcUnavailable, Message: "server shutting down"}
		}
		w.fail(err)
		return
	}
	w.finish()
}

// rpcStream is the send side of a response stream (a *quic.Stream).
type rpcStream interface {
	io.WriteCloser
	SetWriteDeadline(time.Time) error
	CancelWrite(quic.StreamErrorCode)
}

var _ rpcStream = (*quic.Stream)(nil)

// rpcWriter is a handler's side of the response.
type rpcWriter struct {
	st      rpcStream
	timeout time.Duration
	started bool // the OK status is sent
	err     error
}

// Write sends p as data frames of at most rpcMaxData bytes, after the OK
// status if it is not sent yet. An empty p sends nothing (an empty frame
// would end the response). After an error every call fails.
func (w *rpcWriter) Write(p []byte) (int, error) {
	if err := w.start(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), rpcMaxData)
		if err := w.write(binary.BigEndian.AppendUint32(nil, uint32(n))); err != nil {
			return written, err
		}
		if err := w.write(p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// WriteFrame sends p as exactly one data frame, for ops whose frames mean
// something (one segment per frame).
func (w *rpcWriter) WriteFrame(p []byte) error {
	if len(p) > rpcMaxData {
		return fmt.Errorf("rpc: data frame of %d bytes: %w (max %d)", len(p), errRPCTooLarge, rpcMaxData)
	}
	_, err := w.Write(p)
	return err
}

func (w *rpcWriter) start() error {
	if w.err != nil || w.started {
		return w.err
	}
	w.started = true
	return w.write([]byte{rpcVersion, byte(rpcOK), 0, 0})
}

// write writes p in chunks, each under a fresh write deadline.
func (w *rpcWriter) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	for len(p) > 0 {
		n := min(len(p), rpcWriteChunk)
		w.st.SetWriteDeadline(time.Now().Add(w.timeout))
		if _, err := w.st.Write(p[:n]); err != nil {
			w.err = fmt.Errorf("rpc: write response: %w", err)
			return w.err
		}
		p = p[n:]
	}
	return nil
}

// finish ends a successful response: the end frame, then the stream's end.
func (w *rpcWriter) finish() {
	if err := w.start(); err != nil {
		w.reset(err)
		return
	}
	if err := w.write([]byte{0, 0, 0, 0}); err != nil {
		w.reset(err)
		return
	}
	w.st.Close()
}

// fail answers err as an error status, or, once data went out, resets the
// stream so the client cannot take a partial answer for a whole one.
func (w *rpcWriter) fail(err error) {
	if w.started || w.err != nil {
		w.reset(err)
		return
	}
	w.started = true
	var re *rpcError
	if !errors.As(err, &re) || re.Code == rpcOK {
		re = &rpcError{Code: rpcFailed, Message: err.Error()}
	}
	w.st.SetWriteDeadline(time.Now().Add(w.timeout))
	if err := writeStatusFrame(w.st, re.Code, re.Message); err != nil {
		w.reset(err)
		return
	}
	w.st.Close()
}

func (w *rpcWriter) reset(err error) {
	code := rpcResetFailed
	var re *rpcError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = rpcResetDeadline
	case errors.As(err, &re) && re.Code == rpcUnavailable:
		code = rpcResetShutdown
	}
	w.st.CancelWrite(code)
}

// rpcCall sends one request on a new stream of conn and reads the status.
// A non-OK status is returned as *rpcError. On OK, the caller reads the
// response from the returned reader and must Close it. ctx bounds the
// whole exchange, reading included.
func rpcCall(ctx context.Context, conn *mesh.QUICConn, op string, body []byte) (*rpcReader, error) {
	req, err := encodeRequestFrame(rpcRequest{Op: op, Body: body})
	if err != nil {
		return nil, fmt.Errorf("rpc: %s: %w", op, err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("rpc: %s: open stream: %w", op, ctxErr(ctx, explainReset(err)))
	}
	r := &rpcReader{ctx: ctx, op: op, st: st}
	r.stop = context.AfterFunc(ctx, r.abort)
	if _, err := st.Write(req); err != nil {
		r.Close()
		return nil, fmt.Errorf("rpc: %s: send: %w", op, ctxErr(ctx, explainReset(err)))
	}
	st.Close()
	if err := readStatusFrame(st); err != nil {
		r.Close()
		var re *rpcError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("rpc: %s: %w", op, re)
		}
		return nil, fmt.Errorf("rpc: %s: read status: %w", op, ctxErr(ctx, explainReset(err)))
	}
	return r, nil
}

// explainReset says why the server reset a response or closed the
// connection.
func explainReset(err error) error {
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok && ae.Remote {
		switch ae.ErrorCode {
		case rpcConnShutdown:
			return fmt.Errorf("the server is shutting down: %w", err)
		case rpcConnTooMany:
			return fmt.Errorf("the server refused the connection: this node holds too many with it at once: %w", err)
		}
	}
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote {
		return err
	}
	why := "server reset the stream"
	switch se.ErrorCode {
	case rpcResetFailed:
		why = "the server's handler failed mid-response"
	case rpcResetDeadline:
		why = "the server's write deadline passed (reading too slowly?)"
	case rpcResetShutdown:
		why = "the server is shutting down"
	}
	return fmt.Errorf("%s: %w", why, err)
}

// ctxErr prefers the context's error to the stream reset it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// rpcReader reads an OK response's data frames.
type rpcReader struct {
	ctx  context.Context
	op   string
	st   *quic.Stream
	stop func() bool
	left int   // bytes left in the current frame
	err  error // sticky: io.EOF after the end frame, or the failure
}

// Next returns the rest of the current frame, or the next whole frame; it
// returns io.EOF after the end frame. A response that ends any other way is
// an error, never io.EOF.
func (r *rpcReader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.left == 0 {
		n, err := readDataHeader(r.st)
		if err != nil {
			return nil, r.fail(err)
		}
		if n == 0 {
			return nil, r.end()
		}
		r.left = n
	}
	// Grow with what arrives rather than trust the header: a peer that
	// announces a large frame and stalls costs nothing.
	var buf bytes.Buffer
	buf.Grow(min(r.left, rpcWriteChunk))
	if _, err := io.CopyN(&buf, r.st, int64(r.left)); err != nil {
		return nil, r.fail(noEOF(err))
	}
	r.left = 0
	return buf.Bytes(), nil
}

// Read reads the response's data as one byte stream.
func (r *rpcReader) Read(p []byte) (int, error) {
	for r.left == 0 {
		if r.err != nil {
			return 0, r.err
		}
		n, err := readDataHeader(r.st)
		if err != nil {
			return 0, r.fail(err)
		}
		if n == 0 {
			return 0, r.end()
		}
		r.left = n
	}
	n, err := r.st.Read(p[:min(len(p), r.left)])
	r.left -= n
	if err != nil && (r.left > 0 || err != io.EOF) {
		return n, r.fail(noEOF(err))
	}
	return n, nil
}

// end checks that the stream ends right after the end frame.
func (r *rpcReader) end() error {
	if n, err := r.st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("data after the end frame")
		}
		return r.fail(err)
	}
	r.err = io.EOF
	r.stop()
	return io.EOF
}

func (r *rpcReader) fail(err error) error {
	r.err = fmt.Errorf("rpc: %s: response: %w", r.op, ctxErr(r.ctx, explainReset(err)))
	r.abort()
	return r.err
}

func (r *rpcReader) abort() {
	r.st.CancelRead(rpcResetCanceled)
	r.st.CancelWrite(rpcResetCanceled)
}

// Close releases the stream; closing before the end abandons the response.
func (r *rpcReader) Close() error {
	r.stop()
	if r.err != io.EOF {
		r.abort()
	}
	return nil
}
