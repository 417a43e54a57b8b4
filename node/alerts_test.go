package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// A datacenter raises an alert from its journal once, shows it in its
// status and serves it to an admin node; a store asking is denied.
func TestAlertsThroughTheDatacenter(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := foundAcme(t, ctx)
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	store := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	if f.dc.alerts == nil || desk.alerts != nil || store.alerts != nil {
		t.Fatal("the alert runner runs on datacenters only")
	}
	for range 11 {
		f.dc.auditEvent(audit.Event{Actor: "mallory", Action: "live-view", Object: "praha-1/door", Decision: audit.Deny, Reason: "no grant"})
	}
	// (The runner's own minute may have come first: then this pass
	// raises nothing, and status still shows the one alert.)
	if got := f.dc.CheckAlerts(); len(got) > 1 || len(got) == 1 && (got[0].Rule != policy.RuleRefusedBurst || got[0].Subject != "mallory") {
		t.Fatalf("CheckAlerts = %+v, want one refused-burst of mallory", got)
	}
	if got := f.dc.CheckAlerts(); len(got) != 0 {
		t.Fatalf("raised again: %+v", got)
	}
	st, err := f.dc.Status()
	if err != nil || len(st.Alerts) != 1 || st.Alerts[0].Node != "dc-a" || st.Alerts[0].Subject != "mallory" || st.Alerts[0].Rule != policy.RuleRefusedBurst {
		t.Fatalf("dc-a's status alerts: %+v %v", st.Alerts, err)
	}
	var got []AlertSummary
	waitTrue(t, 30*time.Second, "desk to fetch dc-a's alerts", func() bool {
		got, err = desk.fetchAlerts(ctx, desk.Policy(), "dc-a", time.Now().Add(-time.Hour))
		return err == nil
	})
	if err != nil || len(got) != 1 || got[0].Rule != policy.RuleRefusedBurst || got[0].Node != "dc-a" {
		t.Fatalf("desk fetching dc-a's alerts: %+v %v", got, err)
	}
	// The store's replica names dc-a once it caught up; then it is denied.
	waitTrue(t, 30*time.Second, "the store to reach dc-a", func() bool {
		_, err = frames(ctx, store, "dc-a", opAuditAlerts, alertsQuery{})
		var re *rpc.Error
		return errors.As(err, &re)
	})
	wantDenied(t, "a store asking for the alerts", err, "admin nodes")
	// An admin node asking a node that is no datacenter is denied too
	// (once desk's replica names the store).
	waitTrue(t, 30*time.Second, "desk to reach the store", func() bool {
		_, err = frames(ctx, desk, "store", opAuditAlerts, alertsQuery{})
		var re *rpc.Error
		return errors.As(err, &re)
	})
	wantDenied(t, "alerts asked of a store", err, "no datacenter")
}

// Two datacenters raise the same alert: an admin node shows it once.
func TestUnionAlerts(t *testing.T) {
	at := time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)
	a := AlertSummary{Node: "dc-b", Time: at.Add(time.Second), Rule: policy.RuleBulkExport, Subject: "desk", Detail: "x; window A/B"}
	b := a
	b.Node, b.Time = "dc-a", at
	c := a
	c.Detail = "y; window C/D"
	got := unionAlerts(map[string][]AlertSummary{"dc-a": {b}, "dc-b": {a, c}})
	if len(got) != 2 || got[0].Node != "dc-a" || got[1].Detail != c.Detail {
		t.Fatalf("union %+v", got)
	}
}
