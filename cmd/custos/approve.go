package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// runApprove shows what is approved, signs the digest of exactly that
// (without asking: scripts approve too), and says who approved and what the
// approvals come to.
func runApprove(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("approve", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which request or proposal? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	k, err := loadKey(*as)
	if err != nil {
		return err
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, *dir)
	if err != nil {
		return err
	}
	signer, err := signerName(st, k, *as)
	if err != nil {
		return err
	}
	// A key file alone no longer approves for a role that approves with a
	// passkey: every replica would refuse it, so say so before signing.
	if err := st.ApprovalNeedsPasskey(signer); err != nil {
		return errDenied{err.Error()}
	}
	a, err := approvalOf(st, id, time.Now())
	if err != nil {
		return fmt.Errorf("%w in the policy of the node in %s", err, *dir)
	}
	a.show(stdout)
	res, _, err := node.SubmitGoverned(ctx, *dir, st, k, signer, &policy.Command{Kind: a.kind, Approval: &policy.Approval{Request: id, Digest: a.digest}})
	if err != nil {
		return err
	}
	if !res.Applied {
		return errDenied{res.Reason}
	}
	// The tally: from the local replica once it holds this approval, else
	// what the replica had with this approval added.
	now := time.Now()
	after := a
	if fresh, err := node.FetchPolicy(ctx, *dir); err == nil {
		if b, err := approvalOf(fresh, id, now); err == nil && b.approvedBy(signer) {
			after = b
		}
	}
	if !after.approvedBy(signer) {
		after.approvals = append(after.approvals, policy.Approval{Request: id, Digest: a.digest, User: signer, Time: now, Key: st.Users[signer].Fingerprint})
	}
	names := after.counted(now)
	fmt.Fprintf(stdout, "approved %s as %s (%d of %d approvals: %s)\n", id, signer, len(names), after.st.ApprovalThreshold(), strings.Join(names, ", "))
	if len(names) >= after.st.ApprovalThreshold() {
		fmt.Fprintln(stdout, after.done)
	}
	return nil
}

// approval is a request or proposal as an approver sees it.
type approval struct {
	st        *policy.State
	kind      string // the command that approves it
	digest    string // what the approval signs
	what      string // "request" or "proposal"
	id        string
	rows      [][2]string // what is shown before signing
	approvals []policy.Approval
	excluded  []string // whose approval never counts (the requester, the proposer)
	done      string   // what it means once the quorum approved
}

// approvalOf finds id among st's proposals and requests.
func approvalOf(st *policy.State, id string, now time.Time) (approval, error) {
	c, err := st.ApprovalFor(id)
	if err != nil {
		return approval{}, err
	}
	if p := st.Proposals[id]; p != nil {
		row := proposalRowOf(st, p, now)
		excluded := []string{p.Proposer}
		if row.Command != nil && row.Command.Kind == policy.KindRevokeUser {
			excluded = append(excluded, row.Command.Name)
		}
		return approval{st: st, kind: c.Kind, digest: c.Approval.Digest, what: "proposal", id: id,
			rows: [][2]string{
				{"proposer", p.Proposer},
				{"change", row.Command.Describe()},
				{"status", row.Status},
				{"expires", stamp(p.Expires)},
			},
			approvals: p.Approvals, excluded: excluded,
			done: fmt.Sprintf("the quorum has approved proposal %s: the change takes effect (custos proposals shows it executed)", id)}, nil
	}
	r := st.Requests[id]
	if r.Action != policy.ActionView {
		return rightsApproval(st, r, c, now), nil
	}
	return approval{st: st, kind: c.Kind, digest: c.Approval.Digest, what: "request", id: id,
		rows: [][2]string{
			{"requester", r.Requester},
			{"node", r.Node},
			{"cameras", strings.Join(r.Cameras, ", ")},
			{"footage", fmt.Sprintf("%s to %s (%v)", stamp(r.From), stamp(r.To), r.To.Sub(r.From))},
			{"purpose", r.Purpose},
			{"basis", r.Basis},
			{"status", st.RequestStatus(r, now)},
			{"expires", stamp(r.Expires)},
		},
		approvals: r.Approvals, excluded: []string{r.Requester},
		done: fmt.Sprintf("the quorum has approved request %s: %s can export it on %s (custos export %s)", id, r.Requester, r.Node, id)}, nil
}

// show prints what is approved, and the approvals so far.
func (a approval) show(w io.Writer) {
	fmt.Fprintf(w, "%s %s\n", a.what, a.id)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range a.rows {
		fmt.Fprintln(tw, printable("  "+r[0]+"\t"+r[1]))
	}
	names := a.counted(time.Now())
	so := "none yet"
	if len(names) > 0 {
		so = strings.Join(names, ", ")
	}
	fmt.Fprintln(tw, printable(fmt.Sprintf("  approvals\t%d of %d: %s", len(names), a.st.ApprovalThreshold(), so)))
	tw.Flush()
}

// counted are the approvers whose approval counts now, in order.
func (a approval) counted(now time.Time) []string {
	var names []string
	for _, ap := range a.approvals {
		if a.st.CountApprovals([]policy.Approval{ap}, now, a.excluded...) == 1 && !slices.Contains(names, ap.User) {
			names = append(names, ap.User)
		}
	}
	return names
}

func (a approval) approvedBy(user string) bool {
	for _, ap := range a.approvals {
		if ap.User == user {
			return true
		}
	}
	return false
}

// rightsApproval is an erase or hold request as an approver sees it: what
// goes, or what is kept and until when.
func rightsApproval(st *policy.State, r *policy.Request, c *policy.Command, now time.Time) approval {
	a := approval{st: st, kind: c.Kind, digest: c.Approval.Digest, id: r.ID,
		approvals: r.Approvals, excluded: []string{r.Requester}}
	footage := fmt.Sprintf("%s to %s (%v)", stamp(r.From), stamp(r.To), r.To.Sub(r.From))
	switch r.Action {
	case policy.ActionErase:
		a.what = "ERASURE request"
		footage += "; every segment that overlaps it is deleted whole, on the store and every datacenter, for good"
		a.done = fmt.Sprintf("the quorum has approved erasure %s: every node that holds the footage deletes it now (custos erase status %s shows each node's signed receipt)", r.ID, r.ID)
	case policy.ActionHold:
		a.what = "HOLD request"
		footage += fmt.Sprintf("; kept past retention, and safe from erasure, until %s", stamp(r.Until))
		a.done = fmt.Sprintf("the quorum has approved hold %s: its footage is kept until %s (custos holds lists it)", r.ID, stamp(r.Until))
	}
	a.rows = [][2]string{
		{"requester", r.Requester},
		{"cameras", strings.Join(r.Cameras, ", ")},
		{"footage", footage},
		{"reason", r.Purpose},
		{"status", st.RequestStatus(r, now)},
		{"expires", stamp(r.Expires)},
	}
	return a
}
