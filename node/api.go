package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// The local API is HTTP on a unix socket (mode 0600) in the data directory:
// only the node's owner can reach it, and no TCP port is opened for it.
type apiServer struct {
	ln  net.Listener
	srv *http.Server
}

func startAPI(path string, n *Node) (*apiServer, error) {
	ln, err := listenPrivate(path)
	if err != nil {
		if errors.Is(err, errSocketInUse) {
			return nil, fmt.Errorf("node: another node is already running in %s", n.cfg.Dir)
		}
		return nil, fmt.Errorf("node: api socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := n.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				http.Error(w, "since: want RFC 3339 time", http.StatusBadRequest)
				return
			}
			since = t
		}
		entries, err := n.Audit(since)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, entries)
	})
	mux.HandleFunc("GET /v1/audit/verify", func(w http.ResponseWriter, r *http.Request) {
		rep, err := n.VerifyAudit()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, rep)
	})
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		st := n.Policy()
		if st == nil {
			http.Error(w, "this node runs from a static peers file, not a replicated policy", http.StatusConflict)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /v1/submit", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, policy.MaxEnvelope+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		env, err := policy.DecodeEnvelope(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := n.Submit(r.Context(), env)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("POST /v1/camera-secret", func(w http.ResponseWriter, r *http.Request) {
		var req cameraSecretRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 8<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "want {camera, user, password}", http.StatusBadRequest)
			return
		}
		if err := n.SetCameraSecret(req.Camera, recording.CameraSecret{User: req.User, Password: req.Password}); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, struct{}{})
	})
	mux.HandleFunc("POST /v1/release-key", func(w http.ResponseWriter, r *http.Request) {
		pub, err := n.NewReleaseKey()
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, releaseKeyAnswer{Key: pub})
	})
	mux.HandleFunc("POST /v1/live", n.liveViewer().ServeAPI)
	mux.HandleFunc("POST /v1/export", func(w http.ResponseWriter, r *http.Request) {
		var req release.ExportRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 8<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "want {request, out, exporter}", http.StatusBadRequest)
			return
		}
		res, err := n.Export(r.Context(), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("POST /v1/recover-records", func(w http.ResponseWriter, r *http.Request) {
		var req recoverBody
		if err := decodeAPI(r, 4<<10, &req); err != nil {
			http.Error(w, "want {request}", http.StatusBadRequest)
			return
		}
		recs, err := n.RecoverRecords(r.Context(), req.Request)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, recoverAnswer{Records: recs})
	})
	mux.HandleFunc("POST /v1/recovered-shares", func(w http.ResponseWriter, r *http.Request) {
		var req recoveredBody
		if err := decodeAPI(r, 4*release.MaxRecoveredShares*release.MaxSealedShare/3, &req); err != nil {
			http.Error(w, "want {request, shares}", http.StatusBadRequest)
			return
		}
		epochs, err := n.AddRecoveredShares(req.Request, req.Shares)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, struct {
			Epochs int `json:"epochs"`
		}{epochs})
	})
	a := &apiServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
}

// decodeAPI decodes a local API body of at most limit bytes strictly.
func decodeAPI(r *http.Request, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		return errors.New("body too large")
	}
	return strictJSON(b, v)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// ErrNotRunning means no node answers in the data directory.
var ErrNotRunning = errors.New("no node is running there")

// FetchStatus asks the node running in dir for its status.
func FetchStatus(ctx context.Context, dir string) (Status, error) {
	var st Status
	return st, apiGet(ctx, dir, "/v1/status", &st)
}

// FetchAudit asks the node running in dir for its audit entries since t.
func FetchAudit(ctx context.Context, dir string, since time.Time) ([]audit.Entry, error) {
	var es []audit.Entry
	path := "/v1/audit"
	if !since.IsZero() {
		path += "?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))
	}
	return es, apiGet(ctx, dir, path, &es)
}

// VerifyAuditIn checks the audit journal in dir: through the running node
// if there is one, else directly on the files.
func VerifyAuditIn(ctx context.Context, dir string) (audit.Report, error) {
	var rep audit.Report
	err := apiGet(ctx, dir, "/v1/audit/verify", &rep)
	if errors.Is(err, ErrNotRunning) {
		return audit.Verify(dir)
	}
	return rep, err
}

