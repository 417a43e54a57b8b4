package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/custos-cctv/custos/node/console/rtc"
)

// Live view in the browser: the page offers a WebRTC connection per tile
// (POST /live/offer), the console answers with a peer that carries the
// camera's H.264 as the node's live view delivers it (node.LiveVia, the
// same grants as custos live), and the page polls each tile's state to
// show why a stream ended (a grant revoked, an H.265 camera).

const (
	maxTiles       = 9  // per page, and live peers per session
	maxLivePeers   = 32 // per console
	liveStateKeep  = 2 * time.Minute
	maxOfferBody   = 64 << 10
	liveTileIDSize = 16
)

// livePeer is one tile's stream.
type livePeer struct {
	id, camera string
	cancel     context.CancelFunc
	mu         sync.Mutex
	state      string // connecting, playing, ended
	err        string
	ended      time.Time
	peer       *rtc.Peer
}

func (l *livePeer) set(state, err string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state, l.err = state, err
	if state == "ended" {
		l.ended = time.Now()
	}
}

type liveState struct {
	State  string    `json:"state"`
	Error  string    `json:"error,omitempty"`
	Frames uint64    `json:"frames"`
	Since  time.Time `json:"since,omitzero"`
}

func (p *pages) livePage(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	cams := r.URL.Query()["camera"]
	if len(cams) == 0 || len(cams) > maxTiles {
		p.fail(w, http.StatusBadRequest, ss, fmt.Errorf("choose 1 to %d cameras", maxTiles))
		return
	}
	for _, c := range cams {
		if pol.Cameras[c] == nil {
			p.fail(w, http.StatusNotFound, ss, fmt.Errorf("no camera %q in the policy", c))
			return
		}
	}
	p.render(w, http.StatusOK, "live", ss, ss.lang, slices.Compact(slices.Sorted(slices.Values(cams))))
}

// liveOffer answers a tile's WebRTC offer and starts its stream.
func (p *pages) liveOffer(w http.ResponseWriter, r *http.Request, ss *session) {
	var q struct {
		Camera string `json:"camera"`
		SDP    string `json:"sdp"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxOfferBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil || q.Camera == "" || q.SDP == "" {
		http.Error(w, "want {camera, sdp}", http.StatusBadRequest)
		return
	}
	pol, err := p.policyOf(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if pol.Cameras[q.Camera] == nil {
		http.Error(w, fmt.Sprintf("no camera %q in the policy", q.Camera), http.StatusNotFound)
		return
	}
	l, answer, err := p.s.startLive(ss, q.Camera, q.SDP)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooManyLive) {
			status = http.StatusTooManyRequests
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		ID  string `json:"id"`
		SDP string `json:"sdp"`
	}{l.id, answer})
}

var errTooManyLive = errors.New("too many live views open: close a tile first")

// startLive makes the peer, answers, and runs the stream until the browser
// goes, the store ends it, or the session ends.
func (s *Server) startLive(ss *session, camera, offer string) (*livePeer, string, error) {
	s.mu.Lock()
	open, total := 0, 0
	for _, x := range s.sessions {
		for _, l := range x.live {
			l.mu.Lock()
			if l.state != "ended" {
				total++
				if x == ss {
					open++
				}
			}
			l.mu.Unlock()
		}
	}
	s.mu.Unlock()
	if open >= maxTiles || total >= maxLivePeers {
		return nil, "", errTooManyLive
	}
	peer, err := rtc.New(rtc.Config{})
	if err != nil {
		return nil, "", err
	}
	answer, err := peer.Answer(offer)
	if err != nil {
		peer.Close()
		return nil, "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &livePeer{id: randomToken()[:liveTileIDSize], camera: camera, cancel: cancel, state: "connecting", peer: peer}
	s.mu.Lock()
	ss.live = append(ss.live, l)
	s.mu.Unlock()
	go func() {
		defer cancel()
		defer peer.Close()
		pr, pw := io.Pipe()
		viaErr := make(chan error, 1)
		go func() {
			res, err := s.cfg.liveVia(ctx, s.cfg.Dir, camera, pw)
			if err == nil && res.Ended != "" {
				err = errors.New("the store ended the stream: " + res.Ended)
			}
			viaErr <- err
			pw.CloseWithError(cmpErr(err, io.EOF))
		}()
		l.set("playing", "")
		err := peer.Feed(ctx, pr)
		pr.Close()
		// Why the node's stream ended says more to the viewer than the
		// demuxer's read error it caused.
		select {
		case verr := <-viaErr:
			if verr != nil && !errors.Is(err, rtc.ErrNotPlayable) {
				err = verr
			}
		default:
		}
		msg := ""
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, rtc.ErrClosed) {
			msg = err.Error()
		}
		if msg != "" {
			s.cfg.Logf("console: live view of %s ended: %s", camera, msg)
		}
		l.set("ended", msg)
	}()
	return l, answer, nil
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// liveStatus tells a tile how its stream is.
func (p *pages) liveStatus(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	p.s.mu.Lock()
	var l *livePeer
	for _, x := range ss.live {
		if x.id == id {
			l = x
		}
	}
	p.s.mu.Unlock()
	if l == nil {
		http.Error(w, "no such tile in this session", http.StatusNotFound)
		return
	}
	l.mu.Lock()
	st := liveState{State: l.state, Error: l.err, Frames: l.peer.Stats().Frames, Since: l.ended}
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}
