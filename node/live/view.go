package live

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// liveMsg is one frame of a live stream: an access unit, the store's end
// with its reason (Ended != ""), or the port its datagrams come from.
type liveMsg struct {
	Frame h264.Frame
	Ended string
	UDP   uint16
}

// parseLiveFrame reads one frame of a live stream.
func parseLiveFrame(b []byte) (m liveMsg, err error) {
	if len(b) < liveHeader {
		return m, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), liveHeader)
	}
	flags := b[8]
	switch {
	case flags&^(liveKey|liveEnd|liveUDP|liveH265) != 0 || flags&(liveEnd|liveUDP) == liveEnd|liveUDP,
		flags&liveH265 != 0 && flags&(liveEnd|liveUDP) != 0:
		return m, fmt.Errorf("unknown flags %#x", flags)
	case flags&liveEnd != 0:
		m.Ended = strings.ToValidUTF8(string(b[liveHeader:]), "\uFFFD")
		if m.Ended == "" {
			m.Ended = "the store ended the stream"
		}
		return m, nil
	case flags&liveUDP != 0:
		if len(b) != liveHeader+2 || binary.BigEndian.Uint16(b[liveHeader:]) == 0 {
			return m, errors.New("a datagram port that is no port")
		}
		m.UDP = binary.BigEndian.Uint16(b[liveHeader:])
		return m, nil
	case len(b) == liveHeader:
		return m, errors.New("an empty access unit")
	}
	m.Frame = h264.Frame{Time: time.Unix(0, int64(binary.BigEndian.Uint64(b))), Key: flags&liveKey != 0, Data: b[liveHeader:]}
	if flags&liveH265 != 0 {
		m.Frame.Codec = h264.CodecH265
	}
	return m, nil
}

// Result is what a live view did.
type Result struct {
	Camera string `json:"camera"`
	Store  string `json:"store"`
	Frames uint64 `json:"frames"`
	Bytes  int64  `json:"bytes"` // MPEG-TS written
	// Ended says why the store ended the stream ("" if the caller did).
	Ended string `json:"ended,omitempty"`
	// Datagrams says the frames came as datagrams; Lost counts the frames
	// given up there (missing too long, or waiting for a keyframe after
	// one), Asked the packets asked for again.
	Datagrams bool   `json:"datagrams,omitempty"`
	Lost      uint64 `json:"lost,omitempty"`
	Asked     uint64 `json:"asked,omitempty"`
}

// Options tune Viewer.Watch.
type Options struct {
	// OnFrame, if set, sees each frame as it arrives (before it is muxed),
	// for latency measurements. It must not keep f.Data.
	OnFrame func(f h264.Frame)
	// Stream asks for the frames on the QUIC stream, as stores that do not
	// send datagrams do, rather than as datagrams.
	Stream bool
}

// Stores finds and calls the store of a camera's site.
type Stores interface {
	// Call opens op with body q (JSON) on node target; the caller closes
	// the reader and the connection.
	Call(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, Conn, error)
}

// Conn is the mesh connection a call went over.
type Conn interface {
	io.Closer
	// RemoteAddr is the store's mesh address (WireGuard-authenticated).
	RemoteAddr() net.Addr
}

// Viewer is the viewer's side of live view.
type Viewer struct {
	Policy interface{ State() *policy.State }
	Stores Stores
	// Net, if set, is where the viewer opens its UDP socket for frames
	// sent as datagrams; nil takes them on the stream.
	Net interface {
		ListenUDP(port uint16) (net.PacketConn, error)
	}
}

