package main

// Footage requests and exports: request, requests, approve, deny,
// export, verify-export. The logic is in policy (what is allowed), keys
// (the crypto) and node (release and export); this file parses, signs and
// prints.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/redact"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

func runRequest(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("request", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	sel := fs.String("cameras", "", "the camera selector `SEL`: SITE/CAMERA, SITE/*, tag:NAME or *")
	from := fs.String("from", "", "the footage starts at `T`: an RFC 3339 time, now, or a duration back from now (2h: two hours ago)")
	to := fs.String("to", "", "the footage ends at `T`, exclusive: an RFC 3339 time, now, or a duration back from now")
	purpose := fs.String("purpose", "", "why the footage is needed, as `TEXT`")
	basis := fs.String("basis", "", "the legal basis, as `TEXT`, e.g. \"art. 6(1)(f): theft on 2026-11-26\"")
	expires := fs.Duration("expires", 24*time.Hour, "how long the request (and its keys) may live, a duration `D`")
	id := fs.String("id", "", "the request's `ID` (default: generated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *sel == "" || *from == "" || *to == "" || *purpose == "" || *basis == "" {
		return usageError{errors.New("--cameras, --from, --to, --purpose and --basis are required")}
	}
	now := time.Now()
	r := &policy.Request{ID: *id, Selector: *sel, Purpose: *purpose, Basis: *basis, Expires: now.Add(*expires).UTC()}
	var err error
	if r.From, err = parseTime("from", *from, back, now); err != nil {
		return usageError{err}
	}
	if r.To, err = parseTime("to", *to, back, now); err != nil {
		return usageError{err}
	}
	r.From, r.To = r.From.UTC(), r.To.UTC()
	if r.ID == "" {
		r.ID = "r-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := node.FetchStatus(cctx, *dir)
	if err != nil {
		return err
	}
	r.Node = st.Name
	// The one-time key is made in the node's memory; only its public half
	// comes here.
	if r.Key, err = node.NewReleaseKeyVia(cctx, *dir); err != nil {
		return err
	}
	if err := signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindCreateRequest, Request: r}, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", r.ID)
	hint(ctx, "next: approvers other than you run custos approve %s --dir DIR --as THEIR.key on a node of the federation; once the quorum approved, on %s: custos export %s --dir %s --as YOUR.key --out FILE.ts",
		r.ID, r.Node, r.ID, *dir)
	return nil
}

// requestRow is one request as `custos requests --json` prints it.
type requestRow struct {
	*policy.Request
	Status    string `json:"status"`
	Threshold int    `json:"threshold"`
	// Counted are the approvals that count now (an approver revoked
	// since no longer does).
	Counted int    `json:"counted"`
	Digest  string `json:"digest"`
	// Exported is set, and Status is "exported", when this node exported
	// the request: its one-time key served that export and is gone. Only
	// the request's node knows it.
	Exported *release.Exported `json:"exported,omitempty"`
}

func runRequests(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "requests", args)
	if err != nil {
		return err
	}
	dir, _, _ := dirFlags("requests", args) // localPolicy parsed them already
	exported, err := node.FetchExported(ctx, dir)
	if err != nil {
		return err
	}
	now := time.Now()
	var rows []requestRow
	for _, r := range sortedValues(st.Requests) {
		row := requestRow{Request: r, Status: st.RequestStatus(r, now), Counted: st.CountApprovals(r.Approvals, now, r.Requester),
			Threshold: st.ApprovalThreshold(), Digest: policy.RequestDigest(st.FederationID, r)}
		for _, e := range exported {
			if e.Request == r.ID {
				row.Status, row.Exported = "exported", &e
			}
		}
		rows = append(rows, row)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tACTION\tSTATUS\tAPPROVALS\tREQUESTER\tNODE\tCAMERAS\tFROM\tTO\tPURPOSE")
	for _, r := range rows {
		action, nodeName := cmp.Or(r.Action, "view"), cmp.Or(r.Node, "-")
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s", r.ID, action, r.Status, r.Counted, r.Threshold, r.Requester, nodeName,
			strings.Join(r.Cameras, ","), stamp(r.From), stamp(r.To), r.Purpose)))
	}
	return tw.Flush()
}

