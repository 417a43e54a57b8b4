// Package s3test runs a real S3-compatible server for tests: SeaweedFS
// (`weed server -s3`) on loopback ports chosen free, with or without
// identities, and a loopback proxy in front of it that can delay requests
// or answer uploads as a full bucket would. The binary is found through
// CUSTOS_WEED (`make bin/weed` builds it from tools/seaweedfs); without it
// the tests that need it skip, saying so.
//
// It never mocks S3: every request the client under test makes reaches
// the real server, or the proxy that stands in for a network or a quota.
package s3test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custos-cctv/custos/media/store/s3blob"
)

// transport carries every request to a test server: its idle
// connections are closed when a server stops, so that no connection
// goroutine outlives the test that made it (tests check for leaks).
var transport = http.DefaultTransport.(*http.Transport).Clone()

// Transport is the http.RoundTripper for clients of test servers.
func Transport() http.RoundTripper { return transport }

// EnvWeed names the weed binary.
const EnvWeed = "CUSTOS_WEED"

// Binary is the weed binary, or skips t.
func Binary(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvWeed)
	if p == "" {
		t.Skipf("%s is not set: these tests need SeaweedFS's weed (make bin/weed; they run under make e2e)", EnvWeed)
	}
	if _, err := os.Stat(p); err != nil {
		// Set but absent is a broken setup (CI sets it), not a reason to skip.
		t.Fatalf("%s=%s: %v (make bin/weed builds it)", EnvWeed, p, err)
	}
	return p
}

// Identity is an S3 access key the server accepts.
type Identity struct{ AccessKey, SecretKey string }

// Options configure Start.
type Options struct {
	// Identity, if set, is the only key the server accepts (all actions);
	// without it the server takes anonymous requests.
	Identity *Identity
	// VolumeSizeLimitMB is the master's volume size limit (0: weed's
	// default); with VolumeMax it bounds the space the bucket may fill.
	VolumeSizeLimitMB int
	VolumeMax         int
}

// Server is a running weed server.
type Server struct {
	Endpoint string // 127.0.0.1:PORT of the S3 API
	opts     Options
	dir      string
	args     []string
	bin      string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *os.File
}

