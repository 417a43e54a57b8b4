package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Forwarding: a non-leader sends requests to the leader on the Raft port,
// after the protocol byte 'F'. doc.go describes the frames.

const (
	// forwardIdle is how long the leader keeps an idle forwarding conn.
	forwardIdle = 2 * time.Minute
	// poolIdle is how long a requester reuses an idle conn; shorter than
	// forwardIdle, so a pooled conn is not one the leader is closing.
	poolIdle = 30 * time.Second
	// poolSize is how many idle conns a requester keeps per leader.
	poolSize = 4
	// maxForwardWait caps the wait a request may ask the leader for.
	maxForwardWait = time.Minute
	// responseMargin is kept from the requester's deadline, so the leader's
	// answer arrives before the requester gives up.
	responseMargin = 50 * time.Millisecond
)

// forward sends one request to the leader at addr and returns its result.
//
// The leader acknowledges a request (kindAccepted) after reading it whole and
// before acting on it. A conn that fails before that acknowledgement, be it
// a stale pooled conn, a leader going away or one whose Admit refuses us,
// carried nothing that was applied, so the caller may retry; a conn that
// fails after it leaves the outcome unknown.
func (n *Node) forward(ctx context.Context, addr string, kind frameKind, payload []byte) ([]byte, error) {
	c := n.pool.get(addr)
	if c == nil {
		var err error
		// A leader that died is still named until an election; a short dial
		// gives up on it quickly, and a failed dial sent nothing, so the
		// retry loop asks raft for the leader again.
		// A new leader's first heartbeat ends the wait at once.
		dctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatTimeout)
		go n.cancelOnLeaderChange(dctx, cancel, addr)
		c, err = n.stream.dial(dctx, addr, protoForward)
		cancel()
		if err != nil {
			return nil, &retryError{err}
		}
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	conn := c
	// The deadline is set before the watchers below start: set after, it
	// would undo a watcher that had already cut it.
	dl := deadline(ctx)
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	// A leader that dies silently (its host gone, packets blackholed)
	// never closes the conn: without this, the request would wait out
	// the whole deadline. When raft names another leader (or none), the
	// conn is abandoned at once.
	var moved atomic.Bool
	wctx, wcancel := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		n.cancelOnLeaderChange(wctx, func() { moved.Store(true); conn.SetDeadline(time.Now()) }, addr)
	}()
	unwatch := func() { wcancel(); <-watching }
	defer unwatch()
	wait := max(time.Until(dl)-responseMargin, time.Millisecond)
	if err := writeFrame(c, requestFrame(kind, wait, payload)); err != nil {
		return nil, &retryError{fmt.Errorf("send to leader %s: %w", addr, err)}
	}
	resp, err := readFrame(c)
	if err != nil {
		if ctx.Err() != nil && !moved.Load() {
			return nil, fmt.Errorf("%w: leader %s: %v", ErrOutcomeUnknown, addr, ctx.Err())
		}
		return nil, &retryError{fmt.Errorf("leader %s closed the connection before taking the request: %w", addr, err)}
	}
	if resp.kind == kindAccepted {
		resp, err = readFrame(c)
		if err != nil {
			// A read is asked again by onLeader; a command's fate is open.
			return nil, fmt.Errorf("%w: no answer from leader %s: %v", ErrOutcomeUnknown, addr, err)
		}
	}
	unwatch()
	if moved.Load() {
		// The answer raced the watcher, which has cut the conn's deadline:
		// use the answer, but not the conn.
		stop()
		c.SetDeadline(time.Time{})
		return decodeForwardAnswer(addr, resp)
	}
	if !stop() {
		return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
	}
	c.SetDeadline(time.Time{})
	n.pool.put(addr, c)
	c = nil
	return decodeForwardAnswer(addr, resp)
}

// decodeForwardAnswer turns the leader's final frame into Submit's result.
func decodeForwardAnswer(addr string, resp frame) ([]byte, error) {
	switch resp.kind {
	case kindOK:
		return resp.body, nil
	case kindRejected:
		return nil, &rejectedError{text: cleanText(string(resp.body))}
	case kindRetry:
		return nil, &retryError{fmt.Errorf("leader %s: %s", addr, cleanText(string(resp.body)))}
	case kindUnknown:
		return nil, fmt.Errorf("%w: leader %s: %s", ErrOutcomeUnknown, addr, cleanText(string(resp.body)))
	case kindInvalid:
		return nil, fmt.Errorf("leader %s refused the request: %s", addr, cleanText(string(resp.body)))
	}
	return nil, fmt.Errorf("%w: leader %s answered with frame kind %#x", ErrOutcomeUnknown, addr, byte(resp.kind))
}

