package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/node/live"
)

// Live view on a lossy, distant link. The kernel here has no netem
// (CONFIG_NET_SCH_NETEM is off), so the impairment is netem's in user
// space, on each end's UDP socket as packets arrive: a share lost at random
// and the rest delayed by a fixed time, in order. The viewer's and the
// store's sockets each impair what comes from the other, so both ways lose
// lossyLoss and take lossyDelay.
const (
	lossyLoss  = 0.05
	lossyDelay = 50 * time.Millisecond // each way: 100 ms RTT
	// lossyWatch is how long each view is measured, after lossyWarm.
	lossyWatch = 20 * time.Second
	lossyWarm  = 3 * time.Second
	// onTime is how late a frame may be shown and still count.
	onTime = 500 * time.Millisecond
)

// impairment drops and delays packets from the UDP ports in from: a
// node's port, whichever of the machine's addresses its path took (the
// mesh learns every local address as a candidate).
type impairment struct {
	loss  float64
	delay time.Duration
	on    atomic.Bool
	mu    sync.Mutex
	from  map[uint16]bool
}

func (im *impairment) matches(a netip.AddrPort) bool {
	if !im.on.Load() {
		return false
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.from[a.Port()]
}

func (im *impairment) add(a netip.AddrPort) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.from == nil {
		im.from = make(map[uint16]bool)
	}
	im.from[a.Port()] = true
}

// delayed is one packet on its way.
type delayed struct {
	b   []byte
	ep  conn.Endpoint
	src net.Addr
	due time.Time
	err error
}

// lane delivers packets in order, each at its due time.
type lane struct {
	fast, slow chan delayed
	head       *delayed
}

func newLane() *lane { return &lane{fast: make(chan delayed, 4096), slow: make(chan delayed, 65536)} }

// admit queues p: impaired packets are dropped or go slow, others fast.
func (l *lane) admit(im *impairment, p delayed, impaired bool) {
	if !impaired {
		l.fast <- p
		return
	}
	if mrand.Float64() < im.loss {
		return
	}
	p.due = time.Now().Add(im.delay)
	select {
	case l.slow <- p:
	default: // a full queue drops, as netem's limit does
	}
}

// next returns the next packet due, waiting for it.
func (l *lane) next() delayed {
	for {
		if l.head == nil {
			select {
			case p := <-l.fast:
				return p
			case p := <-l.slow:
				l.head = &p
			}
			continue
		}
		wait := time.Until(l.head.due)
		if wait <= 0 {
			p := *l.head
			l.head = nil
			return p
		}
		t := time.NewTimer(wait)
		select {
		case p := <-l.fast:
			t.Stop()
			return p
		case <-t.C:
		}
	}
}

// impairedBind is a conn.Bind whose receive side impairs packets from the
// impairment's addresses.
type impairedBind struct {
	conn.Bind
	im *impairment
}

func (b *impairedBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	out := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		l := newLane()
		go func() {
			bs := b.BatchSize()
			bufs, sizes, eps := make([][]byte, bs), make([]int, bs), make([]conn.Endpoint, bs)
			for j := range bufs {
				bufs[j] = make([]byte, 65536)
			}
			for {
				n, err := fn(bufs, sizes, eps)
				if err != nil {
					l.fast <- delayed{err: err}
					return
				}
				for j := range n {
					ap, _ := netip.ParseAddrPort(eps[j].DstToString())
					l.admit(b.im, delayed{b: append([]byte(nil), bufs[j][:sizes[j]]...), ep: eps[j]}, b.im.matches(ap))
				}
			}
		}()
		out[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			p := l.next()
			if p.err != nil {
				l.fast <- p // every later call fails too
				return 0, p.err
			}
			sizes[0] = copy(bufs[0], p.b)
			eps[0] = p.ep
			return 1, nil
		}
	}
	return out, p, nil
}

// impairedPC is the same impairment on a plain UDP socket, for the
// baseline: every packet it receives is impaired.
type impairedPC struct {
	net.PacketConn
	l *lane
}

