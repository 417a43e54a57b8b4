package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/custos-cctv/custos/node/demo"
)

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dur := fs.Duration("for", 0, "stop after this duration `D` (default: run until Ctrl-C)")
	dir := fs.String("dir", "", "keep the nodes' data in this directory `DIR` (default: a temporary one, removed at the end)")
	mib := fs.Int64("transfer-mib", 64, "the size `N` of each throughput transfer, in MiB (1 to 4096)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dur < 0 {
		return usageError{fmt.Errorf("--for %v: must not be negative", *dur)}
	}
	if *mib < 1 || *mib > 4096 {
		return usageError{fmt.Errorf("--transfer-mib %d: want 1..4096", *mib)}
	}
	return demo.Run(ctx, stdout, demo.Options{For: *dur, Dir: *dir, TransferBytes: *mib << 20})
}