// Watch watches camera from its site's store and writes MPEG-TS to out
// until ctx ends (a nil error), the store ends the stream (Ended says why)
// or something fails.
func (v *Viewer) Watch(ctx context.Context, camera string, out io.Writer, opts Options) (Result, error) {
	res := Result{Camera: camera}
	st := v.Policy.State()
	if st == nil {
		return res, errors.New("this node has no policy")
	}
	if st.Cameras[camera] == nil {
		return res, fmt.Errorf("no camera %q in the policy (want SITE/NAME)", camera)
	}
	store, err := st.StoreOf(camera, time.Now())
	if err != nil {
		return res, err
	}
	res.Store = store
	q := Query{Camera: camera}
	var pc net.PacketConn
	var tok token
	if v.Net != nil && !opts.Stream {
		if pc, err = v.Net.ListenUDP(0); err != nil {
			return res, fmt.Errorf("live view of %s: %w", camera, err)
		}
		defer pc.Close()
		rand.Read(tok[:])
		q.UDP, q.Token = udpAddrPort(pc.LocalAddr()).Port(), hex.EncodeToString(tok[:])
	}
	rd, conn, err := v.Stores.Call(ctx, st, res.Store, Op, q)
	var re *rpc.Error
	if q.UDP != 0 && errors.As(err, &re) && re.Code == rpc.BadRequest {
		// A store that knows no datagrams refuses the fields it does not
		// know; it serves the stream.
		q.UDP, q.Token = 0, ""
		rd, conn, err = v.Stores.Call(ctx, st, res.Store, Op, q)
	}
	if err != nil {
		if errors.As(err, &re) && re.Code == rpc.Denied {
			return res, re // the store's refusal, a sentence that names the camera
		}
		return res, fmt.Errorf("live view of %s: %w", camera, err)
	}
	defer conn.Close()
	defer rd.Close()
	emit := v.emitter(&res, out, opts)
	for {
		b, err := rd.Next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return res, nil
			}
			return res, fmt.Errorf("live view of %s: %w", camera, err)
		}
		m, err := parseLiveFrame(b)
		if err != nil {
			return res, fmt.Errorf("live view of %s: frame %d: %w", camera, res.Frames, err)
		}
		switch {
		case m.Ended != "":
			res.Ended = m.Ended
			return res, nil
		case m.UDP != 0:
			if pc == nil || res.Frames > 0 || res.Datagrams {
				return res, fmt.Errorf("live view of %s: the store offered datagrams it was not asked for", camera)
			}
			store := udpAddrPort(conn.RemoteAddr()).Addr()
			if !store.IsValid() {
				return res, fmt.Errorf("live view of %s: the store's address %v is not UDP", camera, conn.RemoteAddr())
			}
			res.Datagrams = true
			return v.watchDatagrams(ctx, rd, pc, netip.AddrPortFrom(store, m.UDP), tok, &res, emit)
		}
		if err := emit(m.Frame); err != nil {
			return res, err
		}
	}
}

// emitter muxes frames into MPEG-TS on out, counting them in res.
func (v *Viewer) emitter(res *Result, out io.Writer, opts Options) func(h264.Frame) error {
	var mux ts.Muxer
	buf := make([]byte, 0, 256<<10)
	flush, _ := out.(interface{ Flush() })
	return func(f h264.Frame) error {
		if opts.OnFrame != nil {
			opts.OnFrame(f)
		}
		if res.Frames == 0 {
			mux.SetCodec(f.Codec)
			buf = mux.AppendTables(buf[:0])
		} else {
			buf = buf[:0]
		}
		var err error
		if buf, err = mux.AppendFrame(buf, f); err != nil {
			return fmt.Errorf("live view of %s: frame %d: %w", res.Camera, res.Frames, err)
		}
		if _, err := out.Write(buf); err != nil {
			return fmt.Errorf("live view of %s: writing: %w", res.Camera, err)
		}
		if flush != nil {
			flush.Flush()
		}
		res.Frames++
		res.Bytes += int64(len(buf))
		return nil
	}
}

// dgTick is how often the viewer looks for packets to ask for again and
// frames to give up on when nothing arrives.
const dgTick = 5 * time.Millisecond

// pingEvery is how often the viewer measures the round trip to the store.
const pingEvery = 500 * time.Millisecond

