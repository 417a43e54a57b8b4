package rpc

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
)

// Handler serves one op. body is the request's JSON (maybe empty). It
// returns nil after writing its data to w (or none), or an error: an
// *Error picks the status, anything else is Failed. ctx ends when the
// client gives up, the connection ends or the server closes; handlers must
// return promptly then, since close waits for them.
type Handler func(ctx context.Context, peer keys.NodePublic, body []byte, w *Writer) error

// Server serves requests on authenticated mesh QUIC connections. Its
// limits are fixed before the first serve call; zero means the default.
type Server struct {
	requestTimeout time.Duration // default defaultRequestTimeout
	writeTimeout   time.Duration // default defaultWriteTimeout
	maxStreams     int           // handlers at once per connection; default defaultMaxStreams
	maxPeerConns   int           // connections at once per peer; default defaultMaxPeerConns
	maxPeerStreams int           // handlers at once per peer; default defaultMaxPeerStreams
	logf           func(string, ...any)

	handlers map[string]Handler // set before serving, read-only after

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection loops and handlers

	mu     sync.Mutex // guards the fields below
	closed bool
	conns  map[*mesh.QUICConn]struct{}
	peers  map[keys.NodePublic]*peerSlots
}

// peerSlots is what one peer holds of the server.
type peerSlots struct {
	conns int
	slots chan struct{} // one per running handler, over all its connections
}

func NewServer(logf func(string, ...any)) *Server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{logf: logf, handlers: map[string]Handler{}, ctx: ctx, cancel: cancel,
		conns: map[*mesh.QUICConn]struct{}{}, peers: map[keys.NodePublic]*peerSlots{}}
}

// handle registers h for op. It is wiring, done before serving: a bad or
// duplicate op is a programming error and panics.
func (s *Server) Handle(op string, h Handler) {
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
func (s *Server) Serve(ln *mesh.QUICListener) error {
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
func (s *Server) serveConn(c *mesh.QUICConn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.CloseWithError(connShutdown, "server shutting down")
		return
	}
	key := c.PeerKey()
	p := s.peers[key]
	if p == nil {
		p = &peerSlots{slots: make(chan struct{}, cmp.Or(s.maxPeerStreams, defaultMaxPeerStreams))}
		s.peers[key] = p
	}
	if limit := cmp.Or(s.maxPeerConns, defaultMaxPeerConns); p.conns >= limit {
		s.mu.Unlock()
		s.logf("rpc: %s holds %d connections already; refusing one more", key.ShortString(), limit)
		c.CloseWithError(connTooMany, fmt.Sprintf("more than %d connections from one node at once", limit))
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
		slots := make(chan struct{}, cmp.Or(s.maxStreams, defaultMaxStreams))
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
				st.CancelRead(resetShutdown)
				st.CancelWrite(resetShutdown)
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
func (s *Server) Close() error {
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
		c.CloseWithError(connShutdown, "server shutting down")
	}
	return nil
}

func (s *Server) serveStream(peer keys.NodePublic, st *quic.Stream) {
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()

	w := &Writer{st: st, timeout: cmp.Or(s.writeTimeout, defaultWriteTimeout)}
	st.SetReadDeadline(time.Now().Add(cmp.Or(s.requestTimeout, defaultRequestTimeout)))
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
		code, msg := BadRequest, "bad request: "+err.Error()
		switch {
		case errors.Is(err, errVersion):
			code, msg = BadVersion, fmt.Sprintf("%v; this node speaks version %d", err, protoVersion)
		case errors.Is(err, os.ErrDeadlineExceeded):
			msg = "request not received in time"
		}
		s.logf("rpc: from %s: %s", peer.ShortString(), msg)
		w.fail(&Error{Code: code, Message: msg})
		return
	}
	h, ok := s.handlers[req.Op]
	if !ok {
		w.fail(&Error{Code: UnknownOp, Message: fmt.Sprintf("unknown op %q", req.Op)})
		return
	}
	if err := h(ctx, peer, req.Body, w); err != nil {
		if s.ctx.Err() != nil {
			err = &Error{Code: Unavailable, Message: "server shutting down"}
		}
		w.fail(err)
		return
	}
	w.finish()
}

// stream is the send side of a response stream (a *quic.Stream).
type stream interface {
	io.WriteCloser
	SetWriteDeadline(time.Time) error
	CancelWrite(quic.StreamErrorCode)
}

var _ stream = (*quic.Stream)(nil)

// Writer is a handler's side of the response.
type Writer struct {
	st      stream
	timeout time.Duration
	started bool // the OK status is sent
	err     error
}

// Write sends p as data frames of at most maxData bytes, after the OK
// status if it is not sent yet. An empty p sends nothing (an empty frame
// would end the response). After an error every call fails.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.start(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxData)
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
func (w *Writer) WriteFrame(p []byte) error {
	if len(p) > maxData {
		return fmt.Errorf("rpc: data frame of %d bytes: %w (max %d)", len(p), errTooLarge, maxData)
	}
	_, err := w.Write(p)
	return err
}

func (w *Writer) start() error {
	if w.err != nil || w.started {
		return w.err
	}
	w.started = true
	return w.write([]byte{protoVersion, byte(OK), 0, 0})
}

// write writes p in chunks, each under a fresh write deadline.
func (w *Writer) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	for len(p) > 0 {
		n := min(len(p), writeChunk)
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
func (w *Writer) finish() {
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
func (w *Writer) fail(err error) {
	if w.started || w.err != nil {
		w.reset(err)
		return
	}
	w.started = true
	var re *Error
	if !errors.As(err, &re) || re.Code == OK {
		re = &Error{Code: Failed, Message: err.Error()}
	}
	w.st.SetWriteDeadline(time.Now().Add(w.timeout))
	if err := writeStatusFrame(w.st, re.Code, re.Message); err != nil {
		w.reset(err)
		return
	}
	w.st.Close()
}

func (w *Writer) reset(err error) {
	code := resetFailed
	var re *Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = resetDeadline
	case errors.As(err, &re) && re.Code == Unavailable:
		code = resetShutdown
	}
	w.st.CancelWrite(code)
}
