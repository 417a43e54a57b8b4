package node

// The local API's client side: what the CLI calls, over the owner-only
// unix socket of the node in a data directory.

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
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

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

// SetCameraSecretVia hands a camera's credentials and settings (transport,
// certificate trust) to the store running in dir, which keeps them in its
// data directory only.
func SetCameraSecretVia(ctx context.Context, dir, camera string, s recording.CameraSecret) error {
	b, _ := json.Marshal(cameraSecretRequest{Camera: camera, User: s.User, Password: s.Password,
		Transport: s.Transport, CA: s.CA, Pin: s.Pin})
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

// FetchExported asks the node running in dir which requests it exported
// (each request's one-time key serves one export).
func FetchExported(ctx context.Context, dir string) ([]release.Exported, error) {
	var es []release.Exported
	return es, apiGet(ctx, dir, "/v1/exported", &es)
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

// FetchErasure asks the node in dir for erasure id's progress on every node
// that holds its footage.
func FetchErasure(ctx context.Context, dir, id string) (erasure.Status, error) {
	var st erasure.Status
	err := apiGet(ctx, dir, "/v1/erasure?id="+url.QueryEscape(id), &st)
	return st, err
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
// *APIError carrying the node's message.
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
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = fmt.Sprintf("the node in %s answered %s", dir, resp.Status)
		}
		return nil, &APIError{Status: resp.StatusCode, Message: msg}
	}
	return resp, nil
}

// APIError is the local API's answer when it is not OK: the node's message,
// which says what went wrong in a sentence of its own, and the HTTP status,
// which tells a policy refusal (403 Forbidden) from a failure.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ErrNotRunning means no node answers in the data directory.
var ErrNotRunning = errors.New("no node is running there")

// QueryAuditVia carries a signed audit query (auditquery.Signed's JSON)
// through the admin node running in dir to the datacenters.
func QueryAuditVia(ctx context.Context, dir string, signed []byte) (AuditAnswer, error) {
	var a AuditAnswer
	return a, apiDo(ctx, dir, "POST", "/v1/audit/query", signed, &a)
}
