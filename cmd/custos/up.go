package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/store/s3blob"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/metrics"
	"github.com/custos-cctv/custos/node/replication"
)

// upSettings is what custos up runs with, once its flags and --config
// are read and checked.
type upSettings struct {
	fs          *flag.FlagSet
	dir         string
	listen      netip.AddrPort
	peers       string
	name        string
	fed         string
	uapi        string
	noGossip    bool
	quiet       bool
	uplinkMbit  float64
	metricsAddr string
	logFormat   string
	blobs       store.Blobs   // nil: replicas on the local disk
	src         *configSource // nil without --config
}

// upFlagSet defines up's flags. --config's TOML keys are these names, so a
// flag added here is a config key too, with nothing else to change.
func upFlagSet() (*flag.FlagSet, func(ctx context.Context) (*upSettings, error)) {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` (created if absent; holds node.key and custos.sock)")
	listen := fs.String("listen", "", "the underlay UDP address `HOST:PORT` for WireGuard, told to peers (a host name is resolved once, at start)")
	peers := fs.String("peers", "", "a static peers `FILE` (TOML [[peer]] name, public_key, endpoint); re-read on change")
	name := fs.String("name", "", "the node's name `N` (default: the name it was founded or joined as, else the directory's name)")
	fed := fs.String("federation", node.DefaultFederation, "the federation's name `F`; all nodes of a mesh share it")
	uapi := fs.String("uapi", "", "the WireGuard UAPI socket `PATH` (default DIR/wg.sock)")
	noGossip := fs.Bool("no-gossip", false, "turn memberlist gossip off")
	quiet := fs.Bool("quiet", false, "log only errors")
	uplink := fs.Float64("uplink-mbit", 0, "a store's replication budget to the datacenters, `N` Mbit/s (0: unlimited); epoch records and audit go first")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://`IP:PORT`/metrics, on loopback or this node's mesh address (off without it)")
	logFormat := fs.String("log-format", "text", "the log's format `F`: text (a time and the message per line) or json (one JSON object per line: time, level, msg, component, …)")
	config := fs.String("config", "", "read settings from the TOML `FILE` (keys: these flags' names; a flag given here wins); it must not be writable by others")
	replicasAt := fs.String("replicas", "", "a datacenter keeps its replicas in the S3 bucket `s3://BUCKET/PREFIX` (endpoint and keys from CUSTOS_S3_* or --replicas-credentials; default: the local disk)")
	replicasCreds := fs.String("replicas-credentials", "", "read the S3 endpoint and keys from `FILE` (TOML, mode 0600) instead of the environment")
	check := func(ctx context.Context) (*upSettings, error) {
		var src *configSource
		if *config != "" {
			var err error
			if src, err = loadConfig(fs, *config); err != nil {
				return nil, err
			}
		}
		blobs, err := replicaBlobs(*replicasAt, *replicasCreds)
		if err != nil {
			return nil, src.from("replicas", err)
		}
		if *dir == "" {
			return nil, usageError{errors.New("--dir is required")}
		}
		if *listen == "" {
			return nil, usageError{errors.New("--listen is required (for example --listen 127.0.0.1:51820)")}
		}
		if *logFormat != "text" && *logFormat != "json" {
			return nil, src.from("log-format", usageError{fmt.Errorf("--log-format %q: want text or json", *logFormat)})
		}
		ap, err := parseListen(ctx, *listen)
		if err != nil {
			return nil, src.from("listen", err)
		}
		if *uplink < 0 || *uplink > 1e6 {
			return nil, src.from("uplink-mbit", usageError{fmt.Errorf("--uplink-mbit %v: want 0 (unlimited) to 1000000", *uplink)})
		}
		if ap, err := netip.ParseAddrPort(*metricsAddr); *metricsAddr != "" && (err != nil || !ap.Addr().Unmap().Is6() || ap.Addr().IsUnspecified()) {
			// Refused before anything starts: bad syntax, and any IPv4 address
			// but loopback (the mesh is IPv6). A mesh address is checked once
			// the node knows its prefix.
			if _, err := metrics.CheckAddr(*metricsAddr, netip.Prefix{}); err != nil {
				return nil, src.from("metrics", usageError{err})
			}
		}
		return &upSettings{fs: fs, dir: *dir, listen: ap, peers: *peers, name: *name, fed: *fed, uapi: *uapi,
			noGossip: *noGossip, quiet: *quiet, uplinkMbit: *uplink, metricsAddr: *metricsAddr,
			logFormat: *logFormat, blobs: blobs, src: src}, nil
	}
	return fs, check
}

