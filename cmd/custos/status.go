package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/replication"
)

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	dir, asJSON, err := dirFlags("status", args)
	if err != nil {
		return err
	}
	st, err := fetchStatus(ctx, dir)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

func fetchStatus(ctx context.Context, dir string) (node.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return node.FetchStatus(ctx, dir)
}

func printStatus(w io.Writer, st node.Status) {
	fmt.Fprintf(w, "node       %s (custos %s, up %s)\n", st.Name, st.Version, st.Uptime)
	fmt.Fprintf(w, "key        %s\n", st.PublicKey)
	if m := st.Membership; m != nil && m.State != node.StandingMember {
		fmt.Fprintf(w, "%-10s %s\n", strings.ToUpper(m.State), m.Detail)
	}
	if st.AuditFailure != "" {
		fmt.Fprintf(w, "ALARM      %s: live view, segments, key release and export are refused until it records again\n", st.AuditFailure)
	}
	if st.CorruptSegments > 0 {
		fmt.Fprintf(w, "ALARM      %d segments on this node's disk failed their SHA-256 when served (see the audit journal: corrupt-segment)\n", st.CorruptSegments)
	}
	fmt.Fprintf(w, "mesh       %s in %s (federation %q)\n", st.MeshAddr, st.Prefix, st.Federation)
	fmt.Fprintf(w, "wireguard  UDP %d, told to peers as %s; UAPI %s\n", st.ListenPort, st.Listen, st.UAPISocket)
	if st.PeersFile != "" {
		fmt.Fprintf(w, "peers file %s\n", st.PeersFile)
	}
	if c := st.Consensus; c != nil {
		leader := c.LeaderID
		if leader == c.ID {
			leader = "this node"
		} else if leader == "" {
			leader = "none known"
		}
		voters, others := 0, 0
		for _, m := range c.Members {
			if m.Voter {
				voters++
			} else {
				others++
			}
		}
		fmt.Fprintf(w, "raft       %s (voter %v), leader %s, term %d, commit %d, applied %d, %d voters + %d non-voters\n",
			c.Role, c.Voter, leader, c.Term, c.CommitIndex, c.AppliedIndex, voters, others)
	}
	if st.PeersError != "" {
		fmt.Fprintf(w, "WARNING    %s\n", st.PeersError)
	}
	fmt.Fprintf(w, "\n")
	membership.WritePeerTable(w, st.Peers, "")
	if st.Recording != nil {
		fmt.Fprintf(w, "\n")
		writeCameras(w, st.Recording)
	}
	if len(st.Replication) > 0 || len(st.Replicas) > 0 {
		fmt.Fprintf(w, "\n")
		replication.Write(w, st.Replication, st.Replicas, "")
	}
}
