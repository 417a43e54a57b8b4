package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
)

// errAuditBroken makes `custos audit verify` exit with its own status.
var errAuditBroken = errors.New("audit journal verification failed")

func runAudit(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		return runAuditVerify(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` of the node")
	since := fs.String("since", "", "only entries at or after this RFC 3339 `time` (or a Go duration such as 24h, meaning that long ago)")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: custos audit --dir DIR [--since T] [--json]\n       custos audit verify --dir DIR [--json]\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--dir is required")}
	}
	var from time.Time
	if *since != "" {
		t, err := parseTimeOrAgo(*since, time.Now())
		if err != nil {
			return usageError{fmt.Errorf("--since: %w", err)}
		}
		from = t
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	entries, err := node.FetchAudit(ctx, *dir, from)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tDECISION\tREASON\n")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format(time.DateTime), e.Actor, e.Action, e.Object, e.Decision, e.Reason)
	}
	return tw.Flush()
}

func runAuditVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` of the node (works whether or not the node runs)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--dir is required")}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rep, err := node.VerifyAuditIn(ctx, *dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		fmt.Fprintln(stdout, rep.String())
	}
	if !rep.OK {
		return errAuditBroken
	}
	return nil
}

// parseTimeOrAgo reads an RFC 3339 time or a duration meaning "that long
// before now".
func parseTimeOrAgo(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-27T08:00:00Z) nor a duration (24h)", s)
}