// FetchPolicy asks the node running in dir for its replica of the policy.
func FetchPolicy(ctx context.Context, dir string) (*policy.State, error) {
	var st policy.State
	if err := apiDo(ctx, dir, "GET", "/v1/policy", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

type cameraSecretRequest struct {
	Camera   string `json:"camera"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// SetCameraSecretVia hands a camera's credentials to the store running in
// dir, which keeps them in its data directory only.
func SetCameraSecretVia(ctx context.Context, dir, camera string, s recording.CameraSecret) error {
	b, _ := json.Marshal(cameraSecretRequest{Camera: camera, User: s.User, Password: s.Password})
	defer clear(b)
	return apiDo(ctx, dir, "POST", "/v1/camera-secret", b, nil)
}

// LiveVia watches camera through the node running in dir, writing MPEG-TS
// to out until ctx ends (nil error) or the stream ends (live.Result.Ended
// says why the store ended it).
func LiveVia(ctx context.Context, dir, camera string, out io.Writer) (live.Result, error) {
	res := live.Result{Camera: camera}
	body, _ := json.Marshal(live.Query{Camera: camera})
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
	res.Ended = resp.Trailer.Get(live.TrailerEnded)
	if e := resp.Trailer.Get(live.TrailerError); e != "" {
		return res, errors.New(e)
	}
	return res, nil
}

// releaseKeyAnswer is the answer of POST /v1/release-key: the public half
// only; the private half never leaves the node's memory.
type releaseKeyAnswer struct {
	Key string `json:"key"`
}

// NewReleaseKeyVia has the node running in dir make a one-time release key
// and returns its public half (hex), for a request to carry.
func NewReleaseKeyVia(ctx context.Context, dir string) (string, error) {
	var a releaseKeyAnswer
	return a.Key, apiDo(ctx, dir, "POST", "/v1/release-key", []byte("{}"), &a)
}

// ExportVia has the node running in dir export a request's footage.
func ExportVia(ctx context.Context, dir string, req release.ExportRequest) (release.ExportResult, error) {
	var res release.ExportResult
	b, _ := json.Marshal(req)
	return res, apiDo(ctx, dir, "POST", "/v1/export", b, &res)
}

// recoverBody and recoverAnswer are POST /v1/recover-records's;
// recoveredBody is POST /v1/recovered-shares's.
type recoverBody struct {
	Request string `json:"request"`
}

type recoverAnswer struct {
	Records [][]byte `json:"records"`
}

type recoveredBody struct {
	Request string   `json:"request"`
	Shares  [][]byte `json:"shares"`
}

// RecoverSharesVia is custos recover-shares: through the node running in
// dir, it answers with the recovery key for every segment in request id's
// scope, sealed to the request's one-time key, in this process, and hands
// the sealed answers to the node. The caller loads and wipes rk. It returns
// how many segments the answers cover.
func RecoverSharesVia(ctx context.Context, dir, fid, id string, rk *keys.CustodianKey) (int, error) {
	st, err := FetchPolicy(ctx, dir)
	if err != nil {
		return 0, err
	}
	r, recipient, err := release.RecoveryTarget(st, fid, id, rk, time.Now())
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(recoverBody{Request: id})
	var a recoverAnswer
	if err := apiDo(ctx, dir, "POST", "/v1/recover-records", b, &a); err != nil {
		return 0, err
	}
	if len(a.Records) == 0 {
		return 0, fmt.Errorf("the stores hold no segments in the scope of request %q", id)
	}
	body := recoveredBody{Request: id}
	if body.Shares, err = release.RecoverShares(st, r, rk, recipient, a.Records); err != nil {
		return 0, err
	}
	b, _ = json.Marshal(body)
	var got struct {
		Epochs int `json:"epochs"`
	}
	return got.Epochs, apiDo(ctx, dir, "POST", "/v1/recovered-shares", b, &got)
}

// SubmitVia submits a signed command through the node running in dir.
func SubmitVia(ctx context.Context, dir string, env policy.Envelope) (ApplyResult, error) {
	var r ApplyResult
	return r, apiDo(ctx, dir, "POST", "/v1/submit", env.Marshal(), &r)
}

func apiGet(ctx context.Context, dir, path string, out any) error {
	return apiDo(ctx, dir, "GET", path, nil, out)
}

func apiDo(ctx context.Context, dir, method, path string, body []byte, out any) error {
	resp, err := apiRequest(ctx, dir, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("node in %s: bad answer: %w", dir, err)
	}
	return nil
}

// apiRequest sends one request to the node's API; a non-OK status is an
// error carrying the node's message.
func apiRequest(ctx context.Context, dir, method, path string, body []byte) (*http.Response, error) {
	sock := SocketPath(dir)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true, // one request per connection: nothing idles after
	}
	hc := &http.Client{Transport: tr}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://custos"+path, rd)
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w (start one with: custos up --dir %s --listen HOST:PORT)", dir, ErrNotRunning, dir)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("node in %s: %s: %s", dir, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}