// watchDatagrams takes the frames as datagrams from store while the
// stream stays open for the store's end.
func (v *Viewer) watchDatagrams(ctx context.Context, rd *rpc.Reader, pc net.PacketConn, store netip.AddrPort, tok token, res *Result, emit func(h264.Frame) error) (Result, error) {
	type end struct {
		ended string
		err   error
	}
	endc := make(chan end, 1)
	go func() {
		b, err := rd.Next()
		switch {
		case err == io.EOF:
			endc <- end{}
		case err != nil:
			endc <- end{err: err}
		default:
			m, err := parseLiveFrame(b)
			if err == nil && m.Ended == "" {
				err = errors.New("a frame on the stream of a view by datagrams")
			}
			endc <- end{ended: m.Ended, err: err}
		}
	}()
	dst := net.UDPAddrFromAddrPort(store)
	asm := newAssembler()
	buf := make([]byte, 2048)
	var lastPing, lastTick time.Time
	for {
		select {
		case e := <-endc:
			res.Lost, res.Ended = asm.lost, e.ended
			if e.err != nil && ctx.Err() == nil {
				return *res, fmt.Errorf("live view of %s: %w", res.Camera, e.err)
			}
			return *res, nil
		default:
		}
		if ctx.Err() != nil {
			res.Lost = asm.lost
			return *res, nil
		}
		pc.SetReadDeadline(time.Now().Add(dgTick))
		n, from, err := pc.ReadFrom(buf)
		now := time.Now()
		if err == nil && udpAddrPort(from) == store {
			if d, err := parseDatagram(buf[:n]); err == nil && d.tok == tok {
				switch d.typ {
				case dgData:
					asm.add(d, now)
				case dgPong:
					asm.sample(now.Sub(time.Unix(0, d.time)))
				}
			}
		} else if err != nil && !isTimeout(err) {
			return *res, fmt.Errorf("live view of %s: %w", res.Camera, err)
		}
		for _, f := range asm.pop(now) {
			if err := emit(h264.Frame{Time: time.Unix(0, f.time), Key: f.key, Data: f.data, Codec: f.codec}); err != nil {
				return *res, err
			}
		}
		if now.Sub(lastTick) >= dgTick {
			lastTick = now
			seqs := asm.nacks(now)
			res.Asked += uint64(len(seqs))
			for _, b := range appendNacks(tok, seqs) {
				// Twice: a lost NACK costs a round trip of the frame's
				// half second, a second copy some bytes.
				pc.WriteTo(b, dst)
				pc.WriteTo(b, dst)
			}
			if now.Sub(lastPing) >= pingEvery {
				lastPing = now
				b := appendCommon(make([]byte, 0, dgCommon+8), dgPing, 0, tok)
				pc.WriteTo(binary.BigEndian.AppendUint64(b, uint64(now.UnixNano())), dst)
			}
		}
	}
}

// liveHTTP adapts the API's response to Viewer.Watch: the status line is sent
// with the first bytes, so an error before any frame is still an HTTP
// error, and what happened after is said in trailers.
type liveHTTP struct {
	w       http.ResponseWriter
	started bool
}

// The trailers of the local API's live stream: why the store ended it, and
// what failed after the first bytes.
const (
	TrailerEnded = "Custos-Live-Ended"
	TrailerError = "Custos-Live-Error"
)

func (l *liveHTTP) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "video/mp2t")
		l.w.Header().Set("Trailer", TrailerEnded+", "+TrailerError)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (l *liveHTTP) Flush() { http.NewResponseController(l.w).Flush() }

// ServeAPI serves the local API's POST /v1/live: body Query, answer
// MPEG-TS with the trailers above.
func (v *Viewer) ServeAPI(w http.ResponseWriter, r *http.Request) {
	var q Query
	if err := rpc.DecodeStrict(mustRead(r.Body, 4<<10), &q); err != nil {
		http.Error(w, "want {camera}", http.StatusBadRequest)
		return
	}
	lw := &liveHTTP{w: w}
	res, err := v.Watch(r.Context(), q.Camera, lw, Options{})
	if !lw.started {
		if err == nil && res.Ended != "" {
			err = errors.New(res.Ended)
		}
		if err != nil {
			// A refusal by the store's policy is the viewer's to act on
			// (custos live exits 4), not a failure of the node.
			code := http.StatusBadGateway
			var re *rpc.Error
			if res.Ended != "" || errors.As(err, &re) && re.Code == rpc.Denied {
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return
		}
		lw.Write(nil)
	}
	w.Header().Set(TrailerEnded, res.Ended)
	if err != nil {
		w.Header().Set(TrailerError, err.Error())
	}
}

func mustRead(r io.Reader, max int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, max))
	return b
}
