package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/custos-cctv/custos/keys"
)

func runAdminKeygen(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("admin keygen", flag.ContinueOnError)
	out := fs.String("out", "", "the private key `FILE` to write (0600); the public key goes to FILE.pub")
	name := fs.String("name", "", "the admin's `NAME` in the policy")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || *name == "" {
		return usageError{errors.New("--out and --name are required")}
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists; refusing to overwrite a key", *out)
	}
	pass, err := readPassphrase(true)
	if err != nil {
		return err
	}
	defer clear(pass)
	k, err := keys.NewAdminKey(*name, time.Now())
	if err != nil {
		return err
	}
	defer k.Close()
	if err := keys.WriteAdminKey(*out, k, pass); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "admin key for %q\n  private (passphrase-protected): %s\n  public:  %s.pub\n  fingerprint: %s\n", *name, *out, *out, k.Fingerprint())
	return nil
}

// readPassphrase takes CUSTOS_PASSPHRASE, or asks on the terminal (twice
// when confirm is set). It never echoes.
func readPassphrase(confirm bool) ([]byte, error) {
	if p := os.Getenv("CUSTOS_PASSPHRASE"); p != "" {
		// Taken once, then removed from this process's environment. (The
		// parent shell still has it: prefer the prompt where you can.)
		os.Unsetenv("CUSTOS_PASSPHRASE")
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		// Not a terminal: one line from stdin (scripts), still never echoed.
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return nil, errors.New("no passphrase: set CUSTOS_PASSPHRASE or run on a terminal")
		}
		return []byte(strings.TrimRight(line, "\r\n")), nil
	}
	fmt.Fprint(os.Stderr, "Passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Again: ")
		q, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		defer clear(q)
		if string(p) != string(q) {
			clear(p)
			return nil, errors.New("the passphrases differ")
		}
	}
	return p, nil
}
