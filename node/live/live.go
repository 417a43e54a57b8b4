// Package live owns live view (DESIGN §8, §4 invariant 5): the store's
// side of op "live", which decides per viewer and per second whether frames
// may move, and the viewer's side, which muxes them into MPEG-TS for a
// local caller (also over the local API). It never decides who is who: the
// caller's name, the policy, the audit journal and the cameras' rings come
// from the node behind interfaces declared here, and it never records or
// re-encodes anything.
package live

// Live view (DESIGN §8, §4 invariant 5). The store of the camera's site
// serves op "live" to a viewer node: policy.Authorize must allow the viewer
// live on the camera before a frame moves; the viewer then gets the latest
// keyframe from the camera's GOP ring (media.Live) and live frames, one
// shared copy fanned out to every viewer. The grant is checked again on
// every policy change and every second by the store's own clock, so a
// revocation or the end of a window cuts the stream within 2 s, also on a
// store cut off from consensus. Start and end are audited, with who, what
// and from when to when. The viewer's node muxes the frames into MPEG-TS for
// the local caller; nothing is re-encoded anywhere.
//
// Stream, after an OK status: data frames of
//
//	time   int64     capture time, Unix nanoseconds
//	flags  uint8     liveKey: a keyframe; liveEnd: the store ended the
//	                 stream, and the payload is the reason (UTF-8);
//	                 liveUDP: the frames come as datagrams (datagram.go)
//	                 from the store's mesh UDP port, the payload (u16);
//	                 liveH265: the access unit is H.265, else H.264
//	data   [...]     one access unit (Annex-B)
//
// A viewer that offers a UDP port and a token in its query gets the
// frames as datagrams: the stream then carries liveUDP first and the end
// last, nothing between.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Op is the node-service op of live view.
const Op = "live"

const (
	liveKey = 1 << 0
	liveUDP = 1 << 1
	// liveH265 marks an H.265 frame. A viewer that predates it refuses
	// the flag as unknown rather than mux H.265 as H.264.
	liveH265 = 1 << 2
	liveEnd  = 1 << 7

	liveHeader = 9
	// liveRecheck is how often a running stream's grant is checked
	// besides on every policy change (invariant 5 asks for ≤ 10 s; window
	// ends must cut within 2 s).
	liveRecheck = time.Second
	// liveRehub is how long a viewer waits for its camera's recorder to
	// come back (a restart after a source or key change) before ending.
	liveRehub = 10 * time.Second
)

// Query is the body of op "live" and of the local API's POST /v1/live.
type Query struct {
	Camera string `json:"camera"`
	// UDP and Token, if set, ask for the frames as datagrams to this mesh
	// UDP port of the viewer, under this token (16 hex digits).
	UDP   uint16 `json:"udp,omitempty"`
	Token string `json:"token,omitempty"`
}

// Net is the node's mesh, for live view over datagrams.
type Net interface {
	// ListenUDP opens a UDP socket on this node's mesh address (0: any port).
	ListenUDP(port uint16) (net.PacketConn, error)
	// AddrOf is a node's mesh address.
	AddrOf(keys.NodePublic) netip.Addr
}

// Policy is the node's replica of the policy.
type Policy interface {
	State() *policy.State
	// Changed is closed at the next change of State.
	Changed() <-chan struct{}
}

// Auditor is the node's audit journal.
type Auditor interface {
	Event(audit.Event)
	// Ready refuses an access while the journal cannot record it.
	Ready(actor, action, object string) error
}

// Hubs finds a camera's live-view ring: nil if it does not record here now.
type Hubs interface {
	LiveHub(camera string) *media.Live
}