func newImpairedPC(pc net.PacketConn, im *impairment) *impairedPC {
	if !im.on.Load() {
		panic("the baseline's impairment is off")
	}
	c := &impairedPC{PacketConn: pc, l: newLane()}
	go func() {
		for {
			buf := make([]byte, 2048)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				c.l.fast <- delayed{err: err}
				return
			}
			c.l.admit(im, delayed{b: buf[:n], src: from}, true)
		}
	}()
	return c
}

func (c *impairedPC) ReadFrom(b []byte) (int, net.Addr, error) {
	p := c.l.next()
	if p.err != nil {
		c.l.fast <- p
		return 0, nil, p.err
	}
	return copy(b, p.b), p.src, nil
}

// lossyFrames scores one view: the frames the camera made in the window,
// and when each reached the viewer.
type lossyFrames struct {
	from, to time.Time
	mu       sync.Mutex
	made     map[int64]bool
	shown    map[int64]time.Duration
}

func newLossyFrames(start time.Time) *lossyFrames {
	return &lossyFrames{from: start.Add(lossyWarm), to: start.Add(lossyWarm + lossyWatch),
		made: make(map[int64]bool), shown: make(map[int64]time.Duration)}
}

func (l *lossyFrames) in(t time.Time) bool { return !t.Before(l.from) && t.Before(l.to) }

func (l *lossyFrames) camera(f h264.Frame) {
	if l.in(f.Time) {
		l.mu.Lock()
		l.made[f.Time.UnixNano()] = true
		l.mu.Unlock()
	}
}

func (l *lossyFrames) viewer(f h264.Frame) {
	if l.in(f.Time) {
		d := time.Since(f.Time)
		l.mu.Lock()
		l.shown[f.Time.UnixNano()] = d
		l.mu.Unlock()
	}
}

// report prints the share of the camera's frames shown within onTime and
// the delays of all frames shown.
func (l *lossyFrames) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.made) == 0 {
		b.Fatal("the camera made no frames in the window")
	}
	var lat []time.Duration
	ok := 0
	for t, d := range l.shown {
		if !l.made[t] {
			continue
		}
		lat = append(lat, d)
		if d <= onTime {
			ok++
		}
	}
	b.ReportMetric(100*float64(ok)/float64(len(l.made)), "on-time-%")
	b.ReportMetric(100*float64(len(lat))/float64(len(l.made)), "shown-%")
	reportLatency(b, lat)
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	}
}

// countCamera counts the camera's frames from the store's own ring, in
// process, until ctx ends.
func countCamera(b *testing.B, ctx context.Context, st *Node, cam string, l *lossyFrames) {
	hub := st.rec.LiveHub(cam)
	if hub == nil {
		b.Fatal("the camera does not record")
	}
	v, err := hub.Subscribe()
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer v.Close()
		for {
			f, err := v.Next(ctx)
			if err != nil {
				return
			}
			l.camera(f)
		}
	}()
}

// BenchmarkLiveLossy: live view of a 25 fps camera from the store to desk
// with 5 % loss each way and 100 ms RTT between them. Reported per view
// of lossyWatch: the share of the camera's frames shown no later than
// 500 ms after capture (on-time-%), the share shown at all, and the delay
// p50/p99/max. /datagrams is Custos's live view; /stream the same over the
// QUIC stream it used before; /quic the baseline: the same frames from the
// store's ring over one stream of a plain quic-go connection between two
// loopback sockets impaired the same way.
func BenchmarkLiveLossy(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	im := &impairment{loss: lossyLoss, delay: lossyDelay}
	st, desk, cam := lossyFederation(b, ctx, im)
	for _, mode := range []string{"datagrams", "stream"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				wctx, wcancel := context.WithTimeout(ctx, lossyWarm+lossyWatch+time.Second)
				l := newLossyFrames(time.Now())
				countCamera(b, wctx, st, cam, l)
				res, err := desk.Live(wctx, cam, io.Discard, live.Options{Stream: mode == "stream", OnFrame: l.viewer})
				wcancel()
				if err != nil || res.Ended != "" {
					b.Fatalf("%+v %v", res, err)
				}
				if res.Datagrams != (mode == "datagrams") {
					b.Fatalf("datagrams: %v", res.Datagrams)
				}
				l.report(b)
			}
		})
	}
	b.Run("quic", func(b *testing.B) {
		for b.Loop() {
			wctx, wcancel := context.WithTimeout(ctx, lossyWarm+lossyWatch+time.Second)
			l := newLossyFrames(time.Now())
			countCamera(b, wctx, st, cam, l)
			plainQUICView(b, wctx, st, cam, im, l)
			wcancel()
			l.report(b)
		}
	})
}

