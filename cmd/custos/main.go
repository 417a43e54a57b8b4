// Command custos is the Custos CLI. It parses flags, talks to the local node
// and prints; the logic lives in package node and below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	gvlog "gvisor.dev/gvisor/pkg/log"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"up":      {"run a node until SIGINT/SIGTERM", runUp},
	"status":  {"show a running node's key, mesh address and peers", runStatus},
	"key":     {"print a node's public key and mesh address (creating the key if needed)", runKey},
	"demo":    {"run a small federation on this machine and show what it does", runDemo},
	"version": {"print the version", runVersion},
	"audit":   {"read the node's audit journal, or verify its hash chain (audit verify)", runAudit},
	"admin":   {"admin keygen (make an admin's OpenPGP key) and admin add (add a user to the policy)", runAdmin},
	"init":    {"found a federation on its first datacenter", runInit},
	"site":    {"site add: add a site to the policy", runSite},
	"invite":  {"invite a node: prints a one-line join token", runInvite},
	"join":    {"join a federation with a token", runJoin},
	"grant":   {"grant a user or node live/playback/export on cameras, for a window", runGrant},
	"revoke":  {"revoke a node, grant or admin", runRevoke},
	"members": {"list the policy's nodes", runMembers},
	"grants":  {"list the policy's grants", runGrants},
	"camera":  {"add, list or remove cameras (credentials stay on their store)", runCamera},
	"cameras": {"what a store records: per camera fps, bitrate, segments, errors", runCameras},

	"request":        {"request recorded footage (cameras, range, purpose, legal basis) for approval", runRequest},
	"requests":       {"list footage requests and their approvals", runRequests},
	"approve":        {"approve a footage request or a governance proposal (never your own)", runApprove},
	"quorum":         {"quorum seal: end the bootstrap, so governance changes need the approvers' quorum; quorum show", runQuorum},
	"proposals":      {"list governance proposals and their approvals", runProposals},
	"rescue":         {"execute a proposal during a lock-out with a rescue code and every remaining approver", runRescue},
	"deny":           {"deny a footage request, with a reason (a veto)", runDeny},
	"live":           {"watch a camera live: MPEG-TS to a file or stdout (custos live … | ffplay -)", runLive},
	"export":         {"export an approved request's footage to an MPEG-TS file with a signed manifest", runExport},
	"verify-export":  {"check an export against its signed manifest", runVerifyExport},
	"recover-shares": {"release the recovery key's shares of a request to its node (stands in for a lost datacenter)", runRecoverShares},
	"recovery":       {"recovery keygen (make the controller's recovery key, offline, on the admin's machine) and recovery show FILE.pub", runRecovery},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: custos <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'custos <command> -h' for a command's flags.\n")
}

func main() {
	// gVisor's netstack logs protocol warnings (an aborted TCP handshake,
	// say) straight to stderr in its own format; they are expected in a mesh
	// whose peers come and go, and our own logs report what matters.
	gvlog.SetTarget(quietEmitter{})
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type quietEmitter struct{}

func (quietEmitter) Emit(int, gvlog.Level, time.Time, string, ...any) {}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "custos: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = context.WithValue(ctx, stderrKey{}, stderr)
	if err := cmd.run(ctx, args[1:], stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "custos %s: %v\n", args[0], err)
		switch {
		case errors.As(err, new(usageError)):
			return 2
		case errors.Is(err, errAuditBroken):
			return 3
		case errors.As(err, new(errDenied)):
			return 4
		}
		return 1
	}
	return 0
}

// usageError is a bad flag or argument: exit status 2.
type usageError struct{ error }

// parseFlags parses args and refuses stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

type stderrKey struct{}

// hint tells the user, on stderr, what comes next; stdout keeps only what
// scripts read (a token, an ID).
func hint(ctx context.Context, format string, a ...any) {
	w, ok := ctx.Value(stderrKey{}).(io.Writer)
	if !ok {
		w = os.Stderr
	}
	fmt.Fprintf(w, format+"\n", a...)
}
