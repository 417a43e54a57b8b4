package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// rpcEnv is an Server on mesh a and a QUIC connection to it from mesh b.
type rpcEnv struct {
	srv  *Server
	conn *mesh.QUICConn // b's side
	b    *mesh.Mesh
	addr netip.AddrPort // the server's
}

func newRPCEnv(t *testing.T, setup func(*Server)) *rpcEnv {
	t.Helper()
	prefix, _ := keys.MeshPrefix("rpc-test")
	var ms [2]*mesh.Mesh
	for i := range ms {
		m, err := mesh.New(mesh.Config{PrivateKey: keys.NewNodePrivate(), Prefix: prefix, NoGossip: true, Name: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		ms[i] = m
	}
	a, b := ms[0], ms[1]
	loop := func(m *mesh.Mesh) mesh.Peer {
		return mesh.Peer{Name: "p", PublicKey: m.PublicKey(), Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.ListenPort())}
	}
	if err := a.SetPeers([]mesh.Peer{loop(b)}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]mesh.Peer{loop(a)}); err != nil {
		t.Fatal(err)
	}
	admit := mesh.QUICConfig{Admit: func(keys.NodePublic) error { return nil }}
	ln, err := a.ListenQUIC(0, admit)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(t.Logf)
	setup(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := b.DialQUIC(ctx, netip.AddrPortFrom(a.Addr(), ln.Port()), admit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		ln.Close()
	})
	return &rpcEnv{srv: srv, conn: conn, b: b, addr: netip.AddrPortFrom(a.Addr(), ln.Port())}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// call runs op and returns the response's frames.
func (e *rpcEnv) call(ctx context.Context, op string, body []byte) ([][]byte, error) {
	r, err := Call(ctx, e.conn, op, body)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var frames [][]byte
	for {
		p, err := r.Next()
		if err == io.EOF {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, p)
	}
}

func TestRPCRoundTrip(t *testing.T) {
	nodetest.CheckLeaks(t)
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("ping", func(_ context.Context, peer keys.NodePublic, body []byte, w *Writer) error {
			return w.WriteFrame([]byte(peer.String() + " " + string(body)))
		})
		s.Handle("segments", func(_ context.Context, _ keys.NodePublic, body []byte, w *Writer) error {
			var req struct{ N, Size int }
			if err := json.Unmarshal(body, &req); err != nil {
				return err
			}
			for i := range req.N {
				if err := w.WriteFrame(bytes.Repeat([]byte{byte(i)}, req.Size)); err != nil {
					return err
				}
			}
			return nil
		})
		s.Handle("nothing", func(context.Context, keys.NodePublic, []byte, *Writer) error { return nil })
	})
	ctx := testCtx(t, 20*time.Second)

	frames, err := e.call(ctx, "ping", []byte(`{"hello":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.b.PublicKey().String() + ` {"hello":1}`; len(frames) != 1 || string(frames[0]) != want {
		t.Fatalf("ping: got %q, want [%q]: the handler must see the caller's key", frames, want)
	}

	frames, err = e.call(ctx, "segments", []byte(`{"N":5,"Size":300000}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 5 {
		t.Fatalf("segments: %d frames, want 5", len(frames))
	}
	for i, f := range frames {
		if !bytes.Equal(f, bytes.Repeat([]byte{byte(i)}, 300000)) {
			t.Fatalf("segments: frame %d wrong (%d bytes)", i, len(f))
		}
	}

	r, err := Call(ctx, e.conn, "segments", []byte(`{"N":3,"Size":100000}`))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r) // Read: the frames as one byte stream
	r.Close()
	if err != nil || n != 300000 {
		t.Fatalf("segments as a stream: read %d bytes, %v; want 300000", n, err)
	}

	if frames, err := e.call(ctx, "nothing", nil); err != nil || len(frames) != 0 {
		t.Fatalf("nothing: %d frames, %v; want none, nil", len(frames), err)
	}
}

