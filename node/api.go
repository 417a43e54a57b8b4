package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
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
	mux.HandleFunc("GET /v1/status", n.apiStatus)
	mux.HandleFunc("GET /v1/audit", n.apiAudit)
	mux.HandleFunc("GET /v1/audit/verify", n.apiVerifyAudit)
	mux.HandleFunc("POST /v1/audit/query", n.apiAuditQuery)
	mux.HandleFunc("GET /v1/policy", n.apiPolicy)
	mux.HandleFunc("GET /v1/versions", n.apiVersions)
	mux.HandleFunc("POST /v1/submit", n.apiSubmit)
	mux.HandleFunc("POST /v1/camera-secret", n.apiCameraSecret)
	mux.HandleFunc("POST /v1/release-key", n.apiReleaseKey)
	mux.HandleFunc("POST /v1/live", n.liveViewer().ServeAPI)
	mux.HandleFunc("POST /v1/export", n.apiExport)
	mux.HandleFunc("GET /v1/exported", n.apiExported)
	mux.HandleFunc("POST /v1/recover-records", n.apiRecoverRecords)
	mux.HandleFunc("POST /v1/recovered-shares", n.apiRecoveredShares)
	mux.HandleFunc("GET /v1/erasure", n.apiErasure)
	a := &apiServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go a.srv.Serve(ln)
	return a, nil
}

// apiErasure serves GET /v1/erasure?id=ID: the erasure's receipts from
// every node that holds its footage.
func (n *Node) apiErasure(w http.ResponseWriter, r *http.Request) {
	st, err := n.ErasureStatus(r.Context(), r.URL.Query().Get("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, st)
}

// apiStatus serves GET /v1/status: the node's status.
func (n *Node) apiStatus(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, st)
}

// apiAudit serves GET /v1/audit: the audit journal since ?since= (RFC 3339).
func (n *Node) apiAudit(w http.ResponseWriter, r *http.Request) {
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
}

// apiVerifyAudit serves GET /v1/audit/verify: the journal's chain check.
func (n *Node) apiVerifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := n.VerifyAudit()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, rep)
}

// apiPolicy serves GET /v1/policy: the committed policy, read
// linearizably (every command committed before the call is in it), so that
// custos approve on this node sees a request just filed on another. When
// the leader cannot confirm it within policyReadWait (no quorum, cut off),
// it serves the local replica as it is and says so in a header: the CLI
// reads on a cut-off node too. ?local=1 skips the confirmation.
func (n *Node) apiPolicy(w http.ResponseWriter, r *http.Request) {
	if n.Policy() == nil {
		http.Error(w, "this node runs from a static peers file, not a replicated policy", http.StatusConflict)
		return
	}
	st := n.Policy()
	if r.URL.Query().Get("local") == "" {
		ctx, cancel := context.WithTimeout(r.Context(), policyReadWait)
		cur, err := n.syncPolicy(ctx)
		cancel()
		if err != nil {
			w.Header().Set(HeaderStalePolicy, strconv.Quote(err.Error()))
		} else {
			st = cur
		}
	}
	writeJSON(w, st)
}

// policyReadWait bounds the linearizable read of GET /v1/policy.
const policyReadWait = 3 * time.Second

// HeaderStalePolicy, on an answer of GET /v1/policy, says (quoted) why
// the node could not confirm its replica is current.
const HeaderStalePolicy = "Custos-Stale-Policy"

// apiSubmit serves POST /v1/submit: a signed envelope for the policy.
func (n *Node) apiSubmit(w http.ResponseWriter, r *http.Request) {
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
}

// apiCameraSecret serves POST /v1/camera-secret: a camera's credentials, kept on this store only.
func (n *Node) apiCameraSecret(w http.ResponseWriter, r *http.Request) {
	var req cameraSecretRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 80<<10)) // a CA bundle fits
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "want {camera, user, password, transport, ca, pin}", http.StatusBadRequest)
		return
	}
	sec := recording.CameraSecret{User: req.User, Password: req.Password, Transport: req.Transport, CA: req.CA, Pin: req.Pin}
	if err := n.SetCameraSecret(req.Camera, sec); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, struct{}{})
}

// apiReleaseKey serves POST /v1/release-key: a new one-time release key, kept in memory.
func (n *Node) apiReleaseKey(w http.ResponseWriter, r *http.Request) {
	pub, err := n.NewReleaseKey()
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, releaseKeyAnswer{Key: pub})
}

// apiExport serves POST /v1/export: an export of an approved request.
func (n *Node) apiExport(w http.ResponseWriter, r *http.Request) {
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
}

// apiExported serves GET /v1/exported: the exports this node made.
func (n *Node) apiExported(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, n.Exported())
}

// apiRecoverRecords serves POST /v1/recover-records: the epoch records a recovery needs.
func (n *Node) apiRecoverRecords(w http.ResponseWriter, r *http.Request) {
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
}

// apiRecoveredShares serves POST /v1/recovered-shares: the shares the recovery key opened.
func (n *Node) apiRecoveredShares(w http.ResponseWriter, r *http.Request) {
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
	return rpc.DecodeStrict(b, v)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

type cameraSecretRequest struct {
	Camera    string `json:"camera"`
	User      string `json:"user"`
	Password  string `json:"password"`
	Transport string `json:"transport,omitempty"`
	CA        string `json:"ca,omitempty"`
	Pin       string `json:"pin,omitempty"`
}

// releaseKeyAnswer is the answer of POST /v1/release-key: the public half
// only; the private half never leaves the node's memory.
type releaseKeyAnswer struct {
	Key string `json:"key"`
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
