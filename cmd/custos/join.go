package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

func runInvite(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("invite", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	role := fs.String("role", "", "the new node's `ROLE`: datacenter, witness, store, admin or installer")
	name := fs.String("name", "", "the new node's name `N`")
	site := fs.String("site", "", "its site `S` (stores and installers)")
	jur := fs.String("jurisdiction", "", "the jurisdiction `J` of a node without a site, such as a datacenter (default EU); replicas go only to datacenters in the policy's data jurisdictions")
	from := fs.String("from", "", "the membership starts at `T`: an RFC 3339 time, or a duration forward from now (default: at once)")
	until := fs.String("until", "", "the membership ends at `T`: an RFC 3339 time, or a duration forward from now such as 4h (installers must have one)")
	expires := fs.Duration("expires", 24*time.Hour, "the token is void after this duration `D`")
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
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, *dir)
	if err != nil {
		return err
	}
	k, who, err := loadSigner(st, *as)
	if err != nil {
		return err
	}
	defer k.Close()
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
	hint(ctx, "next, on %s's machine: custos join --dir DIR --token TOKEN --listen HOST:PORT, then custos up --dir DIR --listen HOST:PORT (the token is valid until %s)",
		spec.Name, stamp(spec.Expires))
	return nil
}

func runJoin(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` for the new node")
	token := fs.String("token", "", "the join `TOKEN` from custos invite")
	listen := fs.String("listen", "", "this node's underlay UDP address `HOST:PORT`, which peers reach it at (a host name is resolved once, now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *token == "" || *listen == "" {
		return usageError{errors.New("--dir, --token and --listen are required")}
	}
	ap, err := parseListen(ctx, *listen)
	if err != nil {
		return err
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
