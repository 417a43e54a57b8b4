package node

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
//	                 stream, and the payload is the reason (UTF-8)
//	data   [...]     one H.264 access unit (Annex-B)

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

const opLive = "live"

const (
	liveKey = 1 << 0
	liveEnd = 1 << 7

	liveHeader = 9
	// liveRecheck is how often a running stream's grant is checked
	// besides on every policy change (invariant 5 asks for ≤ 10 s; window
	// ends must cut within 2 s).
	liveRecheck = time.Second
	// liveRehub is how long a viewer waits for its camera's recorder to
	// come back (a restart after a source or key change) before ending.
	liveRehub = 10 * time.Second
)

type liveQuery struct {
	Camera string `json:"camera"`
}

// handleLive serves one viewer until the grant ends, the viewer goes, or
// the camera stops recording here.
func (n *Node) handleLive(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q liveQuery
	if err := strictJSON(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {camera}: " + err.Error()}
	}
	st := n.policy.State()
	caller, err := n.callerName(st, peer)
	if err != nil {
		return err
	}
	actor := "node:" + caller
	if n.rec == nil {
		return denied("this node is not a store and serves no live view")
	}
	subj := policy.Subject{Kind: "node", Name: caller}
	d := policy.Authorize(st, subj, policy.ActLive, q.Camera, time.Now())
	if !d.Allow {
		n.auditEvent(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Deny, Reason: d.Reason})
		return denied("live view of %s: %s", q.Camera, d.Reason)
	}
	hub := n.rec.liveHub(q.Camera)
	if hub == nil {
		return &rpc.Error{Code: rpc.Unavailable, Message: fmt.Sprintf("camera %s is not recording on this store now", q.Camera)}
	}
	if err := n.auditReady(actor, "live-view", q.Camera); err != nil {
		return err
	}
	began := time.Now()
	n.auditEvent(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Allow, Reason: "start; " + d.Reason})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var ended string // why the store ends the stream; "" while it runs
	go func() {
		t := time.NewTicker(liveRecheck)
		defer t.Stop()
		for {
			changed := n.policy.Changed()
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-t.C:
			}
			if d := policy.Authorize(n.policy.State(), subj, policy.ActLive, q.Camera, time.Now()); !d.Allow {
				mu.Lock()
				ended = "access ended: " + d.Reason
				mu.Unlock()
				cancel()
				return
			}
		}
	}()

	frames, skipped, err := n.streamLive(ctx, hub, q.Camera, w)
	mu.Lock()
	why := ended
	mu.Unlock()
	if why == "" && err != nil && !errors.Is(err, context.Canceled) {
		why = err.Error()
	}
	detail := fmt.Sprintf("end; watched %s to %s (%s), %d frames, %d skipped for a slow link", stamp(began), stamp(time.Now()), time.Since(began).Round(time.Millisecond), frames, skipped)
	if why != "" {
		detail += "; " + why
	} else {
		detail += "; the viewer left"
	}
	n.auditEvent(audit.Event{Actor: actor, Action: "live-view", Object: q.Camera, Decision: audit.Allow, Reason: detail})
	if why == "" {
		return err
	}
	end := make([]byte, liveHeader, liveHeader+len(why))
	end[8] = liveEnd
	return w.WriteFrame(append(end, why...))
}

// streamLive copies frames from camera's ring to w until ctx ends, following
// the camera to a new ring when its recorder restarts.
func (n *Node) streamLive(ctx context.Context, hub *media.Live, camera string, w *rpc.Writer) (frames, skipped uint64, err error) {
	buf := make([]byte, 0, 256<<10)
	for {
		v, err := hub.Subscribe()
		if err != nil {
			return frames, skipped, err
		}
		for {
			f, err := v.Next(ctx)
			if err != nil {
				s := v.Stats()
				skipped += s.Skipped
				v.Close()
				if !errors.Is(err, media.ErrLiveClosed) {
					return frames, skipped, err
				}
				break
			}
			buf = append(buf[:0], make([]byte, liveHeader)...)
			binary.BigEndian.PutUint64(buf, uint64(f.Time.UnixNano()))
			if f.Key {
				buf[8] = liveKey
			}
			buf = append(buf, f.Data...)
			if err := w.WriteFrame(buf); err != nil {
				s := v.Stats()
				v.Close()
				return frames, skipped + s.Skipped, err
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
			hub = n.rec.liveHub(camera)
		}
	}
}

// parseLiveFrame reads one frame of a live stream: an access unit, or the
// store's end with its reason (ended != "").
func parseLiveFrame(b []byte) (f h264.Frame, ended string, err error) {
	if len(b) < liveHeader {
		return f, "", fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), liveHeader)
	}
	flags := b[8]
	if flags&^(liveKey|liveEnd) != 0 {
		return f, "", fmt.Errorf("unknown flags %#x", flags)
	}
	if flags&liveEnd != 0 {
		ended = strings.ToValidUTF8(string(b[liveHeader:]), "\uFFFD")
		if ended == "" {
			ended = "the store ended the stream"
		}
		return f, ended, nil
	}
	if len(b) == liveHeader {
		return f, "", errors.New("an empty access unit")
	}
	return h264.Frame{Time: time.Unix(0, int64(binary.BigEndian.Uint64(b))), Key: flags&liveKey != 0, Data: b[liveHeader:]}, "", nil
}

