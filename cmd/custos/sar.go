package main

// Subject access requests (GDPR art. 15): sar open, extend, close and list.
// The policy (policy/sar.go) keeps each request with its legal deadline
// and decides what is allowed; this file parses, signs and prints.
// Fulfilling a request is an ordinary view request, its quorum release and
// export: the policy keeps the deadline, not the footage.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"golang.org/x/term"

	"github.com/custos-cctv/custos/policy"
)

// parseDate reads a date flag: YYYY-MM-DD, a calendar day counted in UTC,
// as midnight UTC (how the policy carries days). A day after today's is
// refused: these flags record what has happened.
func parseDate(name, s string, now time.Time) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--%s %q: want a date YYYY-MM-DD (a calendar day, counted in UTC)", name, s)}
	}
	y, m, dd := now.UTC().Date()
	if today := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC); d.After(today) {
		return time.Time{}, usageError{fmt.Errorf("--%s %s is after today (%s in UTC): give the day it happened", name, s, today.Format(time.DateOnly))}
	}
	return d, nil
}

// day prints a policy date (midnight UTC) as its day.
func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func runSAROpen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sar open", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	subject := fs.String("subject", "", "who asks, as `TEXT`: \"NAME / reference\"; prefer a reference, as every node keeps a copy of the policy")
	received := fs.String("received", "", "the `DATE` the request arrived, YYYY-MM-DD (a UTC day): the deadline counts from it")
	sel := fs.String("cameras", "", "the camera selector `SEL`: SITE/CAMERA, SITE/*, tag:NAME or *")
	from := fs.String("from", "", "the footage asked for starts at `T`: an RFC 3339 time, now, or a duration back from now (2h: two hours ago)")
	to := fs.String("to", "", "the footage ends at `T`, exclusive: an RFC 3339 time, now, or a duration back from now")
	id := fs.String("id", "", "the request's `ID` (default: generated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *subject == "" || *received == "" || *sel == "" || *from == "" || *to == "" {
		return usageError{errors.New("--subject, --received, --cameras, --from and --to are required")}
	}
	now := time.Now()
	a := &policy.SubjectAccess{ID: *id, Subject: *subject, Selector: *sel}
	var err error
	if a.Received, err = parseDate("received", *received, now); err != nil {
		return err
	}
	if a.From, err = parseTime("from", *from, back, now); err != nil {
		return usageError{err}
	}
	if a.To, err = parseTime("to", *to, back, now); err != nil {
		return usageError{err}
	}
	a.From, a.To = a.From.UTC(), a.To.UTC()
	if !a.From.Before(a.To) {
		return usageError{fmt.Errorf("--from %s is not before --to %s", stamp(a.From), stamp(a.To))}
	}
	if a.ID == "" {
		a.ID = "sar-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
	}
	if err := signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindOpenSAR, SAR: a}, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", a.ID)
	if left := a.DaysLeft(now); left < 0 {
		hint(ctx, "subject access request %s recorded: its deadline was %s (%s); answer it now", a.ID, day(a.Deadline()), daysText(left))
	} else {
		hint(ctx, "subject access request %s recorded: answer by %s (%s); custos sar extend %s --by 1mo|2mo --reason TEXT extends that once, before it passes",
			a.ID, day(a.Deadline()), daysText(left), a.ID)
	}
	hint(ctx, "next: 1. request the footage for approval: custos request --cameras '%s' --from %s --to %s --purpose 'subject access request %s' --basis 'GDPR art. 15' --dir %s --as KEY (one request spans at most %v: split a longer range)",
		a.Selector, a.From.Format(time.RFC3339), a.To.Format(time.RFC3339), a.ID, *dir, durationText(policy.MaxRequestSpan))
	hint(ctx, "      2. once the quorum approved it, export it with everyone but the subject unrecognisable: custos export RID --out FILE.ts --redact x,y,w,h (or --keep x,y,w,h around the subject) --dir %s --as KEY",
		*dir)
	hint(ctx, "      3. once the answer has gone out: custos sar close %s --answered DATE --files FILE… --dir %s --as KEY", a.ID, *dir)
	return nil
}

// daysText says how far a deadline is from today.
func daysText(left int) string {
	switch {
	case left == 0:
		return "today"
	case left == 1:
		return "1 day left"
	case left > 1:
		return fmt.Sprintf("%d days left", left)
	case left == -1:
		return "1 day overdue"
	}
	return fmt.Sprintf("%d days overdue", -left)
}

// sarToChange fetches the policy from the node in dir and finds subject
// access request id in it: a missing one is said before the key's
// passphrase is asked for.
func sarToChange(ctx context.Context, dir, id string) (*policy.State, *policy.SubjectAccess, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	a := st.SubjectAccess[id]
	if a == nil {
		return nil, nil, fmt.Errorf("no subject access request %q in the policy of the node in %s (custos sar list --all lists them)", id, dir)
	}
	return st, a, nil
}