// Server is the store's side of live view.
type Server struct {
	Policy Policy
	Audit  Auditor
	// Caller is the live member peer is in st, or an rpc denial.
	Caller func(st *policy.State, peer keys.NodePublic) (string, error)
	// Hubs are the store's recorders; nil on a node that is no store.
	Hubs Hubs
	// Sync, if set, is a linearizable read of the policy. The store asks
	// for it before it refuses, so a grant or member committed a moment ago
	// through another node is not refused for the lag of this replica.
	Sync func(ctx context.Context) (*policy.State, error)
	// Net, if set, lets a viewer have the frames as datagrams.
	Net Net
	// Cut, if set, is called for each view ended because its access ended
	// (a revoked grant or member, a window past its end).
	Cut func()
	// Now, if set, is the clock of every decision (the node's trusted
	// clock: it never runs behind the leader's); nil: time.Now.
	Now func() time.Time
	// Fresh, if set, refuses a new view while this node's clock cannot be
	// trusted; views already running still end by Now.
	Fresh func() error
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// syncTimeout bounds the read a refusal waits for.
const syncTimeout = 5 * time.Second

// authorize is the caller's name and the decision on its live view of
// camera, on the replica as it is, and if that refuses, once more after a
// linearizable read.
func (s *Server) authorize(ctx context.Context, peer keys.NodePublic, camera string) (string, policy.Decision, *policy.State, error) {
	decide := func(st *policy.State) (string, policy.Decision, *policy.State, error) {
		caller, err := s.Caller(st, peer)
		if err != nil {
			return "", policy.Decision{}, st, err
		}
		return caller, policy.Authorize(st, policy.Subject{Kind: "node", Name: caller}, policy.ActLive, camera, s.now()), st, nil
	}
	caller, d, st, err := decide(s.Policy.State())
	if (err == nil && d.Allow) || s.Sync == nil {
		return caller, d, st, err
	}
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	synced, serr := s.Sync(sctx)
	if serr != nil {
		return caller, d, st, err // the refusal stands on the replica this node has
	}
	return decide(synced)
}

// current is the policy a running stream is checked against: the replica,
// once it has caught up with the state the stream was allowed on (a
// linearizable read may have run ahead of it), else that state. Either is
// checked at the present time, so windows end on time.
func (s *Server) current(decidedOn *policy.State) *policy.State {
	if st := s.Policy.State(); st.Applied >= decidedOn.Applied {
		return st
	}
	return decidedOn
}

// Handle serves one viewer until the grant ends, the viewer goes, or the
// camera stops recording here.
func (s *Server) Handle(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q Query
	if err := rpc.DecodeStrict(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {camera}: " + err.Error()}
	}
	var tok token
	if q.UDP != 0 || q.Token != "" {
		if b, err := hex.DecodeString(q.Token); err != nil || len(b) != len(tok) || q.UDP == 0 {
			return &rpc.Error{Code: rpc.BadRequest, Message: "want a UDP port and a token of 16 hex digits, or neither"}
		}
		hex.Decode(tok[:], []byte(q.Token))
	}
	caller, d, decidedOn, err := s.authorize(ctx, peer, q.Camera)
	if err != nil {
		return err
	}
	actor := "node:" + caller
	if s.Hubs == nil {
		return rpc.Deny("this node is not a store and serves no live view")
	}
	subj := policy.Subject{Kind: "node", Name: caller}
	if !d.Allow {
		s.Audit.Event(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Deny, Reason: d.Reason})
		return rpc.Deny("live view of %s: %s", q.Camera, d.Reason)
	}
	if s.Fresh != nil {
		if err := s.Fresh(); err != nil {
			s.Audit.Event(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Deny, Reason: err.Error()})
			return rpc.Deny("live view of %s: %v", q.Camera, err)
		}
	}
	hub := s.Hubs.LiveHub(q.Camera)
	if hub == nil {
		return &rpc.Error{Code: rpc.Unavailable, Message: fmt.Sprintf("camera %s is not recording on this store now", q.Camera)}
	}
	if err := s.Audit.Ready(actor, "live-view", q.Camera); err != nil {
		return err
	}
	began := time.Now()
	s.Audit.Event(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Allow, Reason: "start; " + d.Reason})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var ended string // why the store ends the stream; "" while it runs
	go func() {
		t := time.NewTicker(liveRecheck)
		defer t.Stop()
		for {
			changed := s.Policy.Changed()
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-t.C:
			}
			if d := policy.Authorize(s.current(decidedOn), subj, policy.ActLive, q.Camera, s.now()); !d.Allow {
				mu.Lock()
				ended = "access ended: " + d.Reason
				mu.Unlock()
				cancel()
				if s.Cut != nil {
					s.Cut()
				}
				return
			}
		}
	}()

	var frames, skipped, resent uint64
	if q.UDP != 0 && s.Net != nil {
		frames, skipped, resent, err = s.datagrams(ctx, hub, q.Camera, w, netip.AddrPortFrom(s.Net.AddrOf(peer), q.UDP), tok)
	} else {
		buf := make([]byte, 0, 256<<10)
		frames, skipped, err = s.stream(ctx, hub, q.Camera, func(f h264.Frame) error {
			buf = append(buf[:0], make([]byte, liveHeader)...)
			binary.BigEndian.PutUint64(buf, uint64(f.Time.UnixNano()))
			if f.Key {
				buf[8] = liveKey
			}
			if f.Codec == h264.CodecH265 {
				buf[8] |= liveH265
			}
			return w.WriteFrame(append(buf, f.Data...))
		})
	}
	mu.Lock()
	why := ended
	mu.Unlock()
	if why == "" && err != nil && !errors.Is(err, context.Canceled) {
		why = err.Error()
	}
	detail := fmt.Sprintf("end; watched %s to %s (%s), %d frames, %d skipped for a slow link", stamp(began), stamp(time.Now()), time.Since(began).Round(time.Millisecond), frames, skipped)
	if q.UDP != 0 && s.Net != nil {
		detail += fmt.Sprintf(", as datagrams (%d resent)", resent)
	}
	if why != "" {
		detail += "; " + why
	} else {
		detail += "; the viewer left"
	}
	s.Audit.Event(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Allow, Reason: detail})
	if why == "" {
		return err
	}
	end := make([]byte, liveHeader, liveHeader+len(why))
	end[8] = liveEnd
	return w.WriteFrame(append(end, why...))
}