func TestRPCErrorStatus(t *testing.T) {
	nodetest.CheckLeaks(t)
	long := strings.Repeat("é", 1000) // 2000 bytes
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("fails", func(context.Context, keys.NodePublic, []byte, *Writer) error {
			return fmt.Errorf("no epoch 7 on this store")
		})
		s.Handle("denies", func(context.Context, keys.NodePublic, []byte, *Writer) error {
			return &Error{Code: Denied, Message: "not a custodian of camera 3"}
		})
		s.Handle("rambles", func(context.Context, keys.NodePublic, []byte, *Writer) error {
			return errors.New(long)
		})
		s.Handle("half", func(_ context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			if err := w.WriteFrame([]byte("first")); err != nil {
				return err
			}
			return errors.New("disk gone")
		})
	})
	ctx := testCtx(t, 20*time.Second)
	for _, tc := range []struct {
		op   string
		code Code
		msg  string
	}{
		{"epochs", UnknownOp, `unknown op "epochs"`},
		{"fails", Failed, "no epoch 7 on this store"},
		{"denies", Denied, "not a custodian of camera 3"},
		{"rambles", Failed, long[:maxMessage]},
	} {
		_, err := e.call(ctx, tc.op, nil)
		var re *Error
		if !errors.As(err, &re) {
			t.Fatalf("%s: err = %v, want an error status", tc.op, err)
		}
		if re.Code != tc.code || re.Message != tc.msg {
			t.Errorf("%s: status %v %.40q…, want %v %.40q…", tc.op, re.Code, re.Message, tc.code, tc.msg)
		}
	}
	// A failure after data was sent cannot become a status: the response
	// must end in an error, never a clean end. (The reset may overtake the
	// data already sent: QUIC drops unsent data of a reset stream.)
	frames, err := e.call(ctx, "half", nil)
	if err == nil || len(frames) > 1 || !strings.Contains(err.Error(), "handler failed") {
		t.Fatalf("half: frames %q, err %v; want at most the first frame, then a handler failure", frames, err)
	}
	t.Logf("half: %v", err)
}

// rawRequest sends raw bytes as a request and returns the server's status.
func (e *rpcEnv) rawRequest(ctx context.Context, t *testing.T, raw []byte, closeWrite bool) error {
	t.Helper()
	st, err := e.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.CancelRead(0)
	st.SetDeadline(time.Now().Add(10 * time.Second))
	st.Write(raw)
	if closeWrite {
		st.Close()
	}
	err = readStatusFrame(st)
	if err == nil {
		t.Fatalf("request %x was accepted", raw[:min(len(raw), 16)])
	}
	// After an error status the server ends the stream.
	if n, rerr := st.Read(make([]byte, 1)); n != 0 || rerr != io.EOF {
		t.Errorf("after the error status: read %d, %v; want EOF", n, rerr)
	}
	return err
}

