package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/auditquery"
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
	writeAuditTable(w, st, wide, "SEQ", len(entries), func(i int) (string, audit.Entry) {
		return strconv.FormatUint(entries[i].Seq, 10), entries[i]
	})
}

// writeAuditTable prints n entries, each after its lead column(s): the
// table of writeAudit and of audit query.
func writeAuditTable(w io.Writer, st *policy.State, wide bool, lead string, n int, row func(i int) (string, audit.Entry)) {
	names := nodeNames(st)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tTIME\tACTOR\tACTION\tOBJECT\tDECISION\tREASON\n", lead)
	for i := range n {
		first, e := row(i)
		actor, object, reason := e.Actor, e.Object, e.Reason
		if !wide {
			actor, object, reason = names(actor), names(object), names(reason)
			first, actor, object = cut(first, 16), cut(actor, 24), cut(object, 32)
		}
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", first, stamp(e.Time), actor, e.Action, object, e.Decision, reason)))
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

func runAuditQuery(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit query", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	q := &auditquery.Query{}
	fs.StringVar(&q.Site, "site", "", "only the journals of site `S`'s stores")
	fs.StringVar(&q.Actor, "actor", "", "only what actor `A` did (a user or node name, or a node key)")
	fs.StringVar(&q.Action, "action", "", "only action `X` (live-view, serve-segments, key-release, …)")
	fs.StringVar(&q.Object, "object", "", "only objects containing `O` (a camera site/name, a request ID)")
	since := fs.String("since", "", "only entries at or after `T`: an RFC 3339 time, or a duration back from now (168h: the last week)")
	until := fs.String("until", "", "only entries before `T`")
	fs.IntVar(&q.Limit, "limit", auditquery.DefaultLimit, fmt.Sprintf("show the newest `N` entries (at most %d)", auditquery.MaxLimit))
	wide := fs.Bool("wide", false, "print every field whole, however wide the lines get")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	now := time.Now()
	for _, t := range []struct {
		name, v string
		to      *time.Time
	}{{"since", *since, &q.Since}, {"until", *until, &q.Until}} {
		if t.v == "" {
			continue
		}
		v, err := parseTime(t.name, t.v, back, now)
		if err != nil {
			return usageError{err}
		}
		*t.to = v
	}
	if q.Limit < 1 || q.Limit > auditquery.MaxLimit {
		return usageError{fmt.Errorf("--limit %d: want 1 to %d", q.Limit, auditquery.MaxLimit)}
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, *dir)
	if err != nil {
		return err
	}
	k, signer, err := loadSigner(st, *as)
	if err != nil {
		return err
	}
	q.Federation, q.User = st.FederationID, signer
	body, err := auditquery.Sign(q, k)
	k.Close()
	if err != nil {
		return usageError{err}
	}
	ans, err := node.QueryAuditVia(ctx, *dir, body)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ans)
	}
	writeAuditRows(stdout, ans, st, *wide)
	return nil
}

// writeAuditRows prints an audit query's answer as writeAudit does, led
// by the node that recorded each entry, then what was left out and which
// datacenter did not answer.
func writeAuditRows(w io.Writer, ans node.AuditAnswer, st *policy.State, wide bool) {
	writeAuditTable(w, st, wide, "NODE", len(ans.Rows), func(i int) (string, audit.Entry) {
		return ans.Rows[i].Node, ans.Rows[i].Entry
	})
	if ans.More > 0 {
		fmt.Fprintf(w, "(%d older entries match too: narrow the query, or raise --limit)\n", ans.More)
	}
	for _, dc := range slices.Sorted(maps.Keys(ans.Failed)) {
		fmt.Fprintln(w, printable(fmt.Sprintf("datacenter %s did not answer: %s", dc, ans.Failed[dc])))
	}
}
