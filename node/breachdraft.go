package node

// Automatic breach drafts (policy/breachdraft.go): what this node itself
// sees that may be a personal data breach opens a draft in the replicated
// breach register, so art. 33(1)'s 72 hours start at detection and every
// admin node shows it:
//
//   - a datacenter whose copy of a store's audit journal stops chaining
//     (replication.ReplicaDeps.AuditBroken): policy.EventAuditChain;
//   - a store refusing to replicate to a datacenter because of its
//     jurisdiction (replication.SourceDeps.Outside):
//     policy.EventReplicaJurisdiction;
//   - this node's own audit journal failing verification when checked at
//     start: policy.EventAuditJournal.
//
// The node signs breach.draft with its node key (the custody signer) and
// submits it through consensus in the background: the event's own handling
// never waits for it and never fails because of it. Each (event, object)
// is submitted at most once per process, retried a bounded number of times
// while no leader answers, and a failure is logged for a person to record
// the breach by hand.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custos-cctv/custos/policy"
)

// Bounds of a draft's submission.
const (
	draftAttempts      = 6
	draftFirstRetry    = 2 * time.Second
	draftMaxRetry      = 30 * time.Second
	draftSubmitTimeout = 30 * time.Second
)

// breachDrafts are the drafts this process submitted or is submitting.
// Its zero value is ready; close waits for the submissions under way.
type breachDrafts struct {
	mu     sync.Mutex
	closed bool
	sent   map[string]bool // event "\x00" object
	wg     sync.WaitGroup
}

// start runs f in the background unless the node is closing, or key was
// started before in this process (an empty key is never remembered).
func (d *breachDrafts) start(key string, f func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || (key != "" && d.sent[key]) {
		return false
	}
	if key != "" {
		if d.sent == nil {
			d.sent = map[string]bool{}
		}
		d.sent[key] = true
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
	return true
}

// close refuses new drafts and waits for those under way (they end with
// the node's stop channel).
func (d *breachDrafts) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wg.Wait()
}

// draftBreach submits, in the background, a draft of event about object,
// detected now, with text saying what was seen. It returns at once.
func (n *Node) draftBreach(event, object, text string) {
	if n.policy == nil || n.raft == nil {
		return // a peers-file node has no breach register
	}
	bd := &policy.BreachDraft{Event: event, Object: object, Text: draftText(text), Detected: time.Now().UTC()}
	n.drafts.start(event+"\x00"+object, func() { n.submitDraft(bd) })
}

// submitDraft signs and submits bd until the policy applies or refuses it,
// at most draftAttempts times, and logs the outcome.
func (n *Node) submitDraft(bd *policy.BreachDraft) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	what := bd.Event + " of " + cmp.Or(bd.Object, "this node")
	wait := draftFirstRetry
	var err error
	for attempt := 1; attempt <= draftAttempts; attempt++ {
		var res ApplyResult
		res, err = n.submitDraftOnce(ctx, bd)
		switch {
		case err == nil && res.Applied:
			n.logf("node: BREACH DRAFT: %s opened a draft in the breach register (command %s); the 72 hours to notify run from %s: an admin confirms it (custos breach update) or dismisses it (custos breach close)",
				what, res.ID, bd.Detected.Format(time.RFC3339))
			return
		case err == nil && strings.Contains(res.Reason, "already open"):
			n.logf("node: breach draft %s: %s", what, res.Reason)
			return
		case err == nil:
			n.logf("node: BREACH DRAFT REFUSED: %s: %s; record it with custos breach open if it is a breach", what, res.Reason)
			return
		}
		if attempt == draftAttempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			n.logf("node: BREACH DRAFT NOT SUBMITTED: %s: the node stopped (%v); record it with custos breach open", what, err)
			return
		case <-t.C:
		}
		wait = min(2*wait, draftMaxRetry)
	}
	n.logf("node: BREACH DRAFT NOT SUBMITTED: %s after %d attempts: %v; record it with custos breach open", what, draftAttempts, err)
}

// submitDraftOnce signs bd as this node, at now, and submits it.
func (n *Node) submitDraftOnce(ctx context.Context, bd *policy.BreachDraft) (ApplyResult, error) {
	st := n.Policy()
	name := n.selfName(st)
	if name == "" {
		return ApplyResult{}, errors.New("this node's policy replica does not name it yet")
	}
	d := *bd
	if d.Object == "" {
		d.Object = name // this node's own journal
	}
	c := &policy.Command{ID: policy.NewCommandID(), Time: n.wallNow().UTC(), Signer: policy.NodeSignerPrefix + name,
		Kind: policy.KindDraftBreach, BreachDraft: &d}
	body, err := policy.EncodeCommand(c)
	if err != nil {
		return ApplyResult{}, err
	}
	sig, err := n.custody.SignStatement(policy.SignedBytes(st.FederationID, body))
	if err != nil {
		return ApplyResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, draftSubmitTimeout)
	defer cancel()
	return n.Submit(ctx, policy.Envelope{Body: body, Sig: sig})
}

// draftText makes text fit a draft: control and invisible formatting
// characters become spaces, and it is cut to policy.MaxDraftText bytes on
// a character boundary.
func draftText(text string) string {
	text = strings.Map(func(r rune) rune {
		if (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(text, "?"))
	if strings.TrimSpace(text) == "" {
		return "(no detail)"
	}
	for len(text) > policy.MaxDraftText {
		_, size := utf8.DecodeLastRuneInString(text)
		text = text[:len(text)-size]
	}
	return text
}

// verifyJournalAtStart checks this node's own audit journal once, in the
// background, and drafts a breach if its chain is broken.
func (n *Node) verifyJournalAtStart() {
	n.drafts.start("", func() {
		rep, err := n.audit.Verify()
		switch {
		case err != nil:
			n.logf("node: audit journal: verifying it at start: %v", err)
		case !rep.OK:
			n.logf("node: AUDIT ALARM: %s", rep)
			// The object is this node, named when it submits (its replica
			// may not name it yet).
			n.draftBreach(policy.EventAuditJournal, "", fmt.Sprintf("at start: %s", rep))
		}
	})
}