func requestBytes(op string, body []byte) []byte {
	b := append([]byte{protoVersion, byte(len(op))}, op...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func TestRPCBadRequests(t *testing.T) {
	nodetest.CheckLeaks(t)
	var called atomic.Int32
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("ping", func(context.Context, keys.NodePublic, []byte, *Writer) error {
			called.Add(1)
			return nil
		})
	})
	ctx := testCtx(t, 20*time.Second)
	huge := append(append([]byte(`"`), bytes.Repeat([]byte("a"), maxBody)...), '"')
	for _, tc := range []struct {
		name string
		raw  []byte
		code Code
		msg  string
	}{
		{"version 2", append([]byte{2}, requestBytes("ping", nil)[1:]...), BadVersion, "this node speaks version 1"},
		{"oversize body", requestBytes("ping", huge), BadRequest, "too large"},
		{"upper-case op", requestBytes("PING", nil), BadRequest, "op"},
		{"empty op", requestBytes("", nil), BadRequest, "op length"},
		{"body not json", requestBytes("ping", []byte("{")), BadRequest, "JSON"},
		{"trailing data", append(requestBytes("ping", nil), 'x'), BadRequest, "after the request"},
		{"truncated", requestBytes("ping", nil)[:5], BadRequest, "EOF"},
	} {
		err := e.rawRequest(ctx, t, tc.raw, true)
		var re *Error
		if !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(re.Message, tc.msg) {
			t.Errorf("%s: got %v, want %v mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// The client refuses to send what the server would refuse.
	if _, err := Call(ctx, e.conn, "ping", huge); !errors.Is(err, errTooLarge) {
		t.Errorf("oversize call: err = %v, want errTooLarge", err)
	}
	if _, err := Call(ctx, e.conn, "Ping", nil); err == nil {
		t.Error("call with a bad op name was sent")
	}
	if n := called.Load(); n != 0 {
		t.Fatalf("handler ran %d times for bad requests", n)
	}
}

func TestRPCSlowClientHitsDeadline(t *testing.T) {
	nodetest.CheckLeaks(t)
	handlerErr := make(chan error, 1)
	e := newRPCEnv(t, func(s *Server) {
		s.requestTimeout = 300 * time.Millisecond
		s.writeTimeout = 500 * time.Millisecond
		s.Handle("flood", func(_ context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			chunk := make([]byte, 1<<20)
			for {
				if err := w.WriteFrame(chunk); err != nil {
					handlerErr <- err
					return err
				}
			}
		})
	})
	ctx := testCtx(t, 20*time.Second)

	// A request that never completes is answered after requestTimeout.
	start := time.Now()
	err := e.rawRequest(ctx, t, requestBytes("flood", nil)[:3], false)
	var re *Error
	if !errors.As(err, &re) || re.Code != BadRequest || !strings.Contains(re.Message, "in time") {
		t.Fatalf("stalled request: %v, want a bad-request status about time", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("stalled request answered after %v, want about 300ms", d)
	}

	// A client that stops reading: the handler's writes stop making
	// progress once flow control is exhausted and fail at the deadline.
	r, err := Call(ctx, e.conn, "flood", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case err := <-handlerErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("handler's write failed with %v, want a deadline", err)
		}
	case <-ctx.Done():
		t.Fatal("the handler of a client that does not read was never cut off")
	}
	// The client, reading again, finds a cut response, not a clean end.
	for {
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				t.Fatal("cut response ended cleanly")
			}
			break
		}
	}
}

func TestRPCConcurrentStreamsCapped(t *testing.T) {
	nodetest.CheckLeaks(t)
	const limit, calls = 3, 10
	var active, peak atomic.Int32
	release := make(chan struct{})
	e := newRPCEnv(t, func(s *Server) {
		s.maxStreams = limit
		s.Handle("hold", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			n := active.Add(1)
			defer active.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return w.WriteFrame([]byte("done"))
		})
	})
	ctx := testCtx(t, 20*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			frames, err := e.call(ctx, "hold", nil)
			if err == nil && (len(frames) != 1 || string(frames[0]) != "done") {
				err = fmt.Errorf("frames %q", frames)
			}
			errs <- err
		})
	}
	for active.Load() < limit {
		if ctx.Err() != nil {
			t.Fatal("handlers never reached the limit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // give any excess stream the chance to start
	if n := peak.Load(); n != limit {
		t.Fatalf("%d handlers ran at once, want %d", n, limit)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}
	if n := peak.Load(); n != limit {
		t.Fatalf("%d handlers ran at once, want at most %d", n, limit)
	}
}

func TestRPCShutdownWhileHandlerRuns(t *testing.T) {
	nodetest.CheckLeaks(t)
	started := make(chan struct{}, 2)
	var finished atomic.Int32
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("wait", func(ctx context.Context, _ keys.NodePublic, _ []byte, _ *Writer) error {
			started <- struct{}{}
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // some cleanup close must wait for
			finished.Add(1)
			return ctx.Err()
		})
		s.Handle("stream", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			started <- struct{}{}
			for ctx.Err() == nil {
				if err := w.WriteFrame([]byte("frame")); err != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			finished.Add(1)
			return ctx.Err()
		})
	})
	ctx := testCtx(t, 20*time.Second)
	waitErr := make(chan error, 1)
	go func() { _, err := e.call(ctx, "wait", nil); waitErr <- err }()
	r, err := Call(ctx, e.conn, "stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	<-started
	<-started

	e.srv.Close()
	if n := finished.Load(); n != 2 {
		t.Fatalf("close returned with %d of 2 handlers finished", 2-n)
	}
	// The unavailable status may be lost with the connection, but then the
	// connection's close says the same.
	var re *Error
	if err := <-waitErr; !(errors.As(err, &re) && re.Code == Unavailable) && !strings.Contains(fmt.Sprint(err), "shutting down") {
		t.Fatalf("call cut by shutdown: %v, want an unavailable status or shutdown", err)
	}
	for {
		if _, err := r.Next(); err != nil {
			if err == io.EOF {
				t.Fatal("stream cut by shutdown ended cleanly")
			}
			break
		}
	}
	if _, err := Call(ctx, e.conn, "wait", nil); err == nil {
		t.Fatal("call after close succeeded")
	}
}

func TestRPCClientCancels(t *testing.T) {
	nodetest.CheckLeaks(t)
	handlerDone := make(chan error, 1)
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("live", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			for ctx.Err() == nil {
				if err := w.WriteFrame([]byte("frame")); err != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			handlerDone <- ctx.Err()
			return ctx.Err()
		})
	})
	ctx, cancel := context.WithCancel(testCtx(t, 20*time.Second))
	r, err := Call(ctx, e.conn, "live", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for {
		if _, err := r.Next(); err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("after cancel: %v, want context.Canceled", err)
			}
			break
		}
	}
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("handler stopped without its context ending")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of an abandoned call kept running")
	}
}

