package main

// The controller's duties that live in the policy: who the controller and
// its DPO are (controller set, show), the breach register with its 72-hour
// clock (breach open, update, close, list, report), and how long audit
// entries are kept (audit retention). The rules are in policy
// (controller.go, breach.go); this file parses, signs and prints.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

func runControllerSet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("controller set", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	c := &policy.Controller{}
	fs.StringVar(&c.Name, "name", "", "the controller's legal `NAME` (the company)")
	fs.StringVar(&c.Address, "address", "", "its registered `ADDRESS`")
	fs.StringVar(&c.Email, "email", "", "the `EMAIL` data subjects write to")
	fs.StringVar(&c.Phone, "phone", "", "a `PHONE` number")
	fs.StringVar(&c.DPOName, "dpo-name", "", "the data protection officer's `NAME`")
	fs.StringVar(&c.DPOEmail, "dpo-email", "", "the DPO's `EMAIL`")
	fs.StringVar(&c.DPOPhone, "dpo-phone", "", "the DPO's `PHONE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if c.Name == "" || c.Address == "" || c.Email == "" {
		return usageError{errors.New("--name, --address and --email are required (each set replaces the whole record: give the DPO again too)")}
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindSetController, Controller: c}, stdout)
}

func runControllerShow(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "controller show", args)
	if err != nil {
		return err
	}
	c, err := st.RequireController()
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(c)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, r := range [][2]string{{"controller", c.Name}, {"address", strings.ReplaceAll(c.Address, "\n", ", ")}, {"email", c.Email}, {"phone", c.Phone},
		{"DPO", c.DPOName}, {"DPO email", c.DPOEmail}, {"DPO phone", c.DPOPhone}, {"set by", c.By + " at " + stamp(c.Time)}} {
		if r[1] != "" {
			fmt.Fprintln(tw, printable(r[0]+"\t"+r[1]))
		}
	}
	if !c.HasDPO() {
		fmt.Fprintln(tw, "DPO\tnone: documents name the controller as the contact point")
	}
	return tw.Flush()
}

// breachFlags are the art. 33(3) fields open and update share.
type breachFlags struct {
	what, detected, nature, categories, consequences, measures, contact *string
	subjects, records                                                   *int64
}

func addBreachFlags(fs *flag.FlagSet) breachFlags {
	return breachFlags{
		what:         fs.String("what", "", "what happened, as `TEXT`"),
		detected:     fs.String("detected", "", "when the controller became aware, `T`: an RFC 3339 time, now, or a duration back from now; the 72 hours count from it"),
		nature:       fs.String("nature", "", "the nature of the breach, `TEXT` (art. 33(3)(a))"),
		categories:   fs.String("categories", "", "the categories of data subjects and records concerned, `TEXT`"),
		subjects:     fs.Int64("subjects", 0, "the approximate number of data subjects concerned, `N` (0: not known yet)"),
		records:      fs.Int64("records", 0, "the approximate number of records concerned, `N` (0: not known yet)"),
		consequences: fs.String("consequences", "", "the likely consequences, `TEXT` (art. 33(3)(c))"),
		measures:     fs.String("measures", "", "the measures taken or proposed, `TEXT` (art. 33(3)(d))"),
		contact:      fs.String("contact", "", "the contact point, `TEXT` (default: the DPO, else the controller, when opened)"),
	}
}

func runBreachOpen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("breach open", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	bf := addBreachFlags(fs)
	id := fs.String("id", "", "the breach's `ID` (default: generated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *bf.what == "" || *bf.detected == "" {
		return usageError{errors.New("--what and --detected are required")}
	}
	now := time.Now()
	detected, err := parseTime("detected", *bf.detected, back, now)
	if err != nil {
		return usageError{err}
	}
	if detected.After(now) {
		return usageError{fmt.Errorf("--detected %s is in the future: give when the breach became known", stamp(detected))}
	}
	b := &policy.Breach{ID: *id, What: *bf.what, Detected: detected.UTC(), Nature: *bf.nature, Categories: *bf.categories,
		ApproxSubjects: *bf.subjects, ApproxRecords: *bf.records, Consequences: *bf.consequences, Measures: *bf.measures, Contact: *bf.contact}
	if b.ID == "" {
		b.ID = "b-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
	}
	if err := signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindOpenBreach, Breach: b}, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b.ID)
	hint(ctx, "breach %s recorded: notify the supervisory authority by %s (%s); then custos breach update %s --notified T; custos breach report %s prints the art. 33(3) fields",
		b.ID, stamp(b.Deadline()), policy.FormatLeft(b.Left(now)), b.ID, b.ID)
	return nil
}

func runBreachUpdate(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("breach update", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	bf := addBreachFlags(fs)
	notified := fs.String("notified", "", "when the supervisory authority was notified, `T` (RFC 3339, now, or a duration back from now)")
	late := fs.String("late-reason", "", "why the notification came after 72 hours, `TEXT` (required then, art. 33(1))")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which breach? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	now := time.Now()
	u := &policy.BreachUpdate{Breach: id, What: *bf.what, Nature: *bf.nature, Categories: *bf.categories, ApproxSubjects: *bf.subjects,
		ApproxRecords: *bf.records, Consequences: *bf.consequences, Measures: *bf.measures, Contact: *bf.contact, LateReason: *late}
	for _, f := range []struct {
		name, val string
		to        *time.Time
	}{{"detected", *bf.detected, &u.Detected}, {"notified", *notified, &u.Notified}} {
		if f.val == "" {
			continue
		}
		t, err := parseTime(f.name, f.val, back, now)
		if err != nil {
			return usageError{err}
		}
		if t.After(now) {
			return usageError{fmt.Errorf("--%s %s is in the future", f.name, stamp(t))}
		}
		*f.to = t.UTC()
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindUpdateBreach, BreachUpdate: u}, stdout)
}

