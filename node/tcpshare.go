package node

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/custos-cctv/custos/node/join"
)

// A datacenter's TCP port is the port number of its WireGuard UDP socket,
// and two services share it: the relay (DERP over HTTP: every connection
// starts with "GET ") and the join service (a JSON redeem: it starts with
// "{"). One port means one firewall rule at the datacenter and one address
// in every token and policy entry. tcpShare peeks at the first bytes of
// each connection and hands it to the service it belongs to; it decides
// nothing else, so each service keeps its own limits.
//
// The peek is bounded like everything open to strangers: a connection has
// shareSniffTimeout to send its first bytes, at most shareMaxPending
// connections are being sniffed at once, shareMaxPerSource of them from
// one source (an IPv4 address or an IPv6 /64); more are closed at once.
const (
	shareSniffTimeout = 5 * time.Second
	shareMaxPending   = 128
	shareMaxPerSource = 8
)

type tcpShare struct {
	ln        net.Listener
	http      *shareListener // the relay
	other     *shareListener // the join service
	wg        sync.WaitGroup
	mu        sync.Mutex
	pending   int
	perSource map[netip.Prefix]int
	closed    bool
	sniff     time.Duration // shareSniffTimeout; tests change it (under mu)
}

func newTCPShare(ln net.Listener) *tcpShare {
	s := &tcpShare{ln: ln, perSource: map[netip.Prefix]int{}, sniff: shareSniffTimeout}
	s.http = newShareListener(ln.Addr())
	s.other = newShareListener(ln.Addr())
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *tcpShare) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond) // out of descriptors and the like: keep serving
			continue
		}
		src := join.Source(c.RemoteAddr())
		if !s.take(src) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.give(src)
			s.route(c)
		}()
	}
}

func (s *tcpShare) take(src netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pending >= shareMaxPending || s.perSource[src] >= shareMaxPerSource {
		return false
	}
	s.pending++
	s.perSource[src]++
	return true
}

func (s *tcpShare) give(src netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
	if s.perSource[src]--; s.perSource[src] <= 0 {
		delete(s.perSource, src)
	}
}

// route reads the first bytes of c and queues it for its service.
func (s *tcpShare) route(c net.Conn) {
	s.mu.Lock()
	sniff := s.sniff
	s.mu.Unlock()
	c.SetReadDeadline(time.Now().Add(sniff))
	br := bufio.NewReaderSize(c, 512)
	// One byte decides unless it could start "GET ": a redeem is JSON,
	// so its first byte is "{" (or space).
	head, err := br.Peek(1)
	if err == nil && head[0] == 'G' {
		head, err = br.Peek(4)
	}
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	to := s.other
	if string(head) == "GET " {
		to = s.http
	}
	if !to.deliver(pc, sniff) {
		c.Close()
	}
}

// Close stops accepting and closes both listeners; connections already
// handed over belong to their services.
func (s *tcpShare) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.http.Close()
	s.other.Close()
	s.wg.Wait()
	return err
}

// peekedConn replays the sniffed bytes before the rest of the stream.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// shareListener is one service's side of a tcpShare.
type shareListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newShareListener(addr net.Addr) *shareListener {
	return &shareListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver waits for the service to accept c, up to d.
func (l *shareListener) deliver(c net.Conn, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l.ch <- c:
		return true
	case <-l.done:
	case <-t.C:
	}
	return false
}

func (l *shareListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *shareListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *shareListener) Addr() net.Addr { return l.addr }