func TestRPCServerRefusesByDefault(t *testing.T) {
	nodetest.CheckLeaks(t)
	e := newRPCEnv(t, func(*Server) {})
	_, err := e.call(testCtx(t, 10*time.Second), "ping", nil)
	var re *Error
	if !errors.As(err, &re) || re.Code != UnknownOp {
		t.Fatalf("server with no handlers: %v, want unknown op", err)
	}
}

// memStream is an in-memory stream.
type memStream struct {
	bytes.Buffer
	closed bool
	reset  quic.StreamErrorCode
}

func (m *memStream) Close() error                       { m.closed = true; return nil }
func (m *memStream) SetWriteDeadline(time.Time) error   { return nil }
func (m *memStream) CancelWrite(c quic.StreamErrorCode) { m.reset = c }

func TestRPCWriterFrames(t *testing.T) {
	var m memStream
	w := &Writer{st: &m, timeout: time.Second}
	big := bytes.Repeat([]byte{7}, maxData+1000)
	if n, err := w.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := w.WriteFrame(make([]byte, maxData+1)); !errors.Is(err, errTooLarge) {
		t.Fatalf("WriteFrame of an oversize frame: %v", err)
	}
	w.WriteFrame(nil) // nothing, not an end frame
	w.finish()
	if !m.closed || m.reset != 0 {
		t.Fatalf("finish: closed %v, reset %d", m.closed, m.reset)
	}
	if err := readStatusFrame(&m); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		p, err := readDataFrame(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(p))
	}
	if fmt.Sprint(sizes) != fmt.Sprint([]int{maxData, 1000}) || m.Len() != 0 {
		t.Fatalf("frames %v, %d bytes left; want [%d 1000], none", sizes, m.Len(), maxData)
	}

	// Failing after data resets instead of writing a status.
	m = memStream{}
	w = &Writer{st: &m, timeout: time.Second}
	w.WriteFrame([]byte("x"))
	w.fail(errors.New("disk gone"))
	if m.reset != resetFailed || m.closed {
		t.Fatalf("fail after data: reset %d, closed %v; want reset %d", m.reset, m.closed, resetFailed)
	}
}

