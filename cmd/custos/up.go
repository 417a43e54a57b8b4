package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
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

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
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
	replicasAt := fs.String("replicas", "", "a datacenter keeps its replicas in the S3 bucket `s3://BUCKET/PREFIX` (endpoint and keys from CUSTOS_S3_* or --replicas-credentials; default: the local disk)")
	replicasCreds := fs.String("replicas-credentials", "", "read the S3 endpoint and keys from `FILE` (TOML, mode 0600) instead of the environment")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	blobs, err := replicaBlobs(*replicasAt, *replicasCreds)
	if err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	if *listen == "" {
		return usageError{errors.New("--listen is required (for example --listen 127.0.0.1:51820)")}
	}
	ap, err := parseListen(ctx, *listen)
	if err != nil {
		return err
	}
	if *uplink < 0 || *uplink > 1e6 {
		return usageError{fmt.Errorf("--uplink-mbit %v: want 0 (unlimited) to 1000000", *uplink)}
	}
	if ap, err := netip.ParseAddrPort(*metricsAddr); *metricsAddr != "" && (err != nil || !ap.Addr().Unmap().Is6() || ap.Addr().IsUnspecified()) {
		// Refused before anything starts: bad syntax, and any IPv4 address
		// but loopback (the mesh is IPv6). A mesh address is checked once
		// the node knows its prefix.
		if _, err := metrics.CheckAddr(*metricsAddr, netip.Prefix{}); err != nil {
			return usageError{err}
		}
	}
	// Log lines carry their time with its zone, as everything custos prints.
	logger := log.New(stderrOf(ctx), "", 0)
	logf := func(format string, a ...any) {
		logger.Printf("%s "+format, append([]any{time.Now().Format(time.RFC3339)}, a...)...)
	}
	if *quiet {
		logf = func(string, ...any) {}
	}
	n, err := node.New(node.Config{
		Dir: *dir, Name: *name, Listen: ap, Federation: *fed, PeersFile: *peers,
		UAPISocket: *uapi, NoGossip: *noGossip, Logf: logf,
		Replication:  replication.Config{UplinkBytesPerSec: int64(*uplink * 1e6 / 8)},
		ReplicaBlobs: blobs,
	})
	if err != nil {
		return err
	}
	st, err := n.Status()
	if err != nil {
		n.Close()
		return err
	}
	if *metricsAddr != "" {
		ln, err := listenMetrics(n, st, *metricsAddr)
		if err != nil {
			n.Close()
			return err
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
		fmt.Fprintf(stdout, "Prometheus metrics at http://%s/metrics\n", ln.Addr())
	}
	fmt.Fprintf(stdout, "custos %s up: %s at %s, WireGuard on UDP %d. Stop with Ctrl-C.\n", st.Name, st.PublicKey, st.MeshAddr, st.ListenPort)
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
	return err
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
