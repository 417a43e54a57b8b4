package live

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

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

// Result is what a live view did.
type Result struct {
	Camera string `json:"camera"`
	Store  string `json:"store"`
	Frames uint64 `json:"frames"`
	Bytes  int64  `json:"bytes"` // MPEG-TS written
	// Ended says why the store ended the stream ("" if the caller did).
	Ended string `json:"ended,omitempty"`
}

// Options tune Viewer.Watch.
type Options struct {
	// OnFrame, if set, sees each frame as it arrives (before it is muxed),
	// for latency measurements. It must not keep f.Data.
	OnFrame func(f h264.Frame)
}

// Stores finds and calls the store of a camera's site.
type Stores interface {
	// Call opens op with body q (JSON) on node target; the caller closes
	// the reader and the connection.
	Call(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, io.Closer, error)
}

// Viewer is the viewer's side of live view.
type Viewer struct {
	Policy interface{ State() *policy.State }
	Stores Stores
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
	rd, conn, err := v.Stores.Call(ctx, st, res.Store, Op, Query{Camera: camera})
	if err != nil {
		var re *rpc.Error
		if errors.As(err, &re) && re.Code == rpc.Denied {
			return res, re // the store's refusal, a sentence that names the camera
		}
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
