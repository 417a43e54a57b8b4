package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
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
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
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

// ErrNotRunning means no node answers in the data directory.
var ErrNotRunning = errors.New("no node is running there")

// FetchStatus asks the node running in dir for its status.
func FetchStatus(ctx context.Context, dir string) (Status, error) {
	path := SocketPath(dir)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://custos/v1/status", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w (start one with: custos up --dir %s --listen HOST:PORT)", dir, ErrNotRunning, dir)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("node in %s answered %s", dir, resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("node in %s: bad status answer: %w", dir, err)
	}
	return st, nil
}
