package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// defaultRescueCodes is how many rescue codes quorum seal prints: enough for
// a few lock-outs, few enough to keep in one envelope in a safe.
const defaultRescueCodes = 3

// runQuorumSeal ends the bootstrap. It makes the rescue codes here, submits
// only their digests, and prints the codes once.
func runQuorumSeal(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quorum seal", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	m := fs.Int("threshold", policy.DefaultThreshold, "the approvals `M` every footage request and governance change needs (at least 2)")
	n := fs.Int("rescue-codes", defaultRescueCodes, "how many one-time rescue codes `N` to print for a lock-out (0 to 16)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *n < 0 || *n > policy.MaxRescueCodes {
		return usageError{fmt.Errorf("--rescue-codes %d: want 0 to %d", *n, policy.MaxRescueCodes)}
	}
	codes := make([][]byte, *n)
	digests := make([]string, *n)
	defer func() {
		for _, c := range codes {
			clear(c)
		}
	}()
	for i := range codes {
		codes[i] = make([]byte, 32)
		rand.Read(codes[i])
		digests[i] = policy.RescueDigest(codes[i])
	}
	var out strings.Builder
	if err := signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindSeal,
		Seal: &policy.Seal{Threshold: *m, Rescue: digests}}, &out); err != nil {
		return err
	}
	fmt.Fprint(stdout, out.String())
	fmt.Fprintf(stdout, "sealed: from now on adding or revoking admins and approvers, datacenters and witnesses,\n"+
		"changing the threshold or the recovery key takes %d approvals of approvers other than the proposer.\n", *m)
	if *n > 0 {
		fmt.Fprintf(stdout, "\nRescue codes, printed once and stored nowhere. Keep them offline, apart from every approver:\n"+
			"if lost keys leave fewer than %d approvers besides a proposer, one code plus every remaining\n"+
			"approver executes one proposal (custos rescue). Each code works once.\n\n", *m)
		for i, c := range codes {
			fmt.Fprintf(stdout, "  rescue %d: %s\n", i+1, hex.EncodeToString(c))
		}
	}
	return nil
}

func runQuorumShow(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "quorum show", args)
	if err != nil {
		return err
	}
	now := time.Now()
	info := struct {
		ID        string    `json:"federation_id"`
		Sealed    bool      `json:"sealed"`
		SealedAt  time.Time `json:"sealed_at,omitzero"`
		Threshold int       `json:"threshold"`
		Approvers []string  `json:"approvers"`
		Rescue    int       `json:"rescue_codes_left"`
	}{st.FederationID, st.Sealed(), st.SealedAt, st.ApprovalThreshold(), st.Approvers(now), len(st.Rescue)}
	if asJSON {
		return json.NewEncoder(stdout).Encode(info)
	}
	fmt.Fprintf(stdout, "federation %s, ID %s\n", st.Federation, info.ID)
	if !info.Sealed {
		fmt.Fprintf(stdout, "bootstrap: not sealed. One admin changes everything and no footage request is accepted.\n"+
			"Add at least %d admins or approvers, then: custos quorum seal --dir DIR --as KEY\n", info.Threshold+1)
	} else {
		fmt.Fprintf(stdout, "sealed at %s: governance changes and footage requests need %d approvals\n",
			stamp(info.SealedAt), info.Threshold)
	}
	fmt.Fprintf(stdout, "approvers (%d): %s\nrescue codes left: %d\n", len(info.Approvers), strings.Join(info.Approvers, ", "), info.Rescue)
	return nil
}

type proposalRow struct {
	*policy.Proposal
	Command   *policy.Command `json:"command"`
	Status    string          `json:"status"`
	Counted   int             `json:"counted"`
	Threshold int             `json:"threshold"`
	Digest    string          `json:"digest"`
}

func proposalRowOf(st *policy.State, p *policy.Proposal, now time.Time) proposalRow {
	c, _ := policy.DecodeCommand(p.Body) // checked when it was proposed
	excluded := []string{p.Proposer}
	if c != nil && c.Kind == policy.KindRevokeUser {
		excluded = append(excluded, c.Name)
	}
	return proposalRow{Proposal: p, Command: c, Status: st.ProposalStatus(p, now), Counted: st.CountApprovals(p.Approvals, now, excluded...),
		Threshold: st.ApprovalThreshold(), Digest: policy.ProposalDigest(st.FederationID, p)}
}

func runProposals(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "proposals", args)
	if err != nil {
		return err
	}
	now := time.Now()
	var rows []proposalRow
	for _, p := range sortedValues(st.Proposals) {
		rows = append(rows, proposalRowOf(st, p, now))
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROPOSAL\tSTATUS\tAPPROVALS\tPROPOSER\tCHANGE\tEXPIRES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", r.ID, r.Status, r.Counted, r.Threshold, r.Proposer,
			r.Command.Describe(), stamp(r.Expires))
	}
	return tw.Flush()
}

// localProposal is proposal id from the local replica, or nil if there is
// none of that ID (it may be a footage request).
func localProposal(ctx context.Context, dir, id string) (*policy.Proposal, *policy.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := node.FetchPolicy(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	return st.Proposals[id], st, nil
}

func runRescue(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("rescue", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	codeFile := fs.String("code-file", "", "the file `F` holding one rescue code (64 hex digits) that quorum seal printed")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	if id == "" {
		return usageError{errors.New("which proposal? give its ID before the flags")}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *codeFile == "" {
		return usageError{errors.New("--code-file is required (a code on the command line would stay in the shell's history)")}
	}
	code, err := readCodeFile(*codeFile)
	if err != nil {
		return err
	}
	p, st, err := localProposal(ctx, *dir, id)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("no proposal %q in the policy of the node in %s", id, *dir)
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindRescueProposal,
		Rescue: &policy.Rescue{Proposal: id, Digest: policy.ProposalDigest(st.FederationID, p), Code: code}}, stdout)
}

// readCodeFile reads one rescue code; the error never echoes the file.
func readCodeFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	f.Close()
	if err != nil {
		return "", err
	}
	code := strings.TrimSpace(string(b))
	clear(b)
	if raw, err := hex.DecodeString(code); err != nil || len(raw) != 32 {
		return "", fmt.Errorf("%s does not hold a rescue code (64 hex digits)", path)
	}
	return code, nil
}