// LiveResult is what a live view did.
type LiveResult struct {
	Camera string `json:"camera"`
	Store  string `json:"store"`
	Frames uint64 `json:"frames"`
	Bytes  int64  `json:"bytes"` // MPEG-TS written
	// Ended says why the store ended the stream ("" if the caller did).
	Ended string `json:"ended,omitempty"`
}

// LiveOptions tune Node.Live.
type LiveOptions struct {
	// OnFrame, if set, sees each frame as it arrives (before it is muxed),
	// for latency measurements. It must not keep f.Data.
	OnFrame func(f h264.Frame)
}

// Live watches camera from its site's store and writes MPEG-TS to out until
// ctx ends (a nil error), the store ends the stream (Ended says why) or
// something fails.
func (n *Node) Live(ctx context.Context, camera string, out io.Writer, opts LiveOptions) (LiveResult, error) {
	res := LiveResult{Camera: camera}
	st := n.policy.State()
	if st == nil {
		return res, errors.New("this node has no policy")
	}
	if st.Cameras[camera] == nil {
		return res, fmt.Errorf("no camera %q in the policy (want SITE/NAME)", camera)
	}
	store, err := storeOf(st, camera)
	if err != nil {
		return res, err
	}
	res.Store = store
	rd, conn, err := n.callNode(ctx, st, res.Store, opLive, liveQuery{Camera: camera})
	if err != nil {
		return res, fmt.Errorf("live view of %s: %w", camera, err)
	}
	defer conn.Close()
	defer rd.Close()
	var mux ts.Muxer
	buf := make([]byte, 0, 256<<10)
	flush, _ := out.(interface{ Flush() })
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
		f, ended, err := parseLiveFrame(b)
		if err != nil {
			return res, fmt.Errorf("live view of %s: frame %d: %w", camera, res.Frames, err)
		}
		if ended != "" {
			res.Ended = ended
			return res, nil
		}
		if opts.OnFrame != nil {
			opts.OnFrame(f)
		}
		if res.Frames == 0 {
			buf = mux.AppendTables(buf[:0])
		} else {
			buf = buf[:0]
		}
		if buf, err = mux.AppendFrame(buf, f); err != nil {
			return res, fmt.Errorf("live view of %s: frame %d: %w", camera, res.Frames, err)
		}
		if _, err := out.Write(buf); err != nil {
			return res, fmt.Errorf("live view of %s: writing: %w", camera, err)
		}
		if flush != nil {
			flush.Flush()
		}
		res.Frames++
		res.Bytes += int64(len(buf))
	}
}

// liveHTTP adapts the API's response to Node.Live: the status line is sent
// with the first bytes, so an error before any frame is still an HTTP
// error, and what happened after is said in trailers.
type liveHTTP struct {
	w       http.ResponseWriter
	started bool
}

const (
	trailerEnded = "Custos-Live-Ended"
	trailerError = "Custos-Live-Error"
)

func (l *liveHTTP) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "video/mp2t")
		l.w.Header().Set("Trailer", trailerEnded+", "+trailerError)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (l *liveHTTP) Flush() { http.NewResponseController(l.w).Flush() }

func (n *Node) serveLiveAPI(w http.ResponseWriter, r *http.Request) {
	var q liveQuery
	if err := strictJSON(mustRead(r.Body, 4<<10), &q); err != nil {
		http.Error(w, "want {camera}", http.StatusBadRequest)
		return
	}
	lw := &liveHTTP{w: w}
	res, err := n.Live(r.Context(), q.Camera, lw, LiveOptions{})
	if !lw.started {
		if err == nil && res.Ended != "" {
			err = errors.New(res.Ended)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		lw.Write(nil)
	}
	w.Header().Set(trailerEnded, res.Ended)
	if err != nil {
		w.Header().Set(trailerError, err.Error())
	}
}

func mustRead(r io.Reader, max int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, max))
	return b
}

// LiveVia watches camera through the node running in dir, writing MPEG-TS
// to out until ctx ends (nil error) or the stream ends (LiveResult.Ended
// says why the store ended it).
func LiveVia(ctx context.Context, dir, camera string, out io.Writer) (LiveResult, error) {
	res := LiveResult{Camera: camera}
	body, _ := json.Marshal(liveQuery{Camera: camera})
	resp, err := apiRequest(ctx, dir, "POST", "/v1/live", body)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(out, resp.Body)
	res.Bytes = n
	if ctx.Err() != nil {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("live view of %s: %w", camera, err)
	}
	res.Ended = resp.Trailer.Get(trailerEnded)
	if e := resp.Trailer.Get(trailerError); e != "" {
		return res, errors.New(e)
	}
	return res, nil
}
