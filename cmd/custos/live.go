package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/custos-cctv/custos/node"
)

// runLive watches a camera through the local node: MPEG-TS to a file or to
// stdout (custos live … --out - | ffplay -).
func runLive(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the local node (the viewer)")
	cam := fs.String("camera", "", "the camera to watch, `SITE/NAME`")
	out := fs.String("out", "-", "the MPEG-TS `FILE` to write (must not exist), or - for stdout")
	dur := fs.Duration("for", 0, "stop after this duration `D` (default: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return usageError{errors.New("--dir is required")}
	case *cam == "":
		return usageError{errors.New("--camera SITE/NAME is required")}
	case *dur < 0:
		return usageError{errors.New("--for must not be negative")}
	}
	w := stdout
	if *out == "-" {
		if f, ok := stdout.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return usageError{errors.New("stdout is a terminal: pipe it (custos live … | ffplay -) or give --out FILE")}
			}
		}
	} else {
		// Plaintext video reaches a disk only here, at the path the viewer
		// gave (DESIGN §4 invariant 1): owner-only, never over a file.
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	began := time.Now()
	hint(ctx, "live: watching %s…", *cam)
	res, err := node.LiveVia(ctx, *dir, *cam, w)
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		if serr := f.Sync(); err == nil && serr != nil {
			err = serr
		}
	}
	hint(ctx, "live: %s: %d bytes of MPEG-TS in %s", *cam, res.Bytes, time.Since(began).Round(time.Second))
	if err != nil {
		if res.Bytes == 0 && *out != "-" {
			os.Remove(*out) // nothing was watched: leave no empty file behind
		}
		return err
	}
	if res.Ended != "" {
		return errDenied{"live view of " + *cam + " ended: " + res.Ended}
	}
	return nil
}