func TestRPCDecoders(t *testing.T) {
	good := requestBytes("release", []byte(`{"epoch":3}`))
	req, err := readRequestFrame(bytes.NewReader(good))
	if err != nil || req.Op != "release" || string(req.Body) != `{"epoch":3}` {
		t.Fatalf("readRequestFrame = %+v, %v", req, err)
	}
	enc, err := encodeRequestFrame(req)
	if err != nil || !bytes.Equal(enc, good) {
		t.Fatalf("encodeRequestFrame = %x, %v; want %x", enc, err, good)
	}
	for i := 1; i < len(good); i++ {
		if _, err := readRequestFrame(bytes.NewReader(good[:i])); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("request truncated to %d bytes: %v, want ErrUnexpectedEOF", i, err)
		}
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"data oversize", binary.BigEndian.AppendUint32(nil, maxData+1), errTooLarge},
		{"data truncated", append(binary.BigEndian.AppendUint32(nil, 10), "abc"...), io.ErrUnexpectedEOF},
		{"data end", []byte{0, 0, 0, 0}, io.EOF},
	} {
		if _, err := readDataFrame(bytes.NewReader(tc.raw)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	var sb bytes.Buffer
	writeStatusFrame(&sb, Denied, "no\xffpe")
	var re *Error
	if err := readStatusFrame(&sb); !errors.As(err, &re) || re.Code != Denied || re.Message != "no?pe" {
		t.Fatalf("status round trip: %v", err)
	}
	for _, raw := range [][]byte{
		{1, 0, 0, 1, 'x'},        // OK with a message
		{1, 5, 0, 2, 0xff, 0xfe}, // not UTF-8
		{1, 5, 0x04, 0x01},       // message too long
		{2, 0, 0, 0},             // other version
	} {
		err := readStatusFrame(bytes.NewReader(raw))
		if err == nil || errors.As(err, &re) {
			t.Errorf("status %x: %v, want a decoding error", raw, err)
		}
	}
}

func FuzzReadRequestFrame(f *testing.F) {
	f.Add(requestBytes("ping", nil))
	f.Add(requestBytes("segments", []byte(`{"camera":"c1","from":0}`)))
	f.Add([]byte{2, 4, 'p', 'i', 'n', 'g', 0, 0, 0, 0})
	f.Add(append(requestBytes("ping", nil)[:6], 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		req, err := readRequestFrame(r)
		if err != nil {
			return
		}
		used := len(data) - r.Len()
		enc, err := encodeRequestFrame(req)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", req, err)
		}
		if !bytes.Equal(enc, data[:used]) {
			t.Fatalf("decode/encode differ: %x vs %x", data[:used], enc)
		}
	})
}

func FuzzReadDataFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		p, err := readDataFrame(r)
		if err != nil {
			return
		}
		if len(p) == 0 || len(p) > maxData || len(data)-r.Len() != 4+len(p) || !bytes.Equal(p, data[4:4+len(p)]) {
			t.Fatalf("frame of %d bytes from %d input bytes", len(p), len(data))
		}
	})
}

func FuzzReadStatusFrame(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{1, 5, 0, 4, 'o', 'o', 'p', 's'})
	f.Add([]byte{1, 5, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := readStatusFrame(bytes.NewReader(data))
		var re *Error
		if errors.As(err, &re) {
			if re.Code == OK || len(re.Message) > maxMessage {
				t.Fatalf("bad status accepted: %+v", re)
			}
			var b bytes.Buffer
			writeStatusFrame(&b, re.Code, re.Message)
			if !bytes.Equal(b.Bytes(), data[:b.Len()]) {
				t.Fatalf("status re-encodes differently: %x vs %x", b.Bytes(), data)
			}
		}
	})
}
