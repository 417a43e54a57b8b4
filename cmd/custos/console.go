package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/node/console"
)

func runConsole(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the local node the console works through")
	key := fs.String("key", "", "the admin's private key file `KEY` a login unlocks (with its passphrase, in the browser)")
	listen := fs.String("listen", "127.0.0.1:8080", "the loopback `ADDR:PORT` to serve on (port 0 picks one)")
	idle := fs.Duration("idle", console.DefaultIdle, "end a session after `D` without a request")
	exports := fs.String("exports", "", "where the node writes the exports the console plays, `DIR` (default: the node's DIR/exports)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *key == "" {
		return usageError{errors.New("--dir and --key are required")}
	}
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: want a loopback IP:PORT such as 127.0.0.1:8080", *listen)}
	}
	if !ap.Addr().IsLoopback() {
		return usageError{fmt.Errorf("--listen %s: %w", ap, console.ErrNotLoopback)}
	}
	if *idle < time.Minute {
		return usageError{fmt.Errorf("--idle %v: at least a minute", *idle)}
	}
	s, err := console.Start(console.Config{Dir: *dir, KeyFile: *key, Listen: ap, Idle: *idle, Exports: *exports})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "console: open %s and log in with the passphrase of %s (Ctrl-C stops)\n", s.URL(), *key)
	<-ctx.Done()
	return nil
}
