package main

// Data subjects' rights on footage: erase, erase status, hold, holds. The
// rules are in policy (rights.go: who may, what a hold blocks), the work in
// node/erasure (each node deletes and signs a receipt); this file parses,
// signs and prints.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/policy"
)

// segmentNote is what every erasure says about its ends.
const segmentNote = "erasure is at segment granularity: a segment (about 4 s) that overlaps either end of the range is deleted whole, never re-encoded"

// rightsRequest parses the flags erase and hold share and builds the
// request; until is parsed by hold only.
func rightsRequest(name string, args []string, action string) (*policy.Request, string, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	dir, as := commonFlags(fs)
	sel := fs.String("camera", "", "the cameras, a selector `SEL`: SITE/CAMERA, SITE/*, tag:NAME or *")
	from := fs.String("from", "", "the footage starts at `T`: an RFC 3339 time, now, or a duration back from now (2h: two hours ago)")
	to := fs.String("to", "", "the footage ends at `T`, exclusive: an RFC 3339 time, now, or a duration back from now")
	reason := fs.String("reason", "", "why, as `TEXT` (shown to approvers and kept in the policy)")
	expires := fs.Duration("expires", 24*time.Hour, "how long the request waits for its approvals, a duration `D`")
	id := fs.String("id", "", "the request's `ID` (default: generated)")
	var until *string
	if action == policy.ActionHold {
		until = fs.String("until", "", "the hold ends at `T`: an RFC 3339 time or a duration from now (30d is not a duration: write 720h)")
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, "", "", err
	}
	if err := needCommon(*dir, *as); err != nil {
		return nil, "", "", err
	}
	if *sel == "" || *from == "" || *to == "" || *reason == "" || (until != nil && *until == "") {
		req := "--camera, --from, --to and --reason are required"
		if until != nil {
			req = "--camera, --from, --to, --reason and --until are required"
		}
		return nil, "", "", usageError{errors.New(req)}
	}
	now := time.Now()
	r := &policy.Request{ID: *id, Action: action, Selector: *sel, Purpose: *reason, Expires: now.Add(*expires).UTC()}
	var err error
	if r.From, err = parseTime("from", *from, back, now); err != nil {
		return nil, "", "", usageError{err}
	}
	if r.To, err = parseTime("to", *to, back, now); err != nil {
		return nil, "", "", usageError{err}
	}
	r.From, r.To = r.From.UTC(), r.To.UTC()
	if until != nil {
		if r.Until, err = parseTime("until", *until, forward, now); err != nil {
			return nil, "", "", usageError{err}
		}
		r.Until = r.Until.UTC()
	}
	if r.ID == "" {
		prefix := "e-"
		if action == policy.ActionHold {
			prefix = "h-"
		}
		r.ID = prefix + strings.TrimPrefix(policy.NewCommandID(), "c-")
	}
	return r, *dir, *as, nil
}

func runErase(ctx context.Context, args []string, stdout io.Writer) error {
	r, dir, as, err := rightsRequest("erase", args, policy.ActionErase)
	if err != nil {
		return err
	}
	if err := signAndSubmit(ctx, dir, as, &policy.Command{Kind: policy.KindCreateRequest, Request: r}, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "note: %s\n%s\n", segmentNote, r.ID)
	hint(ctx, "next: approvers other than you run custos approve %s --dir DIR --as THEIR.key; once the quorum approved, custos erase status %s --dir %s --wait 1m shows each node's signed receipt",
		r.ID, r.ID, dir)
	return nil
}

