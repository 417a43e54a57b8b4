package main

// The alert rules in the policy (policy/alerts.go): alerts set changes
// them, alerts show prints them. The datacenters evaluate them
// (node/alerting); custos status shows what they raised.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

func runAlertsSet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("alerts set", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	bulk := fs.Int("bulk-exports", 0, "alert when more than `N` segments are served to one actor within an hour (0: off)")
	hours := fs.String("usual-hours", "", "the usual hours `HH:MM-HH:MM`; footage access outside them alerts (off: never)")
	zone := fs.String("time-zone", "", "the IANA time zone `Z` of the usual hours, e.g. Europe/Prague")
	refusedFlag := fs.String("refused", "", "alert when one actor is refused more than N times within D, `N/D` such as 10/10m (0: off)")
	fast := fs.String("fast-approvals", "", "alert when one user approves more than N requests within D, `N/D` such as 5/10m (0: off)")
	inst := fs.String("installers", "", "alert on any entry of an installer outside its window: `on` or off")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if len(given) == 2 {
		return usageError{errors.New("give at least one rule to change (the others keep their values: custos alerts show)")}
	}
	k, err := loadKey(*as)
	if err != nil {
		return err
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, *dir)
	if err != nil {
		return err
	}
	r := st.Alerts()
	if given["bulk-exports"] {
		r.BulkExports = *bulk
	}
	if given["usual-hours"] {
		r.UsualHours = *hours
	}
	if given["time-zone"] {
		r.TimeZone = *zone
	}
	if given["installers"] {
		r.InstallerWindows = *inst
	}
	if given["refused"] {
		if r.RefusedMax, r.RefusedWindow, err = countPer("refused", *refusedFlag); err != nil {
			return usageError{err}
		}
	}
	if given["fast-approvals"] {
		if r.FastApprovals, r.FastApprovalsWindow, err = countPer("fast-approvals", *fast); err != nil {
			return usageError{err}
		}
	}
	if err := r.Validate(); err != nil {
		return usageError{err}
	}
	signer, err := signerName(st, k, *as)
	if err != nil {
		return err
	}
	return submitAs(ctx, *dir, st, k, signer, &policy.Command{Kind: policy.KindSetAlertRules, AlertRules: &r}, stdout)
}

// countPer reads N/D (0 alone: off).
func countPer(name, s string) (int, time.Duration, error) {
	if s == "0" {
		return 0, 0, nil
	}
	ns, ds, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(ns)
	d, err2 := time.ParseDuration(ds)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("--%s %q: want N/D such as 10/10m, or 0 (off)", name, s)
	}
	return n, d, nil
}

func runAlertsShow(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "alerts show", args)
	if err != nil {
		return err
	}
	r := st.Alerts()
	if asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			policy.AlertRules
			Default bool `json:"default"` // never set: the defaults
		}{r, st.AlertRules == nil})
	}
	count := func(n int, what string, d time.Duration) string {
		if n == 0 {
			return "off"
		}
		return fmt.Sprintf("more than %d %s within %v", n, what, d)
	}
	hours := "off"
	if r.UsualHours != policy.AlertOff {
		hours = r.UsualHours + " " + r.TimeZone
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, row := range [][2]string{
		{policy.RuleBulkExport, count(r.BulkExports, "segments served to one actor", policy.BulkExportWindow)},
		{policy.RuleOffHours, "footage access outside " + hours},
		{policy.RuleRefusedBurst, count(r.RefusedMax, "refusals of one actor", r.RefusedWindow)},
		{policy.RuleInstallerTime, r.InstallerWindows},
		{policy.RuleFastApprovals, count(r.FastApprovals, "requests approved by one user", r.FastApprovalsWindow)},
	} {
		fmt.Fprintln(tw, printable(row[0]+"\t"+row[1]))
	}
	if st.AlertRules == nil {
		fmt.Fprintln(tw, "set\tnever: these are the defaults (custos alerts set)")
	}
	return tw.Flush()
}

// writeAlerts prints the alerts the datacenters raised.
func writeAlerts(w io.Writer, as []node.AlertSummary) {
	for _, a := range as {
		fmt.Fprintln(w, printable(fmt.Sprintf("ALERT      %s %s: %s (%s)", a.Rule, a.Subject, a.Detail, stamp(a.Time))))
	}
}
