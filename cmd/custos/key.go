package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
)

func runKey(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the node")
	fed := fs.String("federation", "", "the federation's name `F` (decides the mesh address); default: the one the directory belongs to, else "+node.DefaultFederation)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--dir is required")}
	}
	// A founded or joined directory names its federation: the address
	// printed must be the one the node has.
	stored, err := node.FederationOf(*dir)
	if err != nil {
		return err
	}
	switch {
	case *fed == "" && stored != "":
		*fed = stored
	case *fed == "":
		*fed = node.DefaultFederation
	case stored != "" && *fed != stored:
		return usageError{fmt.Errorf("%s belongs to federation %q, not %q", *dir, stored, *fed)}
	}
	priv, created, err := keys.LoadOrCreateNodeKey(node.KeyPath(*dir))
	if err != nil {
		return err
	}
	pub := priv.Public()
	priv.Zero()
	prefix, err := keys.MeshPrefix(*fed)
	if err != nil {
		return usageError{err}
	}
	addr := keys.MeshAddr(prefix, pub)
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"public_key": pub, "mesh_addr": addr, "created": created})
	}
	fmt.Fprintf(stdout, "public_key = %q\nmesh_addr  = %q\n", pub, addr)
	return nil
}
