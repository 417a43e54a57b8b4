package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
)

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := fs.String("dir", "", "data `directory` of the local node")
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Duration("wait", 0, "wait up to this long until the node runs and, in a policy-run federation, holds the current policy (exit 1 if it does not)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	if *wait < 0 {
		return usageError{fmt.Errorf("--wait %s: want a positive duration such as 60s", *wait)}
	}
	st, err := fetchStatus(ctx, *dir)
	if *wait > 0 {
		st, err = waitReady(ctx, *dir, *wait)
	}
	if err != nil {
		return err
	}
	// The policy names the node keys and holds the subject access
	// requests' deadlines; a node without one (peers file, still catching
	// up) shows neither.
	pol := localPolicyOrNil(ctx, *dir)
	now := time.Now()
	overdue := overdueSARs(pol, now)
	breaches := unnotifiedBreaches(pol)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		type breachClock struct {
			ID       string    `json:"id"`
			Draft    bool      `json:"draft,omitempty"` // opened by an event, not confirmed by an admin yet
			Deadline time.Time `json:"deadline"`
			Clock    string    `json:"clock"`
		}
		out := struct {
			node.Status
			OverdueSARs []string `json:"overdue_sars,omitempty"` // IDs of unanswered subject access requests past their deadline
			// Breaches the authority has not been told of yet, with their
			// 72-hour clock.
			Breaches []breachClock `json:"breaches_to_notify,omitempty"`
		}{Status: st}
		for _, a := range overdue {
			out.OverdueSARs = append(out.OverdueSARs, a.ID)
		}
		for _, b := range breaches {
			out.Breaches = append(out.Breaches, breachClock{ID: b.ID, Draft: b.Draft, Deadline: b.Deadline(), Clock: policy.FormatLeft(b.Left(now))})
		}
		return enc.Encode(out)
	}
	printStatus(stdout, st, keyNames(st, pol), overdue, breaches, now)
	return nil
}

// unnotifiedBreaches are the open breaches the authority has not been
// told of, in the policy pol (nil: none).
func unnotifiedBreaches(pol *policy.State) []*policy.Breach {
	if pol == nil {
		return nil
	}
	var out []*policy.Breach
	for _, b := range pol.OpenBreaches() {
		if b.Notified.IsZero() {
			out = append(out, b)
		}
	}
	return out
}

// writeBreachClocks prints each breach still to notify with its 72-hour
// clock (art. 33(1)).
func writeBreachClocks(w io.Writer, bs []*policy.Breach, now time.Time) {
	for _, b := range bs {
		id := b.ID
		if b.Draft {
			id += " (draft, opened automatically by " + b.OpenedBy + ": confirm with custos breach update, or dismiss with custos breach close)"
		}
		fmt.Fprintln(w, printable(fmt.Sprintf("BREACH     %s: notify the supervisory authority by %s: %s (custos breach report %s)", id, stamp(b.Deadline()), policy.FormatLeft(b.Left(now)), b.ID)))
	}
}

// localPolicyOrNil is the policy of the node in dir, or nil if it has
// none to give.
func localPolicyOrNil(ctx context.Context, dir string) *policy.State {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pol, err := node.FetchPolicy(ctx, dir)
	if err != nil {
		return nil
	}
	return pol
}

