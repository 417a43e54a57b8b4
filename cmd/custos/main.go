// Command custos is the Custos CLI. It parses flags, talks to the local node
// and prints; the logic lives in package node and below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	gvlog "gvisor.dev/gvisor/pkg/log"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

func main() {
	// gVisor's netstack logs protocol warnings (an aborted TCP handshake,
	// say) straight to stderr in its own format; they are expected in a mesh
	// whose peers come and go, and our own logs report what matters.
	gvlog.SetTarget(quietEmitter{})
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type quietEmitter struct{}

func (quietEmitter) Emit(int, gvlog.Level, time.Time, string, ...any) {}

// Exit statuses besides 0 and 1.
const (
	exitUsage       = 2 // a bad flag or argument
	exitAuditBroken = 3 // audit verify found the chain broken
	exitRefused     = 4 // the policy refused
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	if isHelp(args[0]) || args[0] == "help" {
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		// custos help CMD [SUB] is custos CMD [SUB] -h.
		args = append(append([]string(nil), args[1:]...), "-h")
	}
	name, cmd, rest, code := resolve(args, stdout, stderr)
	if cmd.run == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = context.WithValue(ctx, stderrKey{}, stderr)
	err := cmd.run(ctx, rest, stdout)
	if err == nil {
		return 0
	}
	var h helpRequest
	if errors.As(err, &h) {
		printHelp(stdout, name, cmd, h.fs)
		return 0
	}
	// An error up already wrote to its JSON log is not printed again as
	// text: its log holds nothing but JSON.
	logged := errors.As(err, new(loggedError))
	if !logged {
		fmt.Fprintf(stderr, "custos %s: %s\n", name, sentence(name, err))
	}
	switch {
	case errors.As(err, new(usageError)):
		if !logged {
			fmt.Fprintf(stderr, "usage: custos %s\nRun 'custos help %s' for what it does and its flags.\n", cmd.usage, name)
		}
		return exitUsage
	case errors.Is(err, errAuditBroken):
		return exitAuditBroken
	case refused(err):
		return exitRefused
	}
	return 1
}

// resolve finds the command args name: "camera add" runs the camera group's
// add. It prints a group's help or the error itself and returns a command
// without run, and the exit status, when there is nothing to run.
func resolve(args []string, stdout, stderr io.Writer) (name string, cmd command, rest []string, code int) {
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "custos: unknown command %q\n\n", args[0])
		usage(stderr)
		return "", command{}, nil, exitUsage
	}
	name, rest = args[0], args[1:]
	if len(rest) > 0 {
		if sub, ok := cmd.subs[rest[0]]; ok {
			return name + " " + rest[0], sub, rest[1:], 0
		}
	}
	if cmd.run != nil {
		return name, cmd, rest, 0
	}
	switch {
	case len(rest) > 0 && isHelp(rest[0]):
		printGroupHelp(stdout, name, cmd)
		return name, command{}, nil, 0
	case len(rest) == 0:
		fmt.Fprintf(stderr, "custos %s: which one? want %s\n\n", name, orList(sortedKeys(cmd.subs)))
	default:
		fmt.Fprintf(stderr, "custos %s: unknown subcommand %q; want %s\n\n", name, rest[0], orList(sortedKeys(cmd.subs)))
	}
	printGroupHelp(stderr, name, cmd)
	return name, command{}, nil, exitUsage
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// refused reports whether err is the policy's refusal: a command it did not
// apply, an export or live view it refused.
func refused(err error) bool {
	var ae *node.APIError
	return errors.As(err, new(errDenied)) || errors.Is(err, policy.ErrRefused) ||
		(errors.As(err, &ae) && ae.Status == http.StatusForbidden)
}

// sentence is err's message without a prefix that repeats what the
// "custos NAME:" before it already says.
func sentence(name string, err error) string {
	msg := err.Error()
	for _, p := range []string{name + ": ", "node: ", "keys: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// usageError is a bad flag or argument: exit status 2.
type usageError struct{ error }

// loggedError is an error the command has written to its log already.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// helpRequest is -h: run prints the command's help on stdout, exit 0.
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string { return "help requested" }

// parseFlags parses args and refuses stray positional arguments. The flag
// package prints nothing: run says what was wrong, or prints the help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpRequest{fs}
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// positional takes the n positional arguments that come before a command's
// flags (approve ID --dir …). A missing one is left empty for the command
// to report after parsing, so that -h works without it.
func positional(args []string, n int) (pos []string, rest []string) {
	pos = make([]string, n)
	for i := range n {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			break
		}
		pos[i], args = args[0], args[1:]
	}
	return pos, args
}

type stderrKey struct{}

// stderrOf is the stderr run was given.
func stderrOf(ctx context.Context) io.Writer {
	if w, ok := ctx.Value(stderrKey{}).(io.Writer); ok {
		return w
	}
	return os.Stderr
}

// hint tells the user, on stderr, what comes next; stdout keeps only what
// scripts read (a token, an ID).
func hint(ctx context.Context, format string, a ...any) {
	fmt.Fprintf(stderrOf(ctx), format+"\n", a...)
}