// lossyFederation is liveFederation with the store's and desk's sockets
// impairing what comes from each other.
func lossyFederation(b *testing.B, ctx context.Context, im *impairment) (st, desk *Node, cam string) {
	st, desk, cam = liveFederationWith(b, ctx, func(c *Config) {
		c.meshBind = &impairedBind{Bind: conn.NewDefaultBind(), im: im}
		im.add(c.Listen)
	})
	// Both ends' sockets impair only direct UDP, so the impairment starts
	// once the direct path is up. (Started before, it keeps the two on the
	// in-process relay for good: a peer moves to the direct path when a
	// probe's copy of a packet arrives before the relay's, and on this
	// machine the relay is 50 ms nearer.)
	waitTrue(b, 60*time.Second, "a direct path between desk and the store", func() bool {
		for _, n := range []*Node{desk, st} {
			s, err := n.Status()
			if err != nil {
				return false
			}
			direct := false
			for _, p := range s.Peers {
				if (p.Name == "store" || p.Name == "desk") && strings.HasPrefix(p.Path, "direct") {
					direct = true
				}
			}
			if !direct {
				return false
			}
		}
		return true
	})
	im.on.Store(true)
	return st, desk, cam
}

// plainQUICView sends the camera's frames from the store's ring over one
// stream of a plain quic-go connection between two impaired loopback
// sockets, and scores what arrives, until ctx ends.
func plainQUICView(b *testing.B, ctx context.Context, st *Node, cam string, im *impairment, l *lossyFrames) {
	listen := func() *impairedPC {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		return newImpairedPC(pc, im)
	}
	spc, cpc := listen(), listen()
	defer spc.Close()
	defer cpc.Close()
	str, ctr := &quic.Transport{Conn: spc}, &quic.Transport{Conn: cpc}
	defer str.Close()
	defer ctr.Close()
	ln, err := str.Listen(benchTLS(b), &quic.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var sent atomic.Int64
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		s, err := c.OpenStream()
		if err != nil {
			return
		}
		hub := st.rec.LiveHub(cam)
		if hub == nil {
			return
		}
		v, err := hub.Subscribe()
		if err != nil {
			return
		}
		defer v.Close()
		hdr := make([]byte, 13)
		for {
			f, err := v.Next(ctx)
			if err != nil {
				return
			}
			binary.BigEndian.PutUint64(hdr, uint64(f.Time.UnixNano()))
			binary.BigEndian.PutUint32(hdr[8:], uint32(len(f.Data)))
			if f.Key {
				hdr[12] = 1
			} else {
				hdr[12] = 0
			}
			if _, err := s.Write(append(hdr, f.Data...)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	c, err := ctr.Dial(ctx, spc.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"bench"}}, &quic.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	defer context.AfterFunc(ctx, func() { c.CloseWithError(0, "") })()
	s, err := c.AcceptStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	hdr := make([]byte, 13)
	for {
		if _, err := io.ReadFull(s, hdr); err != nil {
			break
		}
		data := make([]byte, binary.BigEndian.Uint32(hdr[8:]))
		if _, err := io.ReadFull(s, data); err != nil {
			break
		}
		l.viewer(h264.Frame{Time: time.Unix(0, int64(binary.BigEndian.Uint64(hdr))), Key: hdr[12] == 1, Data: data})
	}
	if sent.Load() == 0 {
		b.Fatal("the plain QUIC view sent nothing")
	}
}

// benchTLS is a throwaway self-signed server certificate.
func benchTLS(b *testing.B) *tls.Config {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"bench"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		b.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{"bench"}}
}