func runHold(ctx context.Context, args []string, stdout io.Writer) error {
	r, dir, as, err := rightsRequest("hold", args, policy.ActionHold)
	if err != nil {
		return err
	}
	if err := signAndSubmit(ctx, dir, as, &policy.Command{Kind: policy.KindCreateRequest, Request: r}, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", r.ID)
	// Overlapping holds are allowed (two cases may need the same footage)
	// but said, so that nobody files one believing it ends the other.
	if st, err := node.FetchPolicy(ctx, dir); err == nil {
		for _, h := range st.ActiveHolds(time.Now()) {
			for _, cam := range st.Requests[r.ID].Cameras {
				if _, _, ok := h.Clip(r.From, r.To); ok && slices.Contains(h.Cameras, cam) {
					hint(ctx, "note: %s overlaps hold %s (%s, until %s) on %s; each keeps the footage until its own end", r.ID, h.ID, h.Purpose, stamp(h.Until), cam)
					break
				}
			}
		}
	}
	hint(ctx, "next: approvers other than you run custos approve %s --dir DIR --as THEIR.key; once approved, retention and erasure skip the footage until %s (custos holds lists it)",
		r.ID, stamp(r.Until))
	return nil
}

func runEraseStatus(ctx context.Context, args []string, stdout io.Writer) error {
	pos, rest := positional(args, 1)
	fs := flag.NewFlagSet("erase status", flag.ContinueOnError)
	dir := fs.String("dir", "", "the node's data directory `DIR`")
	asJSON := fs.Bool("json", false, "print the status and every node's signed receipt as JSON")
	wait := fs.Duration("wait", 0, "wait up to `D` until every node has erased; exit 1 if some have not by then")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	id := pos[0]
	switch {
	case id == "":
		return usageError{errors.New("which erasure? give its ID before the flags")}
	case *dir == "":
		return usageError{errors.New("--dir is required")}
	case *wait < 0:
		return usageError{fmt.Errorf("--wait %v: want a positive duration", *wait)}
	}
	deadline := time.Now().Add(*wait)
	var st erasure.Status
	for {
		var err error
		if st, err = node.FetchErasure(ctx, *dir, id); err != nil {
			return err
		}
		if st.State == keys.ErasureDone || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(st); err != nil {
			return err
		}
	} else {
		printErasure(stdout, st)
	}
	if *wait > 0 && st.State != keys.ErasureDone {
		return fmt.Errorf("erasure %s is not done on every node after %v (%s)", id, *wait, st.State)
	}
	return nil
}

func printErasure(w io.Writer, st erasure.Status) {
	fmt.Fprintf(w, "erasure %s: %s; cameras %s, %s to %s\n", st.Request, st.State, strings.Join(st.Cameras, ","), stamp(st.From), stamp(st.To))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tSEGMENTS\tBYTES\tEPOCH KEYS\tAT\tNOTE")
	for _, r := range st.Rows {
		at := "-"
		if !r.Time.IsZero() {
			at = stamp(r.Time)
		}
		note := r.Note
		if r.Held > 0 {
			note = strings.TrimPrefix(note+fmt.Sprintf("; %d segments kept under a hold", r.Held), "; ")
		}
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s", r.Node, r.Role, r.State, r.Segments, r.Bytes, r.Epochs, at, note)))
	}
	tw.Flush()
	fmt.Fprintf(w, "each row is the node's own receipt, signed with its node key and checked against the policy; %s\n", segmentNote)
}

// holdRow is one hold as `custos holds --json` prints it.
type holdRow struct {
	*policy.Request
	Status string `json:"status"`
}

func runHolds(ctx context.Context, args []string, stdout io.Writer) error {
	st, l, err := listingPolicy(ctx, "holds", "also holds that ended or were never approved", args)
	if err != nil {
		return err
	}
	now := time.Now()
	rows := []holdRow{}
	for _, r := range sortedValues(st.Requests) {
		if r.Action != policy.ActionHold {
			continue
		}
		status := st.RequestStatus(r, now)
		switch {
		case !r.ApprovedAt.IsZero() && now.Before(r.Until):
			status = "active"
		case !r.ApprovedAt.IsZero():
			status = "ended"
		}
		if status != "active" && !l.all {
			continue
		}
		rows = append(rows, holdRow{Request: r, Status: status})
	}
	if l.asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOLD\tSTATUS\tCAMERAS\tFROM\tTO\tUNTIL\tREQUESTER\tREASON")
	for _, r := range rows {
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", r.ID, r.Status, strings.Join(r.Cameras, ","),
			stamp(r.From), stamp(r.To), stamp(r.Until), r.Requester, r.Purpose)))
	}
	return tw.Flush()
}