// submitSAR signs c with the key in keyFile, as its user in st, and
// submits it through the node in dir.
func submitSAR(ctx context.Context, dir, keyFile string, st *policy.State, c *policy.Command, stdout io.Writer) error {
	k, signer, err := loadSigner(st, keyFile)
	if err != nil {
		return err
	}
	defer k.Close()
	// The clock starts once the passphrase is in.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return submitAs(ctx, dir, st, k, signer, c, stdout)
}

// parseExtension reads --by: 1mo or 2mo, the extension art. 12(3) allows.
func parseExtension(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "mo"))
	switch {
	case err != nil || !strings.HasSuffix(s, "mo") || n < 1:
		return 0, fmt.Errorf("--by %q: want 1mo or 2mo (months)", s)
	case n > policy.MaxSARExtensionMonths:
		return 0, fmt.Errorf("--by %s: art. 12(3) allows one extension of at most %d months; want 1mo or 2mo", s, policy.MaxSARExtensionMonths)
	}
	return n, nil
}

func runSARExtend(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("sar extend", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	by := fs.String("by", "", "extend the deadline by `N`: 1mo or 2mo (allowed once, before the deadline passes)")
	reason := fs.String("reason", "", "why, as `TEXT`: what the data subject is told (art. 12(3): the complexity and number of requests)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which subject access request? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *by == "" || *reason == "" {
		return usageError{errors.New("--by and --reason are required")}
	}
	months, err := parseExtension(*by)
	if err != nil {
		return usageError{err}
	}
	st, a, err := sarToChange(ctx, *dir, id)
	if err != nil {
		return err
	}
	e := &policy.SARExtension{SAR: id, Months: months, Reason: *reason}
	if err := submitSAR(ctx, *dir, *as, st, &policy.Command{Kind: policy.KindExtendSAR, SARExtension: e}, stdout); err != nil {
		return err
	}
	a.Extension = e
	fmt.Fprintf(stdout, "%s: deadline extended by %d months to %s (%s)\n", id, months, day(a.Deadline()), daysText(a.DaysLeft(time.Now())))
	hint(ctx, "tell the data subject, with the reason, before %s, the original deadline", day(a.OriginalDeadline()))
	return nil
}

// fileList is a repeatable flag of file names.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// filesHash is the hash sar close records of the files sent to the data
// subject: the SHA-256 of the text "HEX  NAME\n", one line per file, where
// HEX is the file's SHA-256 in lower-case hex and NAME its base name,
// sorted by NAME in byte order. It is what sha256sum prints in the files'
// directory, sorted, so anyone holding the files can recompute it:
//
//	cd DIR && sha256sum FILE… | LC_ALL=C sort -k2 | sha256sum
//
// Names that sha256sum would escape (a backslash or a control character)
// and two files of one name are refused. It returns the hash and the lines.
func filesHash(paths []string) (string, []string, error) {
	byName := map[string]string{}
	for _, p := range paths {
		name := filepath.Base(p)
		if strings.ContainsFunc(name, func(r rune) bool { return r == '\\' || unicode.IsControl(r) }) {
			return "", nil, usageError{fmt.Errorf("--files %q: its name has a backslash or a control character, which sha256sum escapes; rename it", p)}
		}
		if prev, ok := byName[name]; ok {
			return "", nil, usageError{fmt.Errorf("--files %q and %q have the same name %s: the hash names each file by its base name", prev, p, name)}
		}
		byName[name] = p
	}
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		sum, err := fileSHA256(byName[name])
		if err != nil {
			return "", nil, err
		}
		lines = append(lines, sum+"  "+name)
	}
	all := sha256.Sum256([]byte(strings.Join(lines, "\n") + "\n"))
	return hex.EncodeToString(all[:]), lines, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", err
	} else if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--files %s is not a regular file: give the files sent, one --files each", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("--files %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func runSARClose(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("sar close", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	answered := fs.String("answered", "", "the `DATE` the answer went out, YYYY-MM-DD (a UTC day)")
	var files fileList
	fs.Var(&files, "files", "a `FILE` sent to the data subject; repeat the flag for each. The recorded hash is the SHA-256 of the sorted lines sha256sum prints for them: cd DIR && sha256sum FILE… | LC_ALL=C sort -k2 | sha256sum")
	given := fs.String("files-hash", "", "instead of --files: the files' hash `HEX` (64 hex digits), computed as --files says")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which subject access request? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	switch {
	case *answered == "":
		return usageError{errors.New("--answered DATE is required")}
	case len(files) == 0 && *given == "":
		return usageError{errors.New("give the files sent: --files FILE (repeated), or their hash with --files-hash HEX")}
	case len(files) > 0 && *given != "":
		return usageError{errors.New("give --files or --files-hash, not both")}
	}
	ans, err := parseDate("answered", *answered, time.Now())
	if err != nil {
		return err
	}
	var sum string
	var lines []string
	if len(files) > 0 {
		if sum, lines, err = filesHash(files); err != nil {
			return err
		}
	} else {
		sum = strings.ToLower(strings.TrimSpace(*given))
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
			return usageError{fmt.Errorf("--files-hash %q: want a SHA-256, 64 hex digits", *given)}
		}
	}
	st, _, err := sarToChange(ctx, *dir, id)
	if err != nil {
		return err
	}
	x := &policy.SARClosure{SAR: id, Answered: ans, Files: sum}
	if err := submitSAR(ctx, *dir, *as, st, &policy.Command{Kind: policy.KindCloseSAR, SARClosure: x}, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s closed: answered on %s, files hash %s\n", id, day(ans), sum)
	for _, l := range lines {
		fmt.Fprintf(stdout, "  %s\n", l)
	}
	return nil
}

// sarRow is one subject access request as `custos sar list --json`
// prints it.
type sarRow struct {
	*policy.SubjectAccess
	Deadline time.Time `json:"deadline"`  // the last day to answer (midnight UTC)
	DaysLeft *int      `json:"days_left"` // to the deadline, negative once overdue; null once closed
	State    string    `json:"state"`     // open, extended, OVERDUE or closed
}

// sarState is a request's state as sar list shows it.
func sarState(a *policy.SubjectAccess, now time.Time) string {
	switch {
	case a.Closure != nil:
		return "closed"
	case a.Overdue(now):
		return "OVERDUE"
	case a.Extension != nil:
		return "extended"
	}
	return "open"
}

// sarRows are the requests to list, the nearest deadline first; closed
// ones only with all.
func sarRows(st *policy.State, now time.Time, all bool) (rows []sarRow, closed int) {
	for _, a := range st.SubjectAccesses() {
		if a.Closure != nil && !all {
			closed++
			continue
		}
		r := sarRow{SubjectAccess: a, Deadline: a.Deadline(), State: sarState(a, now)}
		if a.Closure == nil {
			left := a.DaysLeft(now)
			r.DaysLeft = &left
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b sarRow) int { return a.Deadline.Compare(b.Deadline) })
	return rows, closed
}

func runSARList(ctx context.Context, args []string, stdout io.Writer) error {
	st, l, err := listingPolicy(ctx, "sar list", "list the closed requests too", args)
	if err != nil {
		return err
	}
	rows, closed := sarRows(st, time.Now(), l.all)
	if l.asJSON {
		if rows == nil {
			rows = []sarRow{}
		}
		return json.NewEncoder(stdout).Encode(rows)
	}
	if err := writeSARTable(stdout, rows, colorful(stdout)); err != nil {
		return err
	}
	if closed > 0 {
		hint(ctx, "%d closed (custos sar list --all lists them)", closed)
	}
	return nil
}

// colorful reports whether w is a terminal that takes colour (NO_COLOR,
// no-color.org, turns it off).
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}

