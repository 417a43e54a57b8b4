package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/consensus"
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
	printStatus(stdout, st, keyNames(ctx, dir, st))
	return nil
}

// keyNames names node keys: this node, its peers, and every node of the
// policy (when the node has one); a key none of them names stays a key.
func keyNames(ctx context.Context, dir string, st node.Status) func(string) string {
	byKey := map[string]string{st.PublicKey.String(): st.Name}
	for _, p := range st.Peers {
		byKey[p.PublicKey.String()] = p.Name
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if pol, err := node.FetchPolicy(ctx, dir); err == nil {
		for _, n := range pol.Nodes {
			byKey[n.PublicKey] = n.Name
		}
	}
	return func(k string) string {
		if n, ok := byKey[k]; ok {
			return n
		}
		return k
	}
}

func fetchStatus(ctx context.Context, dir string) (node.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return node.FetchStatus(ctx, dir)
}

func printStatus(w io.Writer, st node.Status, name func(key string) string) {
	fmt.Fprintf(w, "node       %s (custos %s, up %s)\n", st.Name, st.Version, st.Uptime)
	fmt.Fprintf(w, "key        %s\n", st.PublicKey)
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
		writeRaft(w, c, name)
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

// writeRaft says this node's part in Raft and names the leader and the
// members as the policy does (custos status --json has their keys).
func writeRaft(w io.Writer, c *consensus.Status, name func(string) string) {
	leader := "none known"
	if c.LeaderID != "" {
		leader = name(c.LeaderID)
	}
	if c.LeaderID == c.ID {
		leader += " (this node)"
	}
	fmt.Fprintf(w, "raft       %s (%s), leader %s, term %d, commit %d, applied %d\n",
		c.Role, suffrage(c.Voter), leader, c.Term, c.CommitIndex, c.AppliedIndex)
	var ms []string
	for _, m := range c.Members {
		what := suffrage(m.Voter)
		if m.ID == c.LeaderID {
			what += ", leader"
		}
		if m.ID == c.ID {
			what += ", this node"
		}
		ms = append(ms, fmt.Sprintf("%s (%s)", name(m.ID), what))
	}
	sort.Strings(ms)
	if len(ms) > 0 {
		fmt.Fprintf(w, "members    %s\n", strings.Join(ms, ", "))
	}
}

func suffrage(voter bool) string {
	if voter {
		return "voter"
	}
	return "non-voter"
}
