package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// errAuditBroken makes `custos audit verify` exit with its own status.
var errAuditBroken = errors.New("audit journal verification failed")

// auditWidth is what the audit table fits by default: a terminal of 120
// columns.
const auditWidth = 120

func runAudit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the node")
	since := fs.String("since", "", "only entries at or after `T`: an RFC 3339 time, or a duration back from now (24h: the last 24 hours)")
	wide := fs.Bool("wide", false, "print every field whole, however wide the lines get")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	var from time.Time
	if *since != "" {
		t, err := parseTime("since", *since, back, time.Now())
		if err != nil {
			return usageError{err}
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
	// The policy names the nodes whose keys the journal holds; a node
	// without a policy (static peers) shows the keys short.
	st, _ := node.FetchPolicy(ctx, *dir)
	writeAudit(stdout, entries, st, *wide)
	return nil
}

// writeAudit prints the journal as a table. Unless wide, it fits
// auditWidth columns: node keys become names (or a short key), and the
// object and reason are cut.
func writeAudit(w io.Writer, entries []audit.Entry, st *policy.State, wide bool) {
	names := nodeNames(st)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tDECISION\tREASON\n")
	for _, e := range entries {
		actor, object, reason := e.Actor, e.Object, e.Reason
		if !wide {
			actor, object, reason = names(actor), names(object), names(reason)
			actor, object = cut(actor, 24), cut(object, 32)
		}
		fmt.Fprintln(tw, printable(fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s", e.Seq, stamp(e.Time), actor, e.Action, object, e.Decision, reason)))
	}
	tw.Flush()
	for line := range strings.Lines(b.String()) {
		line = strings.TrimRight(line, " \n")
		if !wide {
			line = cut(line, auditWidth)
		}
		fmt.Fprintln(w, line)
	}
}

var nodeKeyText = regexp.MustCompile(`nodekey:[0-9a-f]{64}`)

// nodeNames returns a function that writes every node key in a text as the
// name the policy gives it, or short when the policy has none.
func nodeNames(st *policy.State) func(string) string {
	byKey := map[string]string{}
	if st != nil {
		for _, n := range st.Nodes {
			byKey[n.PublicKey] = n.Name
		}
	}
	return func(s string) string {
		return nodeKeyText.ReplaceAllStringFunc(s, func(k string) string {
			if n, ok := byKey[k]; ok {
				return n
			}
			return k[:len("nodekey:")+8] + "…"
		})
	}
}

// cut shortens s to at most n characters, the last one "…" when cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func runAuditVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the node (works whether or not the node runs)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
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
