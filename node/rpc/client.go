package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go"

	"github.com/custos-cctv/custos/mesh"
)

// Call sends one request on a new stream of conn and reads the status.
// A non-OK status is returned as *Error. On OK, the caller reads the
// response from the returned reader and must Close it. ctx bounds the
// whole exchange, reading included.
func Call(ctx context.Context, conn *mesh.QUICConn, op string, body []byte) (*Reader, error) {
	req, err := encodeRequestFrame(request{Op: op, Body: body})
	if err != nil {
		return nil, fmt.Errorf("rpc: %s: %w", op, err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("rpc: %s: open stream: %w", op, ctxErr(ctx, explainReset(err)))
	}
	r := &Reader{ctx: ctx, op: op, st: st}
	r.stop = context.AfterFunc(ctx, r.abort)
	if _, err := st.Write(req); err != nil {
		r.Close()
		return nil, fmt.Errorf("rpc: %s: send: %w", op, ctxErr(ctx, explainReset(err)))
	}
	st.Close()
	if err := readStatusFrame(st); err != nil {
		r.Close()
		var re *Error
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
		case connShutdown:
			return fmt.Errorf("the server is shutting down: %w", err)
		case connTooMany:
			return fmt.Errorf("the server refused the connection: this node holds too many with it at once: %w", err)
		}
	}
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote {
		return err
	}
	why := "server reset the stream"
	switch se.ErrorCode {
	case resetFailed:
		why = "the server's handler failed mid-response"
	case resetDeadline:
		why = "the server's write deadline passed (reading too slowly?)"
	case resetShutdown:
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

// Reader reads an OK response's data frames.
type Reader struct {
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
func (r *Reader) Next() ([]byte, error) {
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
	buf.Grow(min(r.left, writeChunk))
	if _, err := io.CopyN(&buf, r.st, int64(r.left)); err != nil {
		return nil, r.fail(NoEOF(err))
	}
	r.left = 0
	return buf.Bytes(), nil
}

// Read reads the response's data as one byte stream.
func (r *Reader) Read(p []byte) (int, error) {
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
		return n, r.fail(NoEOF(err))
	}
	return n, nil
}

// end checks that the stream ends right after the end frame.
func (r *Reader) end() error {
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

func (r *Reader) fail(err error) error {
	r.err = fmt.Errorf("rpc: %s: response: %w", r.op, ctxErr(r.ctx, explainReset(err)))
	r.abort()
	return r.err
}

func (r *Reader) abort() {
	r.st.CancelRead(resetCanceled)
	r.st.CancelWrite(resetCanceled)
}

// Close releases the stream; closing before the end abandons the response.
func (r *Reader) Close() error {
	r.stop()
	if r.err != io.EOF {
		r.abort()
	}
	return nil
}

// CallJSON runs op with query q on conn; on error it closes conn.
func CallJSON(ctx context.Context, conn *mesh.QUICConn, op string, q any) (*Reader, error) {
	body, err := json.Marshal(q)
	if err == nil {
		var rd *Reader
		if rd, err = Call(ctx, conn, op, body); err == nil {
			return rd, nil
		}
	}
	conn.Close()
	return nil, err
}

// ReadFrames reads every data frame of rd into memory; more than max
// frames (MaxFrames if max is 0), or more than MaxFramesBytes in all,
// is an error: a peer that answers with more than was asked, or than a
// node keeps in memory for one answer, is broken or lying.
func ReadFrames(rd *Reader, max int) ([][]byte, error) {
	return ReadFramesLimit(rd, max, MaxFramesBytes)
}

func ReadFramesLimit(rd *Reader, max, maxBytes int) ([][]byte, error) {
	if max <= 0 {
		max = MaxFrames
	}
	var out [][]byte
	total := 0
	for {
		b, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(out) == max {
			rd.Close()
			return nil, fmt.Errorf("rpc: %s: more than the %d frames asked for", rd.op, max)
		}
		if total += len(b); total > maxBytes {
			rd.Close()
			return nil, fmt.Errorf("rpc: %s: answer of more than %d bytes: %w", rd.op, maxBytes, errTooLarge)
		}
		out = append(out, b)
	}
}
