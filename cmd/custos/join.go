package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

func runInvite(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	dir, as, signer := commonFlags(fs)
	role := fs.String("role", "", "the new node's `role`: datacenter, witness, store, admin or installer")
	name := fs.String("name", "", "the new node's `name`")
	site := fs.String("site", "", "its `site` (stores and installers)")
	jur := fs.String("jurisdiction", "", "the `jurisdiction` of a node without a site, such as a datacenter (default EU); replicas go only to datacenters in the policy's data jurisdictions")
	from := fs.String("from", "", "membership starts (RFC 3339 `time`)")
	until := fs.String("until", "", "membership ends (RFC 3339 `time` or a duration such as 4h; installers must have one)")
	expires := fs.Duration("expires", 24*time.Hour, "the token is void after this `duration`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *role == "" || *name == "" {
		return usageError{errors.New("--role and --name are required")}
	}
	if *expires < time.Second || *expires > 30*24*time.Hour {
		return usageError{errors.New("--expires must be between 1s and 720h")}
	}
	now := time.Now()
	win, err := parseWindow(*from, *until, now)
	if err != nil {
		return err
	}
	spec := node.InviteSpec{Role: policy.NodeRole(*role), Name: *name, Site: *site, Jurisdiction: *jur, Window: win, Expires: now.Add(*expires)}
	pass, err := readPassphrase(false)
	if err != nil {
		return err
	}
	k, err := keys.LoadAdminKey(*as, pass)
	clear(pass)
	if err != nil {
		return err
	}
	defer k.Close()
	who := *signer
	if who == "" {
		who = strings.TrimSuffix(baseName(*as), ".key")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	inv, err := node.MakeInvite(ctx, *dir, k, who, spec, now)
	if err != nil {
		var r *policy.Refused
		if errors.As(err, &r) {
			return errDenied{r.Reason}
		}
		return err
	}
	if inv.Proposal != "" {
		// A datacenter or witness holds key shares or votes: the token
		// works once the quorum approved its invite.
		hint(ctx, "the invite of a %s is proposal %s: the token below works once the quorum approved it (custos approve %s)",
			spec.Role, inv.Proposal, inv.Proposal)
	}
	fmt.Fprintln(stdout, inv.Token)
	hint(ctx, "next, on %s's machine: custos join --dir DIR --token TOKEN --listen IP:PORT, then custos up --dir DIR --listen IP:PORT (the token is valid until %s)",
		spec.Name, spec.Expires.Local().Format(time.RFC3339))
	return nil
}

func runJoin(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` for the new node")
	token := fs.String("token", "", "the join `token` from custos invite")
	listen := fs.String("listen", "", "this node's underlay UDP address `HOST:PORT`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *token == "" || *listen == "" {
		return usageError{errors.New("--dir, --token and --listen are required")}
	}
	ap, err := parseListen(*listen)
	if err != nil {
		return usageError{err}
	}
	t, err := node.DecodeToken(*token, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := node.PrepareJoin(ctx, node.Config{Dir: *dir, Name: t.Name, Listen: ap}, t)
	if err != nil {
		return err
	}
	if !res.Applied {
		return errDenied{res.Reason}
	}
	fmt.Fprintf(stdout, "%s joined federation %q as %s. Start it with: custos up --dir %s --listen %s\n", t.Name, t.Anchor.Federation, t.Role, *dir, ap)
	return nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
