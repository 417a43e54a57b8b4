package rpc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// dial opens one more connection from b to the server.
func (e *rpcEnv) dial(t *testing.T) *mesh.QUICConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.b.DialQUIC(ctx, e.addr, mesh.QUICConfig{Admit: func(keys.NodePublic) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRPCPeerConnectionsCapped(t *testing.T) {
	nodetest.CheckLeaks(t)
	const limit = 3
	e := newRPCEnv(t, func(s *Server) {
		s.maxPeerConns = limit
		s.Handle("ping", func(_ context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			return w.WriteFrame([]byte("pong"))
		})
	})
	ctx := testCtx(t, 30*time.Second)
	ping := func(c *mesh.QUICConn) error {
		rd, err := Call(ctx, c, "ping", nil)
		if err != nil {
			return err
		}
		defer rd.Close()
		_, err = ReadFrames(rd, 1)
		return err
	}
	conns := []*mesh.QUICConn{e.conn}
	for len(conns) < limit {
		conns = append(conns, e.dial(t))
	}
	for i, c := range conns {
		if err := ping(c); err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, limit, err)
		}
	}
	over := e.dial(t)
	err := ping(over)
	if err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("connection over the limit: %v, want a refusal that says too many", err)
	}
	// A connection that ends frees its place.
	conns[1].Close()
	nodetest.WaitTrue(t, 10*time.Second, "the closed connection to be forgotten", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return len(e.srv.conns) == limit-1
	})
	if err := ping(e.dial(t)); err != nil {
		t.Fatalf("connection after one closed: %v", err)
	}
}

func TestRPCPeerStreamsCappedOverConnections(t *testing.T) {
	nodetest.CheckLeaks(t)
	const limit = 2
	release := make(chan struct{})
	var started = make(chan struct{}, 10)
	e := newRPCEnv(t, func(s *Server) {
		s.maxPeerStreams = limit
		s.Handle("hold", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return w.WriteFrame([]byte("done"))
		})
	})
	ctx := testCtx(t, 30*time.Second)
	errs := make(chan error, 4)
	for _, c := range []*mesh.QUICConn{e.conn, e.dial(t), e.dial(t), e.dial(t)} {
		go func() {
			rd, err := Call(ctx, c, "hold", nil)
			if err == nil {
				_, err = ReadFrames(rd, 1)
				rd.Close()
			}
			errs <- err
		}()
	}
	for range limit {
		<-started
	}
	select {
	case <-started:
		t.Fatalf("more than %d handlers ran at once for one peer over several connections", limit)
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}
}

func TestReadFramesBounded(t *testing.T) {
	nodetest.CheckLeaks(t)
	e := newRPCEnv(t, func(s *Server) {
		s.Handle("flood", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			for ctx.Err() == nil {
				if err := w.WriteFrame(make([]byte, 16)); err != nil {
					return err
				}
			}
			return ctx.Err()
		})
		s.Handle("few", func(ctx context.Context, _ keys.NodePublic, _ []byte, w *Writer) error {
			for range 3 {
				if err := w.WriteFrame(make([]byte, 1<<10)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	ctx := testCtx(t, 60*time.Second)
	// No limit given: a peer that never stops is cut at MaxFrames.
	rd, err := Call(ctx, e.conn, "flood", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fs, err := ReadFrames(rd, 0); err == nil || !strings.Contains(err.Error(), "frames asked for") {
		t.Fatalf("endless answer: %d frames, %v", len(fs), err)
	}
	rd.Close()
	// Bytes are bounded too.
	rd, err = Call(ctx, e.conn, "few", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFramesLimit(rd, 0, 2<<10); !errors.Is(err, errTooLarge) {
		t.Fatalf("answer over the byte limit: %v", err)
	}
	rd.Close()
	rd, err = Call(ctx, e.conn, "few", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fs, err := ReadFramesLimit(rd, 0, 3<<10); err != nil || len(fs) != 3 {
		t.Fatalf("answer at the limit: %d frames, %v", len(fs), err)
	}
	rd.Close()
}
