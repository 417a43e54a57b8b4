package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// A draft breach shows as one in breach list and status, with its clock;
// once confirmed it shows like any other.
func TestBreachDraftShown(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	b := &policy.Breach{ID: "b-auto-c-1", What: "w", Detected: now.Add(-time.Hour), Draft: true, OpenedBy: "node:dc-a"}
	if state, clock := breachState(b, now); state != "draft" || clock != "71h 0m left" {
		t.Errorf("draft: %s, %s", state, clock)
	}
	var out bytes.Buffer
	writeBreachClocks(&out, []*policy.Breach{b}, now)
	if !strings.Contains(out.String(), "BREACH     b-auto-c-1 (draft, opened automatically by node:dc-a") || !strings.Contains(out.String(), "71h 0m left") {
		t.Errorf("status line %q", out.String())
	}
	b.Detected = now.Add(-73 * time.Hour)
	if state, _ := breachState(b, now); state != "OVERDUE draft" {
		t.Errorf("overdue draft: %s", state)
	}
	b.Draft = false
	if state, _ := breachState(b, now); state != "OVERDUE" {
		t.Errorf("confirmed: %s", state)
	}
}
