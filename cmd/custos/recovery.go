package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/custos-cctv/custos/keys"
)

// The controller's recovery key is the third custodian of every epoch key.
// It is made here, on the admin's machine, never on a node: a datacenter
// that saw it would hold two shares and open every recording alone. Its
// private half stays in a passphrase-protected file kept offline; custos
// init takes only FILE.pub, and custos recover-shares opens FILE when a
// datacenter is lost.

func runRecoveryKeygen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("recovery keygen", flag.ContinueOnError)
	out := fs.String("out", "", "the private key `FILE` to write (passphrase-protected, 0600); the public half goes to FILE.pub")
	passFile := fs.String("passphrase-file", "", "read the passphrase from the first line of `F` (default: CUSTOS_PASSPHRASE, else ask twice on the terminal)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("--out is required")}
	}
	for _, p := range []string{*out, *out + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; refusing to overwrite a key", p)
		}
	}
	pass, err := recoveryPassphrase(*passFile, true)
	if err != nil {
		return err
	}
	defer clear(pass)
	if len(pass) < keys.MinRecoveryPassphrase {
		return fmt.Errorf("the passphrase must have at least %d characters", keys.MinRecoveryPassphrase)
	}
	k, err := keys.NewCustodianKey("recovery")
	if err != nil {
		return err
	}
	defer k.Zero()
	if err := keys.WriteRecoveryKey(*out, k, pass); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recovery key (public half): %s.pub\nfingerprint: %s\n", *out, k.Fingerprint())
	hint(ctx, "Keep %s and its passphrase offline, apart from every node; give %s.pub to custos init --recovery.", *out, *out)
	return nil
}

func runRecoveryShow(_ context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("recovery show", flag.ContinueOnError)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if pos[0] == "" {
		return usageError{errors.New("which key? give FILE.pub")}
	}
	c, err := keys.ReadRecoveryPublicKey(pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fingerprint: %s\n", c.Fingerprint())
	return nil
}

// maxPassphraseFile bounds a passphrase file read.
const maxPassphraseFile = 4 << 10

// recoveryPassphrase reads the first line of file if one is given, else
// what readPassphrase takes (asking twice on a terminal when confirm is
// set). The caller wipes the result.
func recoveryPassphrase(file string, confirm bool) ([]byte, error) {
	if file == "" {
		return readPassphrase(confirm)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--passphrase-file: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxPassphraseFile+1) // one buffer: no stale copies
	n, err := io.ReadFull(f, b)
	if err != io.ErrUnexpectedEOF && err != io.EOF {
		clear(b)
		if err == nil {
			err = fmt.Errorf("longer than %d bytes", maxPassphraseFile)
		}
		return nil, fmt.Errorf("--passphrase-file %s: %w", file, err)
	}
	line := b[:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		clear(b)
		return nil, fmt.Errorf("--passphrase-file %s: the first line is empty", file)
	}
	out := bytes.Clone(line)
	clear(b)
	return out, nil
}
