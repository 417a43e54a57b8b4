package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// TestBreachDraftWhenReplicaStopsChaining: dc-a's copy of a store's audit
// journal holds an entry the store never wrote, so the store's journal
// does not chain onto it; dc-a alarms, signs a breach.draft with its node
// key and submits it, and the draft is in the breach register of every
// replica, with its clock running.
func TestBreachDraftWhenReplicaStopsChaining(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)

	// A foreign first entry in dc-a's copy of store's journal, before
	// store joins: dc-a's puller opens the copy, asks for what follows
	// entry 1, and the store's entry 2 does not chain onto it.
	j, err := audit.Open(t.TempDir(), audit.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(audit.Event{Actor: "store", Action: "node-start", Object: "not the store's"}); err != nil {
		t.Fatal(err)
	}
	es, err := j.Since(time.Time{})
	j.Close()
	if err != nil || len(es) != 1 {
		t.Fatalf("entries %v %v", es, err)
	}
	line, err := es[0].Line()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(line, []byte("\n")) {
		line = append(line, '\n')
	}
	adir := filepath.Join(f.dc.cfg.Dir, "replicas", "audit")
	if err := os.MkdirAll(adir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(adir, "store.jsonl"), line, 0o600); err != nil {
		t.Fatal(err)
	}

	st := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	draftOf := func(n *Node) *policy.Breach {
		for _, b := range n.Policy().OpenBreaches() {
			if b.Event == policy.EventAuditChain && b.Object == "store" {
				return b
			}
		}
		return nil
	}
	waitTrue(t, 60*time.Second, "a draft breach of store's audit chain on dc-a and the store", func() bool {
		return draftOf(f.dc) != nil && draftOf(st) != nil
	})
	b := draftOf(st)
	switch {
	case !b.Draft || b.OpenedBy != "node:dc-a" || !strings.HasPrefix(b.ID, "b-auto-c-"):
		t.Errorf("draft %+v", b)
	case time.Since(b.Detected) > time.Minute || b.Left(time.Now()) < 71*time.Hour:
		t.Errorf("detected %s, %s left: the clock runs from detection", b.Detected, policy.FormatLeft(b.Left(time.Now())))
	case !strings.Contains(b.What, "does not chain"):
		t.Errorf("what %q does not say what dc-a saw", b.What)
	}
	// Submitted once per process: the alarm raised again would not
	// submit it again.
	f.dc.draftBreach(policy.EventAuditChain, "store", "again")
	f.dc.drafts.mu.Lock()
	sent := len(f.dc.drafts.sent)
	f.dc.drafts.mu.Unlock()
	if sent != 1 {
		t.Errorf("%d drafts started on dc-a, want 1", sent)
	}
}

// draftText keeps a draft's text within what the policy takes.
func TestBreachDraftText(t *testing.T) {
	for _, in := range []string{"", " \n", "a\x1b[2Jb\u202e", strings.Repeat("ž", policy.MaxDraftText), "bad \xff utf-8"} {
		out := draftText(in)
		if len(out) > policy.MaxDraftText || !utf8.ValidString(out) || strings.TrimSpace(out) == "" || strings.ContainsAny(out, "\x1b\u202e") {
			t.Errorf("draftText(%.20q) = %.40q", in, out)
		}
	}
}

// TestBreachDraftOwnJournalAtStart: an entry is cut out of dc-a's journal
// while it is down (each line left still matches its hash, so the node
// starts); at its next start it finds the chain broken and drafts a breach
// of its own journal.
func TestBreachDraftOwnJournalAtStart(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	cfg := f.dc.cfg
	if err := f.dc.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, "audit", "journal.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) < 4 {
		t.Fatalf("journal %q", b)
	}
	lines = append(lines[:1], lines[2:]...) // entry 2 deleted
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	dc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	waitTrue(t, 60*time.Second, "a draft breach of dc-a's own journal", func() bool {
		for _, b := range dc.Policy().OpenBreaches() {
			if b.Event == policy.EventAuditJournal && b.Object == "dc-a" && b.Draft && b.OpenedBy == "node:dc-a" {
				return strings.Contains(b.What, "audit journal damaged at entry 2 (deleted)")
			}
		}
		return false
	})
}