const (
	red      = "\033[31m"
	colorOff = "\033[0m"
)

// writeSARTable prints rows as a table; with color, overdue rows are red.
// Colour is added to whole lines after tabwriter aligned them, since it
// would count the escape sequences as width.
func writeSARTable(w io.Writer, rows []sarRow, color bool) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUBJECT\tRECEIVED\tDEADLINE\tDAYS LEFT\tSTATE\tCAMERAS\tRANGE")
	for _, r := range rows {
		left := "-"
		if r.DaysLeft != nil {
			left = strconv.Itoa(*r.DaysLeft)
		}
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s → %s", r.ID, r.Subject, day(r.Received), day(r.Deadline),
			left, r.State, strings.Join(r.Cameras, ","), stamp(r.From), stamp(r.To))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(b.String(), "\n")
	for i, r := range rows {
		// printable turned any newline in the text into '?': line i+1
		// is row i.
		if color && r.State == "OVERDUE" {
			lines[i+1] = red + strings.TrimSuffix(lines[i+1], "\n") + colorOff + "\n"
		}
	}
	_, err := io.WriteString(w, strings.Join(lines, ""))
	return err
}

// overdueSARs are st's unanswered subject access requests past their
// deadline, the longest overdue first.
func overdueSARs(st *policy.State, now time.Time) []*policy.SubjectAccess {
	var out []*policy.SubjectAccess
	for _, a := range st.SubjectAccesses() {
		if a.Overdue(now) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b *policy.SubjectAccess) int { return a.Deadline().Compare(b.Deadline()) })
	return out
}

// writeOverdueSARs is status's warning of overdue subject access requests.
// It names them by ID only: status output is pasted into tickets, and the
// subject is personal data.
func writeOverdueSARs(w io.Writer, overdue []*policy.SubjectAccess, now time.Time) {
	if len(overdue) == 0 {
		return
	}
	var items []string
	for _, a := range overdue {
		items = append(items, fmt.Sprintf("%s (deadline %s, %s)", a.ID, day(a.Deadline()), daysText(a.DaysLeft(now))))
	}
	fmt.Fprintf(w, "OVERDUE    subject access requests unanswered past their deadline: %s; custos sar list shows them, custos sar close records an answer\n",
		printable(strings.Join(items, ", ")))
}