// waitReady polls the node in dir until it answers and, when it takes its
// policy from consensus, knows a leader, is a member and has applied every
// entry it knows committed: then commands run through it see the
// federation's current policy. It is what a script runs after starting a
// node in the background.
func waitReady(ctx context.Context, dir string, d time.Duration) (node.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	why := "no answer yet"
	for {
		st, err := fetchStatus(ctx, dir)
		if err == nil {
			var ok bool
			if ok, why = ready(st); ok {
				return st, nil
			}
		} else if ctx.Err() == nil { // keep the last real reason, not the deadline's
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return node.Status{}, fmt.Errorf("not ready within %s: %s", d, why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ready tells whether a node's status shows it serving its federation's
// current policy, and if not, why not.
func ready(st node.Status) (bool, string) {
	c := st.Consensus
	switch {
	case c == nil:
		return true, "" // a peers-file node: running is all there is
	case c.LeaderID == "":
		return false, "no Raft leader known yet"
	case !c.Member:
		return false, "not yet a member of the Raft configuration"
	case c.AppliedIndex == 0 || c.RaftApplied < c.CommitIndex:
		return false, fmt.Sprintf("catching up: applied %d of %d", c.RaftApplied, c.CommitIndex)
	case c.Role != consensus.Leader && time.Since(c.LastContact) > 5*time.Second:
		return false, "no word from the leader for " + time.Since(c.LastContact).Round(time.Second).String()
	}
	return true, ""
}

// keyNames names node keys: this node, its peers, and every node of the
// policy (when the node has one); a key none of them names stays a key.
func keyNames(st node.Status, pol *policy.State) func(string) string {
	byKey := map[string]string{st.PublicKey.String(): st.Name}
	for _, p := range st.Peers {
		byKey[p.PublicKey.String()] = p.Name
	}
	if pol != nil {
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

// printStatus prints st, and under the node's own alarms the subject access
// requests overdue at now and the breaches still to notify.
func printStatus(w io.Writer, st node.Status, name func(key string) string, overdue []*policy.SubjectAccess, breaches []*policy.Breach, now time.Time) {
	fmt.Fprintf(w, "node       %s (custos %s, policy protocol %d, up %s)\n", st.Name, st.Version, st.Protocol, st.Uptime)
	if st.Stalled != "" {
		fmt.Fprintf(w, "POLICY STOPPED  %s\n", st.Stalled)
	}
	fmt.Fprintf(w, "key        %s\n", st.PublicKey)
	if m := st.Membership; m != nil && m.State != node.StandingMember {
		fmt.Fprintf(w, "%-10s %s\n", strings.ToUpper(m.State), m.Detail)
	}
	if st.AuditFailure != "" {
		fmt.Fprintf(w, "ALARM      %s: live view, segments, key release and export are refused until it records again\n", st.AuditFailure)
	}
	if st.ClockAlarm != "" {
		fmt.Fprintf(w, "ALARM      %s\n", st.ClockAlarm)
	}
	if st.ClockWarning != "" {
		fmt.Fprintf(w, "WARNING    clock: %s\n", st.ClockWarning)
	}
	if st.CorruptSegments > 0 {
		fmt.Fprintf(w, "ALARM      %d segments on this node's disk failed their SHA-256 when served (see the audit journal: corrupt-segment)\n", st.CorruptSegments)
	}
	if st.BadChecksums > 0 {
		fmt.Fprintf(w, "WARNING    %d packets from peers dropped for a wrong TCP/UDP checksum since the node started (a faulty NIC or driver on a sending node)\n", st.BadChecksums)
	}
	writeOverdueSARs(w, overdue, now)
	writeBreachClocks(w, breaches, now)
	writeAlerts(w, st.Alerts)
	fmt.Fprintf(w, "mesh       %s in %s (federation %q)\n", st.MeshAddr, st.Prefix, st.Federation)
	fmt.Fprintf(w, "wireguard  UDP %d, told to peers as %s; UAPI %s\n", st.ListenPort, st.Listen, st.UAPISocket)
	if st.PeersFile != "" {
		fmt.Fprintf(w, "peers file %s\n", st.PeersFile)
	}
	if u := st.Underlay; u != nil {
		writeUnderlay(w, u)
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
	if h := st.ReplicaStorage; h != nil {
		if h.Storage != "" {
			fmt.Fprintf(w, "Replicas   kept in %s (index on this disk)\n", h.Storage)
		}
		if a := h.Alarm(); a != "" {
			fmt.Fprintf(w, "ALARM      replica storage: %s\n", a)
		}
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

// writeUnderlay prints the relays this node uses and what it knows of its
// own addresses.
func writeUnderlay(w io.Writer, u *mesh.UnderlayStatus) {
	if len(u.Relays) > 0 {
		var rs []string
		for _, r := range u.Relays {
			s := r.Name
			switch {
			case r.Name == u.Home && r.Connected:
				s += " (home, connected)"
			case r.Connected:
				s += " (connected)"
			default:
				s += " (unreachable)"
			}
			rs = append(rs, s)
		}
		fmt.Fprintf(w, "relays     %s\n", strings.Join(rs, ", "))
	}
	if u.Reflexive != "" {
		fmt.Fprintf(w, "public     %s (as the datacenters see this node)\n", u.Reflexive)
	}
}