func runBreachClose(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("breach close", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	outcome := fs.String("outcome", "", "how it ended, `TEXT`")
	notNotified := fs.String("not-notified-reason", "", "why the authority was not notified, `TEXT`: the breach is unlikely to result in a risk to people's rights (art. 33(1))")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	switch {
	case id == "":
		return usageError{errors.New("which breach? give its ID before the flags")}
	case *outcome == "":
		return usageError{errors.New("--outcome is required")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	x := &policy.BreachClosure{Breach: id, Closed: time.Now().UTC(), Outcome: *outcome, NotNotifiedReason: *notNotified}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindCloseBreach, BreachClosure: x}, stdout)
}

// breachState is a breach's place in the register at now.
func breachState(b *policy.Breach, now time.Time) (state, clock string) {
	switch {
	case b.Closed():
		return "closed", "-"
	case !b.Notified.IsZero() && b.NotifiedLate():
		return "notified late", "notified " + stamp(b.Notified)
	case !b.Notified.IsZero():
		return "notified", "notified " + stamp(b.Notified)
	case b.Overdue(now) && b.Draft:
		return "OVERDUE draft", policy.FormatLeft(b.Left(now))
	case b.Overdue(now):
		return "OVERDUE", policy.FormatLeft(b.Left(now))
	case b.Draft:
		// Opened by an event (a revoked store, a broken audit chain):
		// an admin confirms it with breach update or dismisses it.
		return "draft", policy.FormatLeft(b.Left(now))
	}
	return "open", policy.FormatLeft(b.Left(now))
}

func runBreachList(ctx context.Context, args []string, stdout io.Writer) error {
	st, l, err := listingPolicy(ctx, "breach list", "also closed breaches", args)
	if err != nil {
		return err
	}
	now := time.Now()
	type row struct {
		*policy.Breach
		State    string    `json:"state"`
		Deadline time.Time `json:"deadline"`
		Clock    string    `json:"clock"`
	}
	rows := []row{}
	for _, b := range st.BreachRegister() {
		if b.Closed() && !l.all {
			continue
		}
		state, clock := breachState(b, now)
		rows = append(rows, row{Breach: b, State: state, Deadline: b.Deadline(), Clock: clock})
	}
	if l.asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BREACH\tSTATE\tDETECTED\tDEADLINE\tCLOCK\tWHAT")
	for _, r := range rows {
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", r.ID, r.State, stamp(r.Detected), stamp(r.Deadline), r.Clock, r.What)))
	}
	return tw.Flush()
}

func runBreachReport(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("breach report", flag.ContinueOnError)
	dir := fs.String("dir", "", "the node's data directory `DIR`")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	switch {
	case id == "":
		return usageError{errors.New("which breach? give its ID before the flags")}
	case *dir == "":
		return usageError{errors.New("--dir is required")}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := node.FetchPolicy(cctx, *dir)
	if err != nil {
		return err
	}
	b := st.Breaches[id]
	if b == nil {
		return fmt.Errorf("no breach %q in the policy of the node in %s", id, *dir)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(b)
	}
	known := func(n int64) string {
		if n == 0 {
			return "not known yet"
		}
		return fmt.Sprintf("about %d", n)
	}
	or := func(s string) string {
		if s == "" {
			return "NOT RECORDED YET"
		}
		return s
	}
	state, clock := breachState(b, time.Now())
	notified := "not yet"
	if !b.Notified.IsZero() {
		notified = stamp(b.Notified)
		if b.NotifiedLate() {
			notified += fmt.Sprintf(", %s after the deadline; reasons for the delay: %s", policy.FormatDuration(b.Notified.Sub(b.Deadline())), b.LateReason)
		}
	}
	fmt.Fprintf(stdout, "Personal data breach %s (GDPR art. 33(3)) — %s\n", b.ID, state)
	if c := st.Controller; c != nil {
		fmt.Fprintln(stdout, printable(fmt.Sprintf("controller: %s, %s", c.Name, strings.ReplaceAll(c.Address, "\n", ", "))))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, r := range [][2]string{
		{"what happened", b.What},
		{"detected", stamp(b.Detected)},
		{"notify by", stamp(b.Deadline()) + " (" + clock + ")"},
		{"(a) nature", or(b.Nature)},
		{"(a) categories", or(b.Categories)},
		{"(a) data subjects", known(b.ApproxSubjects)},
		{"(a) records", known(b.ApproxRecords)},
		{"(b) contact point", or(b.Contact)},
		{"(c) likely consequences", or(b.Consequences)},
		{"(d) measures", or(b.Measures)},
		{"authority notified", notified},
	} {
		fmt.Fprintln(tw, printable(r[0]+"\t"+r[1]))
	}
	if x := b.Closure; x != nil {
		fmt.Fprintln(tw, printable("closed\t"+stamp(x.Closed)+": "+x.Outcome))
		if x.NotNotifiedReason != "" {
			fmt.Fprintln(tw, printable("not notified, because\t"+x.NotNotifiedReason))
		}
	}
	return tw.Flush()
}

func runAuditRetention(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit retention", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	keep := fs.Duration("keep", 0, "keep audit entries this long, a duration `D` (720h = 30 days, the least)")
	why := fs.String("justification", "", "why longer than 30 days, `TEXT` (required then)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *keep == 0 {
		return usageError{errors.New("--keep is required")}
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindSetAuditRetention,
		AuditRetention: &policy.AuditRetention{Retention: *keep, Justification: *why}}, stdout)
}
