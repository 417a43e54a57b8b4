package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/replication"
)

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` (created if absent; holds node.key and custos.sock)")
	listen := fs.String("listen", "", "underlay UDP address `HOST:PORT` for WireGuard, told to peers")
	peers := fs.String("peers", "", "static peers `file` (TOML [[peer]] name, public_key, endpoint); re-read on change")
	name := fs.String("name", "", "node name (default: the name it was founded or joined as, else the directory's name)")
	fed := fs.String("federation", node.DefaultFederation, "federation `name`; all nodes of a mesh share it")
	uapi := fs.String("uapi", "", "WireGuard UAPI socket `path` (default DIR/wg.sock)")
	noGossip := fs.Bool("no-gossip", false, "turn memberlist gossip off")
	quiet := fs.Bool("quiet", false, "log only errors")
	uplink := fs.Float64("uplink-mbit", 0, "a store's replication budget to the datacenters, in `Mbit/s` (0: unlimited); epoch records and audit go first")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos up --dir DIR --listen HOST:PORT [--peers FILE] [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--dir is required")}
	}
	if *listen == "" {
		return usageError{fmt.Errorf("--listen is required (for example --listen 127.0.0.1:51820)")}
	}
	ap, err := parseListen(*listen)
	if err != nil {
		return usageError{err}
	}
	if *uplink < 0 || *uplink > 1e6 {
		return usageError{fmt.Errorf("--uplink-mbit %v: want 0 (unlimited) to 1000000", *uplink)}
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	logf := logger.Printf
	if *quiet {
		logf = func(string, ...any) {}
	}
	n, err := node.New(node.Config{
		Dir: *dir, Name: *name, Listen: ap, Federation: *fed, PeersFile: *peers,
		UAPISocket: *uapi, NoGossip: *noGossip, Logf: logf,
		Replication: replication.Config{UplinkBytesPerSec: int64(*uplink * 1e6 / 8)},
	})
	if err != nil {
		return err
	}
	st, err := n.Status()
	if err != nil {
		n.Close()
		return err
	}
	fmt.Fprintf(stdout, "custos %s up: %s at %s, WireGuard on UDP %d. Stop with Ctrl-C.\n", st.Name, st.PublicKey, st.MeshAddr, st.ListenPort)
	return n.Run(ctx)
}

func parseListen(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--listen %q: want IP:PORT such as 127.0.0.1:51820 or [::1]:51820", s)
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("--listen %q: give the address peers reach this node at, not a wildcard (the UDP socket listens on all addresses anyway)", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("--listen %q: port 0 would change at every start; give a fixed port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