// datagrams serves the frames as datagrams to the viewer's port to:
// the stream says which port they come from, and nothing more until the end.
func (s *Server) datagrams(ctx context.Context, hub *media.Live, camera string, w *rpc.Writer, to netip.AddrPort, tok token) (frames, skipped, resent uint64, err error) {
	pc, err := s.Net.ListenUDP(0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("live view: %w", err)
	}
	snd := newSender(pc, to, tok)
	done := make(chan struct{})
	go func() { defer close(done); snd.serve() }()
	defer func() { snd.stop(); <-done }()
	port := udpAddrPort(pc.LocalAddr()).Port()
	first := make([]byte, liveHeader, liveHeader+2)
	first[8] = liveUDP
	if err := w.WriteFrame(binary.BigEndian.AppendUint16(first, port)); err != nil {
		return 0, 0, 0, err
	}
	frames, skipped, err = s.stream(ctx, hub, camera, func(f h264.Frame) error {
		return snd.send(f.Time, f.Key, time.Since(f.Time) > oldAfter, f.Data, f.Codec)
	})
	return frames, skipped, snd.resends(), err
}

// stream hands frames from camera's ring to send until ctx ends, following
// the camera to a new ring when its recorder restarts.
func (s *Server) stream(ctx context.Context, hub *media.Live, camera string, send func(h264.Frame) error) (frames, skipped uint64, err error) {
	for {
		v, err := hub.Subscribe()
		if err != nil {
			return frames, skipped, err
		}
		for {
			f, err := v.Next(ctx)
			if err != nil {
				vs := v.Stats()
				skipped += vs.Skipped
				v.Close()
				if !errors.Is(err, media.ErrLiveClosed) {
					return frames, skipped, err
				}
				break
			}
			if err := send(f); err != nil {
				vs := v.Stats()
				v.Close()
				return frames, skipped + vs.Skipped, err
			}
			frames++
		}
		// The ring closed: the recorder stopped. Wait for it to come back.
		hub = nil
		deadline := time.Now().Add(liveRehub)
		for hub == nil {
			if time.Now().After(deadline) {
				return frames, skipped, fmt.Errorf("camera %s stopped recording on this store", camera)
			}
			select {
			case <-ctx.Done():
				return frames, skipped, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			hub = s.Hubs.LiveHub(camera)
		}
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
