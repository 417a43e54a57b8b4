package node

// Alerts (node/alerting): a datacenter runs the alert rules over every
// audit journal it holds and records each alert in its own journal; it
// serves the alerts of the last 24 hours to admin nodes (op audit-alerts),
// which fetch them from every datacenter every 30 s for `custos status`.

import (
	"cmp"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/alerting"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

const (
	// opAuditAlerts serves a datacenter's recent alerts to admin nodes.
	// Request: {"since":"RFC 3339"} (optional; at most AlertsShown back).
	// Answer: one frame {"alerts":[AlertSummary…]}, oldest first.
	opAuditAlerts = "audit-alerts"
	// AlertsShown is how far back status shows alerts.
	AlertsShown = alerting.Shown
	// maxAlertsServed bounds an answer: the newest ones.
	maxAlertsServed = 1000
	// alertsPoll is how often an admin node fetches the datacenters' alerts.
	alertsPoll = 30 * time.Second
)

// AlertSummary is one alert a datacenter raised, as status shows it.
type AlertSummary = alerting.Summary

type alertsQuery struct {
	Since time.Time `json:"since,omitzero"`
}

type alertsAnswer struct {
	Alerts []AlertSummary `json:"alerts"`
}

// startAlerts starts a datacenter's alert runner.
func startAlerts(n *Node) *alerting.Runner {
	return alerting.Start(alerting.Deps{Name: n.cfg.Name, Dir: filepath.Join(n.cfg.Dir, "replicas", "audit"),
		Journal: n.audit, Policy: n.policy.State, Logf: n.logf})
}

// recentAlerts are what status shows: a datacenter's own alerts of the
// last AlertsShown, or what an admin node fetched from the datacenters.
func (n *Node) recentAlerts(now time.Time) []AlertSummary {
	if n.alerts != nil {
		return n.alerts.Recent(now.Add(-AlertsShown))
	}
	if p := n.fetchedAlerts.Load(); p != nil {
		return slices.DeleteFunc(slices.Clone(*p), func(a AlertSummary) bool { return a.Time.Before(now.Add(-AlertsShown)) })
	}
	return nil
}

// handleAuditAlerts serves op audit-alerts to live admin nodes only.
func (n *Node) handleAuditAlerts(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	st := n.policy.State()
	name, err := n.callerName(st, peer)
	if err != nil {
		return err
	}
	if nd := st.Nodes[name]; nd == nil || nd.Role != policy.RoleAdminNode {
		return rpc.Deny("the alerts are for admin nodes; %s is none", name)
	}
	if n.alerts == nil {
		return rpc.Deny("this node is no datacenter and raises no alerts")
	}
	var q alertsQuery
	if len(body) > 0 {
		if err := rpc.DecodeStrict(body, &q); err != nil {
			return &rpc.Error{Code: rpc.BadRequest, Message: "want {since}: " + err.Error()}
		}
	}
	out := n.alerts.Recent(later(q.Since, time.Now().Add(-AlertsShown)))
	if len(out) > maxAlertsServed {
		out = out[len(out)-maxAlertsServed:]
	}
	b, err := json.Marshal(alertsAnswer{Alerts: out})
	if err != nil {
		return err
	}
	return w.WriteFrame(b)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// pollAlerts fetches, on an admin node, every datacenter's alerts every
// alertsPoll; a datacenter that does not answer keeps its last ones.
func (n *Node) pollAlerts() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	n.wg.Add(1)
	go func() { // a fetch under way ends when the node stops
		defer n.wg.Done()
		<-n.stop
		cancel()
	}()
	byDC := map[string][]AlertSummary{}
	t := time.NewTicker(alertsPoll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		st := n.policy.State()
		if me := st.Nodes[n.selfName(st)]; me == nil || me.Role != policy.RoleAdminNode {
			continue
		}
		now := time.Now()
		for name, nd := range st.Nodes {
			if nd.Role != policy.RoleDatacenter || !policy.Member(st, name, now) {
				delete(byDC, name)
				continue
			}
			got, err := n.fetchAlerts(ctx, st, name, now.Add(-AlertsShown))
			if err != nil {
				n.logf("node: alerts of %s: %v", name, err)
				continue
			}
			byDC[name] = got
		}
		n.fetchedAlerts.Store(new(unionAlerts(byDC)))
	}
}

// unionAlerts merges the datacenters' alerts, oldest first. Each
// datacenter evaluates the same journals: the same alert (rule, subject
// and detail, which ends in its window) shows once, as first raised.
func unionAlerts(byDC map[string][]AlertSummary) []AlertSummary {
	var all []AlertSummary
	for _, as := range byDC {
		all = append(all, as...)
	}
	slices.SortFunc(all, func(a, b AlertSummary) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Node, b.Node))
	})
	type key struct{ rule, subject, detail string }
	seen := map[key]bool{}
	return slices.DeleteFunc(all, func(a AlertSummary) bool {
		k := key{a.Rule, a.Subject, a.Detail}
		dup := seen[k]
		seen[k] = true
		return dup
	})
}

func (n *Node) fetchAlerts(ctx context.Context, st *policy.State, dc string, since time.Time) ([]AlertSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rd, conn, err := n.callNode(ctx, st, dc, opAuditAlerts, alertsQuery{Since: since})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer rd.Close()
	b, err := rd.Next()
	if err != nil {
		return nil, err
	}
	var a alertsAnswer
	if err := rpc.DecodeStrict(b, &a); err != nil {
		return nil, err
	}
	if len(a.Alerts) > maxAlertsServed {
		a.Alerts = a.Alerts[len(a.Alerts)-maxAlertsServed:]
	}
	for i := range a.Alerts {
		a.Alerts[i].Node = dc // the one that answered, whatever it says
	}
	return a.Alerts, nil
}

// CheckAlerts runs a datacenter's alert pass now and returns what it
// raised (tests and the demo; the runner also runs every minute).
func (n *Node) CheckAlerts() []alerting.Summary {
	if n.alerts == nil {
		return nil
	}
	var out []alerting.Summary
	for _, a := range n.alerts.Check() {
		out = append(out, alerting.Summary{Node: n.cfg.Name, Time: time.Now().UTC(), Rule: a.Rule, Subject: a.Subject, Detail: a.Detail})
	}
	return out
}