// cancelOnLeaderChange calls cancel when raft names a leader other than
// addr, or when ctx ends.
func (n *Node) cancelOnLeaderChange(ctx context.Context, cancel context.CancelFunc, addr string) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if a, _ := n.raft.LeaderWithID(); string(a) != addr {
				cancel()
				return
			}
		}
	}
}

// serveForward answers requests on one forwarding conn until it ends.
func (n *Node) serveForward(c net.Conn) {
	select {
	case <-n.ready: // a request may come in while Open is still starting raft
	case <-n.ctx.Done():
		return
	}
	for {
		c.SetReadDeadline(time.Now().Add(forwardIdle))
		req, err := readFrame(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				n.cfg.Logf("consensus: forwarding from %v: %v", c.RemoteAddr(), err)
				c.SetWriteDeadline(time.Now().Add(n.cfg.IOTimeout))
				writeFrame(c, textFrame(kindInvalid, err.Error()))
			}
			return
		}
		c.SetWriteDeadline(time.Now().Add(n.cfg.IOTimeout))
		if err := n.answer(c, req); err != nil {
			return
		}
	}
}

// answer handles one forwarded request: it refuses it at once, or
// acknowledges it, acts on it and sends the result.
func (n *Node) answer(c net.Conn, req frame) error {
	wait, payload, err := parseRequest(req)
	if err != nil {
		return writeFrame(c, textFrame(kindInvalid, err.Error()))
	}
	if len(payload) > MaxCommand {
		return writeFrame(c, textFrame(kindInvalid, fmt.Sprintf("command of %d bytes, at most %d", len(payload), MaxCommand)))
	}
	if n.raft.State() != raft.Leader {
		return writeFrame(c, textFrame(kindRetry, "not the leader"))
	}
	if err := writeFrame(c, frame{kind: kindAccepted}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(n.ctx, min(wait, maxForwardWait))
	defer cancel()
	var res []byte
	switch req.kind {
	case kindSubmit:
		if res, err = n.applyLocal(ctx, payload); err == nil {
			n.nudge()
		}
	case kindReadIndex:
		res, err = n.readIndexLocal(ctx)
	}
	var re *retryError
	var rj *rejectedError
	resp := textFrame(kindUnknown, fmt.Sprint(err))
	switch {
	case err == nil:
		resp = frame{kind: kindOK, body: res}
	case errors.As(err, &rj):
		resp = textFrame(kindRejected, rj.text)
	case errors.As(err, &re):
		resp = textFrame(kindRetry, err.Error())
	}
	c.SetWriteDeadline(time.Now().Add(n.cfg.IOTimeout))
	return writeFrame(c, resp)
}

// connPool keeps idle forwarding conns per leader address. A pooled conn
// may have died meanwhile; the acknowledgement makes that safe to find out
// by using it.
type connPool struct {
	mu     sync.Mutex
	idle   map[string][]pooledConn // guarded by mu
	closed bool                    // guarded by mu
}

type pooledConn struct {
	c     net.Conn
	since time.Time
}

// get returns an idle conn to addr that is not too old, or nil.
func (p *connPool) get(addr string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if time.Since(pc.since) < poolIdle {
			return pc.c
		}
		pc.c.Close()
	}
	return nil
}

func (p *connPool) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= poolSize {
		c.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[string][]pooledConn)
	}
	p.idle[addr] = append(p.idle[addr], pooledConn{c: c, since: time.Now()})
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, list := range p.idle {
		for _, pc := range list {
			pc.c.Close()
		}
	}
	p.idle = nil
}

// nudger keeps at most one commit-announcing barrier in flight (nudge).
type nudger struct {
	mu    sync.Mutex
	busy  bool // a barrier is in flight
	again bool // a command was answered after it was appended
	wg    sync.WaitGroup
}

// nudge tells every follower at once that what the leader applied is
// committed. hashicorp/raft tells a follower the commit index only with
// its next append, which without new entries comes after CommitTimeout
// (50–100 ms); and a node that forwarded a command waits for its own
// replica to apply it, so that a read there right after sees the write.
// A barrier is such an append: every follower's carries the commit index
// it needs. One barrier serves every command answered before it was
// appended; a command answered while one is in flight gets the next.
func (n *Node) nudge() {
	u := &n.nudges
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.busy {
		u.again = true
		return
	}
	if n.ctx.Err() != nil {
		return
	}
	u.busy = true
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			_ = n.raft.Barrier(n.cfg.IOTimeout).Error() // a lost leadership or shutdown only ends it
			u.mu.Lock()
			if !u.again || n.ctx.Err() != nil {
				u.busy, u.again = false, false
				u.mu.Unlock()
				return
			}
			u.again = false
			u.mu.Unlock()
		}
	}()
}