// Start runs weed server with its master, volume, filer and S3 API on free
// loopback ports, waits until the S3 API answers, and stops it at the
// end of the test. A test that stops or restarts the server needs its
// own; others can share one (Shared), since a server's first start and
// first volume take it some 20 s.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := newServer(Binary(t), t.TempDir(), opts)
	if s != nil {
		t.Cleanup(func() {
			s.Stop()
			transport.CloseIdleConnections()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var shared struct {
	sync.Mutex
	s   *Server
	dir string
	err error
}

// Shared is one anonymous server for the tests of a test binary that
// neither stop nor restart it; each such test uses buckets of its own.
// The package's TestMain calls StopShared.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "custos-weed-")
		if shared.err == nil {
			shared.s, shared.err = newServer(bin, shared.dir, Options{})
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.s
}

// StopShared stops the shared server, if one was started, and removes its
// data.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.s != nil {
		shared.s.Stop()
	}
	transport.CloseIdleConnections()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

func newServer(bin, dir string, opts Options) (*Server, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: fmt.Sprintf("127.0.0.1:%d", ports[3]), opts: opts, dir: dir, bin: bin}
	s.args = []string{"server", "-dir=" + filepath.Join(dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		fmt.Sprint("-master.port=", ports[0]), fmt.Sprint("-volume.port=", ports[1]),
		"-filer", fmt.Sprint("-filer.port=", ports[2]), "-s3", fmt.Sprint("-s3.port=", ports[3]),
		// Other listeners off, and sockets in the test's directory, so that
		// servers of tests running at once do not meet.
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"), "-s3.localSocket=" + filepath.Join(dir, "s3.sock")}
	// Every bucket is a collection of volumes of its own, grown on its
	// first upload: small volumes, and room for many, so that the tests'
	// buckets fit (weed's default of 8 volumes holds one bucket or two).
	s.args = append(s.args, fmt.Sprint("-master.volumeSizeLimitMB=", cmp.Or(opts.VolumeSizeLimitMB, 64)),
		fmt.Sprint("-volume.max=", cmp.Or(opts.VolumeMax, 200)))
	if id := opts.Identity; id != nil {
		cfg := map[string]any{"identities": []any{map[string]any{
			"name":        "custos",
			"credentials": []any{map[string]string{"accessKey": id.AccessKey, "secretKey": id.SecretKey}},
			"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
		}}}
		b, _ := json.Marshal(cfg)
		p := filepath.Join(dir, "s3.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
		s.args = append(s.args, "-s3.config="+p)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	return s, s.start()
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	lf, err := os.OpenFile(filepath.Join(s.dir, "weed.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("weed: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.log, s.exited = cmd, lf, exited
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("weed exited at start: %s", s.tail())
		default:
		}
		if s.ready() {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("weed's S3 API at %s did not answer within 90 s: %s", s.Endpoint, s.tail())
}

// ready: the S3 API answers a bucket operation end to end (the filer and a
// volume behind it are up).
func (s *Server) ready() bool {
	c := s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	name := "custos-ready-probe"
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code != "BucketAlreadyOwnedByYou" && r.Code != "BucketAlreadyExists" {
			return false
		}
	}
	_, err := c.PutObject(ctx, name, "probe", bytes.NewReader([]byte("ok")), 2, minio.PutObjectOptions{})
	return err == nil
}

func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "weed.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Stop stops the server (its data stays for Restart).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
	s.log.Close()
}

// Restart starts the server again on the same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// client is an administrative client of the server.
func (s *Server) client() *minio.Client {
	creds := credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	if id := s.opts.Identity; id != nil {
		creds = credentials.NewStaticV4(id.AccessKey, id.SecretKey, "")
	}
	c, _ := minio.New(s.Endpoint, &minio.Options{Creds: creds, BucketLookup: minio.BucketLookupPath, MaxRetries: 1, Transport: transport})
	return c
}

// Client is an administrative client of the server, for tests that look
// into the bucket or change it behind the store's back.
func (s *Server) Client() *minio.Client { return s.client() }

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client().MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// Config is a client configuration of bucket/prefix on this server (at
// endpoint, if given: a proxy), with the server's identity if it has one.
func (s *Server) Config(bucket, prefix, endpoint string) s3blob.Config {
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	cfg := s3blob.Config{Bucket: bucket, Prefix: prefix, Endpoint: endpoint, Insecure: true, MaxRetries: 1, Transport: transport}
	if id := s.opts.Identity; id != nil {
		cfg.AccessKey, cfg.SecretKey = id.AccessKey, id.SecretKey
	}
	return cfg
}

// Objects lists the keys and sizes under prefix in bucket.
func (s *Server) Objects(t testing.TB, bucket, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for o := range s.client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		out[o.Key] = o.Size
	}
	return out
}

// Get reads an object.
func (s *Server) Get(t testing.TB, bucket, key string) []byte {
	t.Helper()
	o, err := s.client().GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(o); err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return buf.Bytes()
}

// Put writes an object behind the store's back.
func (s *Server) Put(t testing.TB, bucket, key string, b []byte) {
	t.Helper()
	if _, err := s.client().PutObject(context.Background(), bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// Delete removes an object behind the store's back.
func (s *Server) Delete(t testing.TB, bucket, key string) {
	t.Helper()
	if err := s.client().RemoveObject(context.Background(), bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("delete %s/%s: %v", bucket, key, err)
	}
}

// freePorts finds n loopback TCP ports P that are free together with
// P+10000, which weed takes for each service's gRPC.
func freePorts(n int) ([]int, error) {
	var out []int
	var hold []net.Listener
	defer func() {
		for _, l := range hold {
			l.Close()
		}
	}()
	for p := 20000 + int(time.Now().UnixNano()%9000); len(out) < n && p < 30000; p++ {
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		if err != nil {
			a.Close()
			continue
		}
		hold = append(hold, a, b)
		out = append(out, p)
	}
	if len(out) < n {
		return nil, fmt.Errorf("no %d free port pairs (P, P+10000) for weed", n)
	}
	return out, nil
}

// Counter is an http.RoundTripper that counts the client's requests by
// method (PUT is an upload) and can delay each.
type Counter struct {
	Next  http.RoundTripper // nil: Transport()
	Delay time.Duration
	puts  atomic.Int64
	all   atomic.Int64
}

// RoundTrip counts and passes req on.
func (c *Counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.all.Add(1)
	if req.Method == http.MethodPut {
		c.puts.Add(1)
	}
	if c.Delay > 0 {
		time.Sleep(c.Delay)
	}
	next := c.Next
	if next == nil {
		next = transport
	}
	return next.RoundTrip(req)
}

// Puts is how many uploads went out.
func (c *Counter) Puts() int64 { return c.puts.Load() }

// Requests is how many requests went out.
func (c *Counter) Requests() int64 { return c.all.Load() }

// Proxy is a loopback HTTP proxy in front of a server: it can delay every
// request (a slow, throttling endpoint) and answer uploads with an error
// as a full bucket does.
type Proxy struct {
	Endpoint string // 127.0.0.1:PORT
	srv      *http.Server

	mu    sync.Mutex
	delay time.Duration
	full  string // "": pass uploads; else the S3 error code to answer them with
}

// NewProxy proxies to target (HOST:PORT) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Endpoint: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = transport
	rp.ErrorLog = log.New(io.Discard, "", 0) // a stopped server is the point of some tests
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		delay, full := p.delay, p.full
		p.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
		if full != "" && r.Method == http.MethodPut {
			status := http.StatusInsufficientStorage
			if full == "QuotaExceeded" {
				status = http.StatusForbidden
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource></Error>`,
				full, "the bucket is over its quota", r.URL.Path)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		p.srv.Close()
		transport.CloseIdleConnections()
	})
	return p
}

// SetDelay delays every request by d.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetFull answers every upload with the S3 error code (InsufficientStorage,
// QuotaExceeded), or passes uploads again for "".
func (p *Proxy) SetFull(code string) {
	p.mu.Lock()
	p.full = code
	p.mu.Unlock()
}

// Contains reports whether s contains secret, for the tests that check no
// secret reaches a message.
func Contains(s, secret string) bool { return secret != "" && strings.Contains(s, secret) }