// parseUp reads up's flags, then --config for the flags not given, and
// checks them all as up does before it starts anything.
func parseUp(ctx context.Context, args []string) (*upSettings, error) {
	fs, check := upFlagSet()
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return check(ctx)
}

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
	s, err := parseUp(ctx, args)
	if err != nil {
		return err
	}
	lg := newUpLogger(stderrOf(ctx), s.logFormat, s.quiet)
	logf := lg.logf
	// In JSON a failure after this point is a log record too, so that
	// whatever reads the log (journald, a collector) sees why up ended.
	fail := func(err error) error {
		if s.logFormat == "json" {
			lg.errorf(err)
			return loggedError{err}
		}
		return err
	}
	n, err := node.New(node.Config{
		Dir: s.dir, Name: s.name, Listen: s.listen, Federation: s.fed, PeersFile: s.peers,
		UAPISocket: s.uapi, NoGossip: s.noGossip, Logf: logf,
		Replication:  replication.Config{UplinkBytesPerSec: int64(s.uplinkMbit * 1e6 / 8)},
		ReplicaBlobs: s.blobs,
	})
	if err != nil {
		return fail(err)
	}
	st, err := n.Status()
	if err != nil {
		n.Close()
		return fail(err)
	}
	if s.metricsAddr != "" {
		ln, err := listenMetrics(n, st, s.metricsAddr)
		if err != nil {
			n.Close()
			return fail(err)
		}
		mctx, stopMetrics := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := metrics.Serve(mctx, ln, metrics.New(n.Status)); err != nil {
				logf("custos %s: metrics: %v", st.Name, err)
			}
		}()
		defer func() { stopMetrics(); <-served }()
		lg.say(stdout, fmt.Sprintf("Prometheus metrics at http://%s/metrics", ln.Addr()), "metrics_url", fmt.Sprintf("http://%s/metrics", ln.Addr()))
	}
	lg.say(stdout, fmt.Sprintf("custos %s up: %s at %s, WireGuard on UDP %d. Stop with Ctrl-C.", st.Name, st.PublicKey, st.MeshAddr, st.ListenPort),
		"node", st.Name, "public_key", st.PublicKey.String(), "mesh_addr", st.MeshAddr.String(), "listen_port", st.ListenPort)
	stopLog := context.AfterFunc(ctx, func() {
		why := "its context ended"
		if c := context.Cause(ctx); c != nil && c != context.Canceled {
			why = c.Error()
		}
		logf("custos %s: stopping (%s)", st.Name, why)
	})
	defer stopLog()
	err = n.Run(ctx)
	logf("custos %s: stopped", st.Name)
	if err != nil {
		return fail(err)
	}
	return nil
}

// replicaBlobs is --replicas's bucket, or nil for the local disk. The
// endpoint and keys come from the environment or the credentials file,
// never from a flag, so no process listing shows them.
func replicaBlobs(at, creds string) (store.Blobs, error) {
	if at == "" {
		if creds != "" {
			return nil, usageError{errors.New("--replicas-credentials needs --replicas s3://BUCKET/PREFIX")}
		}
		return nil, nil
	}
	b, err := s3blob.Open(at, creds)
	if err != nil {
		return nil, usageError{fmt.Errorf("--replicas: %w", err)}
	}
	return b, nil
}

// listenMetrics opens --metrics's listener: on loopback, or on this
// node's own mesh address (reachable by the federation's members only).
func listenMetrics(n *node.Node, st node.Status, addr string) (net.Listener, error) {
	ap, err := metrics.CheckAddr(addr, st.Prefix)
	if err != nil {
		return nil, usageError{err}
	}
	if ap.Addr().IsLoopback() {
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			return nil, fmt.Errorf("--metrics %s: %w", addr, err)
		}
		return ln, nil
	}
	if ap.Addr() != st.MeshAddr {
		return nil, usageError{fmt.Errorf("--metrics %s: %s is not this node's mesh address (%s)", addr, ap.Addr(), st.MeshAddr)}
	}
	ln, err := n.Mesh().ListenTCP(ap.Port())
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	return ln, nil
}

// lookupListen resolves --listen's host name; a variable for the tests.
var lookupListen = net.DefaultResolver.LookupNetIP

// parseListen reads --listen: IP:PORT, or HOST:PORT with a host name that
// resolves, once and now, to exactly one address. The node tells peers the
// address, not the name, so a name with several addresses would be a
// guess; the operator picks one.
func parseListen(ctx context.Context, s string) (netip.AddrPort, error) {
	const want = "want IP:PORT or HOST:PORT, such as 203.0.113.10:51820, [2001:db8::1]:51820 or dc-a.example.net:51820"
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		host, port, serr := net.SplitHostPort(s)
		p, perr := netip.ParseAddrPort("0.0.0.0:" + port)
		if serr != nil || perr != nil || host == "" || strings.ContainsAny(host, "[]%") {
			return netip.AddrPort{}, usageError{fmt.Errorf("--listen %q: %s", s, want)}
		}
		addr, err := resolveListen(ctx, host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("--listen %q: %w", s, err)
		}
		ap = netip.AddrPortFrom(addr, p.Port())
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, usageError{fmt.Errorf("--listen %q: give the address peers reach this node at, not a wildcard (the UDP socket listens on all addresses anyway)", s)}
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, usageError{fmt.Errorf("--listen %q: port 0 would change at every start; give a fixed port", s)}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// resolveListen is host's one address.
func resolveListen(ctx context.Context, host string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := lookupListen(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return netip.Addr{}, fmt.Errorf("the host name %s does not resolve; give IP:PORT", host)
		}
		return netip.Addr{}, fmt.Errorf("resolving %s: %w; give IP:PORT", host, err)
	}
	var uniq []string
	var one netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if s := a.String(); !slices.Contains(uniq, s) {
			uniq, one = append(uniq, s), a
		}
	}
	switch len(uniq) {
	case 0:
		return netip.Addr{}, fmt.Errorf("the host name %s resolves to no address; give IP:PORT", host)
	case 1:
		return one, nil
	}
	return netip.Addr{}, fmt.Errorf("the host name %s resolves to %d addresses (%s): the node tells peers one address, so give the one they reach it at as IP:PORT",
		host, len(uniq), strings.Join(uniq, ", "))
}