func runDeny(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("deny", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	reason := fs.String("reason", "", "why the request is refused, as `TEXT` (required)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which request? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *reason == "" {
		return usageError{errors.New("--reason is required")}
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindDenyRequest,
		Denial: &policy.Denial{Request: id, Reason: *reason}}, stdout)
}

// manifestPaths are where an export's manifest and signature go.
func manifestPaths(export string) (body, sig string) {
	return export + ".manifest.json", export + ".manifest.sig"
}

// manifestKeyPath is where export writes the signer's public key, for a
// verifier without access to the federation.
func manifestKeyPath(export string) string { return export + ".manifest.pub" }

func runExport(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	out := fs.String("out", "", "the `FILE` to write, .ts (MPEG-TS) or .mp4 (must not exist)")
	allowGaps := fs.Bool("allow-gaps", false, "write the export although footage the stores' chain shows recorded is missing or cannot be opened; every gap is listed in the signed manifest")
	rf := addRedactFlags(fs)
	redactedOut := fs.String("redacted-out", "", "with --redact or --keep: write the redacted copy to `FILE2` (default: FILE with .redacted before its extension)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which request? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("--out is required")}
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	// Everything about the redaction that can fail without the video
	// fails here, before the export spends the request's one-time key.
	var opts redact.Options
	var redactTo string
	if rf.given() {
		if opts, err = rf.options(); err != nil {
			return err
		}
		if strings.EqualFold(filepath.Ext(abs), ".mp4") {
			return usageError{errors.New("redaction reads MPEG-TS: give --out FILE.ts to export and redact")}
		}
		redactTo = redactedName(abs)
		if *redactedOut != "" {
			if redactTo, err = filepath.Abs(*redactedOut); err != nil {
				return err
			}
		}
		if redactTo == abs {
			return usageError{errors.New("--redacted-out is the export itself: the redacted copy is a new file")}
		}
		if err := distinctNames(abs, redactTo, "--redacted-out"); err != nil {
			return err
		}
		if err := prepareRedaction(redactTo); err != nil {
			return err
		}
	} else if flagGiven(fs, "redacted-out") || flagGiven(fs, "block") {
		return usageError{errors.New("--redacted-out and --block go with --redact or --keep")}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := signingPolicy(pctx, *dir)
	cancel()
	if err != nil {
		return err
	}
	k, name, err := loadSigner(st, *as)
	if err != nil {
		return err
	}
	defer k.Close()
	fid, err := node.FederationIDOf(*dir)
	if err != nil {
		return err
	}
	// The node serves the export to the requester's key, not to a name.
	order := release.ExportRequest{Request: id, Out: abs, Exporter: name, AllowGaps: *allowGaps}
	if err := release.SignExport(k, fid, &order); err != nil {
		return err
	}
	hint(ctx, "exporting %s to %s…", id, abs)
	stop := showProgress(ctx, *dir, id)
	res, err := node.ExportVia(ctx, *dir, order)
	stop()
	if err != nil {
		return err
	}
	if res.Refused != "" {
		return errDenied{res.Refused}
	}
	body, sig, err := keys.SignManifest(k, res.Manifest)
	if err != nil {
		return err
	}
	bp, sp := manifestPaths(abs)
	if err := os.WriteFile(bp, body, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(sp, sig, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(manifestKeyPath(abs), k.ArmoredPublicKey(), 0o600); err != nil {
		return err
	}
	o := res.Manifest.Output
	fmt.Fprintf(stdout, "exported %s: %s, %d frames, %d bytes, sha256 %s\nmanifest %s, signed by %s (%s)\nkeys released in %v; export took %v\n",
		id, abs, o.Frames, o.Bytes, o.SHA256, bp, name, k.Fingerprint(), res.Release.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	printChain(stdout, res.Manifest)
	if redactTo == "" {
		return nil
	}
	again := fmt.Sprintf("custos redact %s %s --out %s --as %s --dir %s", abs, rf.flagsAgain(), redactTo, *as, *dir)
	return redactAfterExport(ctx, stdout, abs, res.Manifest, body, k, opts, redactTo, again)
}

// redactAfterExport makes the redacted copy export --redact asks for. The
// export is done and its one-time key spent, so an error keeps it and
// says how to redact it with custos redact (the again command).
func redactAfterExport(ctx context.Context, stdout io.Writer, export string, m *keys.Manifest, body []byte, k *keys.AdminKey,
	opts redact.Options, out, again string) error {
	d, err := redactExport(ctx, export, m, body, k, opts, out)
	if err != nil {
		return fmt.Errorf("%w; the export %s and its manifest are complete and kept (its one-time key is spent): redact it with %s", err, export, again)
	}
	printRedacted(stdout, out, d, k)
	return nil
}

// flagGiven reports whether the command line set the flag.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// fileExists reports whether something is at path (a dangling symlink
// included).
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// printChain says which stores' chains of custody the export covers and
// lists every gap.
func printChain(w io.Writer, m *keys.Manifest) {
	type span struct {
		store       string
		first, last uint64
	}
	seen := map[string]*span{}
	var order []string
	for _, s := range m.Segments {
		k := s.Camera + " " + s.Store
		if sp := seen[k]; sp != nil {
			sp.last = s.Seq
			continue
		}
		seen[k] = &span{store: s.Store, first: s.Seq, last: s.Seq}
		order = append(order, k)
	}
	for _, k := range order {
		sp := seen[k]
		cam, _, _ := strings.Cut(k, " ")
		fmt.Fprintf(w, "%s: sealed by store %s, segments %d to %d of its chain\n", cam, sp.store, sp.first, sp.last)
	}
	if len(m.Gaps) == 0 {
		fmt.Fprintln(w, "complete: no gap in the chain of custody")
		return
	}
	fmt.Fprintf(w, "INCOMPLETE: %d gaps (listed in the manifest):\n", len(m.Gaps))
	for _, g := range m.Gaps {
		fmt.Fprintf(w, "  %s %s … %s: %s\n", g.Camera, g.From.Format(time.RFC3339Nano), g.To.Format(time.RFC3339Nano), g.Reason)
	}
}

func runVerifyExport(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("verify-export", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of a node of the exporter's federation: the signing key must be the exporter's key in its policy")
	keyFile := fs.String("key", "", "check the signature with this public key `FILE.pub` (default: FILE.manifest.pub, which export wrote beside the manifest)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	file := pos[0]
	switch {
	case file == "":
		return usageError{errors.New("which export? give FILE before the flags")}
	case *dir != "" && *keyFile != "":
		return usageError{errors.New("give --dir (the policy names the exporter's key) or --key, not both")}
	}
	// A redacted file has a redaction manifest instead of an export's.
	rb, _, _ := redactionPaths(file)
	if _, err := os.Lstat(rb); err == nil {
		if mb, _ := manifestPaths(file); fileExists(mb) {
			return fmt.Errorf("both %s and %s are beside %s: a file is an export or a redacted copy, not both; move the one that does not belong away",
				filepath.Base(mb), filepath.Base(rb), file)
		}
		rv, err := verifyRedacted(ctx, file, *dir, *keyFile)
		if err != nil {
			return err
		}
		printRedactionVerified(ctx, stdout, file, rv)
		return nil
	}
	v, err := verifyExport(ctx, file, *dir, *keyFile)
	if err != nil {
		return err
	}
	m := v.m
	head := "OK"
	if !v.identified {
		head = "INTACT"
	}
	fmt.Fprintf(stdout, "%s: %s is the export of request %s (%s, %s to %s), %d frames; exported by %s on %s; requested by %s, approved by %s\n",
		head, file, m.RequestID, strings.Join(m.Cameras, ","), stamp(m.From), stamp(m.To), m.Output.Frames,
		m.Exporter, m.ExporterNode, m.Requester, strings.Join(m.Approvers, ", "))
	fmt.Fprintf(stdout, "checked:\n")
	for _, c := range v.checks {
		fmt.Fprintf(stdout, "  %s\n", c)
	}
	if !v.identified {
		fmt.Fprintf(stdout, "not checked: whose key %s is. Compare it with %s's key fingerprint, or run verify-export with --dir on a node of federation %q\n",
			v.fingerprint, m.Exporter, m.Federation)
	}
	if m.Output.Name != filepath.Base(file) {
		hint(ctx, "note: the file was exported as %s", m.Output.Name)
	}
	return nil
}

// verified is what verifyExport found and how: identified says the key
// was checked against the policy (or the key file the caller gave).
type verified struct {
	m           *keys.Manifest
	body        []byte // the manifest as on disk
	fingerprint string
	checks      []string
	identified  bool
}

// verifyExport checks file against its signed manifest: the signature with
// the exporter's key as the policy of the node in dir knows it; without
// dir, with keyFile or the key export wrote beside the manifest.
func verifyExport(ctx context.Context, file, dir, keyFile string) (verified, error) {
	var v verified
	bp, sp := manifestPaths(file)
	body, err := os.ReadFile(bp)
	if errors.Is(err, os.ErrNotExist) {
		return v, fmt.Errorf("no %s beside %s: verify-export checks what custos export wrote", filepath.Base(bp), file)
	}
	if err != nil {
		return v, err
	}
	sig, err := os.ReadFile(sp)
	if err != nil {
		return v, err
	}
	claimed, err := keys.ParseManifest(body)
	if err != nil {
		return v, err
	}
	kp := manifestKeyPath(file)
	ks, err := signerKey(ctx, dir, keyFile, kp, claimed.Federation, claimed.Exporter, "exporter")
	if errors.Is(err, errNoKeyBeside) {
		return v, fmt.Errorf("no %s beside the export (an export by an older custos): give --dir DIR, a node of the federation, or --key EXPORTER.pub", kp)
	}
	if err != nil {
		return v, err
	}
	v.identified = ks.identified
	pub, wantFP, source := ks.pub, ks.wantFP, ks.source
	m, fp, err := keys.VerifyManifest(body, sig, pub)
	if err != nil {
		return v, err
	}
	if wantFP != "" && !strings.EqualFold(fp, wantFP) {
		return v, fmt.Errorf("the manifest is signed by key %s, not by %s's key %s", fp, m.Exporter, wantFP)
	}
	v.m, v.fingerprint, v.body = m, fp, body
	v.checks = append(v.checks, fmt.Sprintf("signature: the manifest is signed by key %s, %s", fp, source))
	f, err := os.Open(file)
	if err != nil {
		return v, err
	}
	defer f.Close()
	if err := keys.CheckExport(m, f); err != nil {
		return v, err
	}
	v.checks = append(v.checks, fmt.Sprintf("file: %s has the %d bytes and the SHA-256 the manifest states", file, m.Output.Bytes))
	if dir != "" {
		v.checks = append(v.checks, fmt.Sprintf("exporter: %s is a user of federation %q and the key is theirs", m.Exporter, m.Federation))
	}
	return v, nil
}

// errNoKeyBeside: no --dir, no --key, and no public key beside the file.
var errNoKeyBeside = errors.New("no public key beside the file")

// keySource is the public key a signature is checked with, and where it
// came from: identified when the policy (or the caller's own key file)
// names it, not merely a key that came with the files.
type keySource struct {
	pub            []byte
	wantFP, source string
	identified     bool
}

// signerKey finds the key a manifest signed by user (of federation) is
// checked with: with dir, the key the policy of the node there holds for
// user; else the key in keyFile; else the key in pubPath, written beside
// the file (errNoKeyBeside when there is none).
func signerKey(ctx context.Context, dir, keyFile, pubPath, federation, user, role string) (keySource, error) {
	switch {
	case dir != "":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := node.FetchPolicy(ctx, dir)
		if err != nil {
			return keySource{}, err
		}
		if federation != st.Federation {
			return keySource{}, fmt.Errorf("the manifest is of federation %q, the local node's is %q", federation, st.Federation)
		}
		u := st.Users[user]
		if u == nil {
			return keySource{}, fmt.Errorf("the %s %q is no user in the policy", role, user)
		}
		return keySource{pub: u.PublicKey, wantFP: u.Fingerprint, identified: true,
			source: fmt.Sprintf("%s's key in the policy of federation %q", u.Name, st.Federation)}, nil
	case keyFile != "":
		pub, _, err := keys.ReadPublicKeyFile(keyFile)
		if err != nil {
			return keySource{}, err
		}
		return keySource{pub: pub, source: "the key in " + keyFile + " (--key)", identified: true}, nil
	}
	pub, _, err := keys.ReadPublicKeyFile(pubPath)
	if errors.Is(err, os.ErrNotExist) {
		return keySource{}, errNoKeyBeside
	}
	if err != nil {
		return keySource{}, err
	}
	with := "export"
	if role == "redactor" {
		with = "redacted file"
	}
	return keySource{pub: pub, source: "the key in " + pubPath + ", which came with the " + with}, nil
}

func runRecoverShares(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("recover-shares", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the request's node")
	keyFile := fs.String("key", "", "the recovery key `FILE` custos recovery keygen wrote (passphrase-protected)")
	passFile := fs.String("passphrase-file", "", "read the recovery key's passphrase from the first line of `F` (default: CUSTOS_PASSPHRASE, else ask on the terminal)")
	fid := fs.String("federation", "", "the federation ID `FID` custos init printed (custos quorum show prints it too): the release is proven from signatures anchored there, not taken from the node")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which request? give its ID before the flags")}
	}
	if *dir == "" || *keyFile == "" || *fid == "" {
		return usageError{errors.New("--dir, --key and --federation are required")}
	}
	rk, err := loadRecoveryKey(*keyFile, *passFile)
	if err != nil {
		return err
	}
	defer rk.Zero()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	n, err := node.RecoverSharesVia(ctx, *dir, *fid, id, rk)
	if errors.Is(err, policy.ErrNotReleasable) || errors.Is(err, policy.ErrUnverified) {
		return errDenied{err.Error()}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the recovery key's answers for %d segments are sealed to request %s's one-time key and held by its node; export it now\n", n, id)
	return nil
}

// loadRecoveryKey opens the passphrase-protected recovery key file that
// custos recovery keygen wrote (keys.LoadRecoveryKey checks the file's
// owner and mode and refuses an unencrypted key); the passphrase is wiped,
// and the caller wipes the key. Errors never echo the file.
func loadRecoveryKey(path, passFile string) (*keys.CustodianKey, error) {
	pass, err := recoveryPassphrase(passFile, false)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return keys.LoadRecoveryKey(path, pass)
}

// showProgress draws a progress bar for export id on a terminal (stderr),
// from the running node's status, until the returned stop is called.
func showProgress(ctx context.Context, dir, id string) (stop func()) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		drawn := false
		for {
			select {
			case <-done:
				if drawn {
					fmt.Fprint(os.Stderr, "\r\033[K")
				}
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := node.FetchStatus(sctx, dir)
			cancel()
			if err != nil {
				continue
			}
			for _, p := range st.Exports {
				if p.Request == id {
					fmt.Fprintf(os.Stderr, "\r%s %3.0f%%  %.1f MB", progressBar(p.Fraction, 30), 100*p.Fraction, float64(p.Bytes)/1e6)
					drawn = true
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// progressBar renders f (0..1) in width cells.
func progressBar(f float64, width int) string {
	n := int(min(max(f, 0), 1) * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
