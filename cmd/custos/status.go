package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
)

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` of the running node")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--dir is required")}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := node.FetchStatus(ctx, *dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st node.Status) {
	fmt.Fprintf(w, "node       %s (custos %s, up %s)\n", st.Name, st.Version, st.Uptime)
	fmt.Fprintf(w, "key        %s\n", st.PublicKey)
	fmt.Fprintf(w, "mesh       %s in %s (federation %q)\n", st.MeshAddr, st.Prefix, st.Federation)
	fmt.Fprintf(w, "wireguard  UDP %d, told to peers as %s; UAPI %s\n", st.ListenPort, st.Listen, st.UAPISocket)
	if st.PeersFile != "" {
		fmt.Fprintf(w, "peers file %s\n", st.PeersFile)
	}
	if st.PeersError != "" {
		fmt.Fprintf(w, "WARNING    %s\n", st.PeersError)
	}
	fmt.Fprintf(w, "\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PEER\tKEY\tMESH ADDRESS\tENDPOINT\tHANDSHAKE\tRX\tTX\tLIVENESS\n")
	for _, p := range st.Peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = time.Since(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		ep := p.Endpoint
		if ep == "" {
			ep = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.PublicKey.ShortString(), p.Addr, ep, hs, bytesStr(p.RxBytes), bytesStr(p.TxBytes), p.Liveness)
	}
	if len(st.Peers) == 0 {
		fmt.Fprintf(tw, "(no peers)\n")
	}
	tw.Flush()
}

func bytesStr(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
