package demo

import (
	"fmt"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// auditQuery: dora, an auditor, asks through admin-alice's node who
// watched praha-1/entrance; the datacenters answer from their copies of
// the store's journal and record that she asked.
func (f *federation) auditQuery() error {
	f.say("\n== Audit across sites: an auditor asks the datacenters who watched praha-1/entrance")
	dora, err := keys.NewAdminKey("dora", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	defer dora.Close()
	if err := f.submit(&policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: "dora", Role: policy.UserAuditor,
		PublicKey: dora.PublicKey(), Fingerprint: dora.Fingerprint()}}); err != nil {
		return err
	}
	desk := f.nodes["admin-alice"]
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { return desk.Policy().Users["dora"] != nil }); err != nil {
		return err
	}
	var ans node.AuditAnswer
	t0 := time.Now()
	// The store's entries reach the datacenters within a pull or two.
	err = nodetest.WaitCond(f.ctx, 30*time.Second, func() bool {
		q := &auditquery.Query{Federation: f.fid, User: "dora", Action: "live-view", Object: "praha-1/entrance", Since: t0.Add(-time.Hour)}
		body, err := auditquery.Sign(q, dora)
		if err != nil {
			return false
		}
		ans, err = desk.QueryAudit(f.ctx, body)
		return err == nil && len(ans.Rows) > 0
	})
	if err != nil {
		return fmt.Errorf("audit query: no answer with the live view: %w", err)
	}
	f.say("   %d entries from %v in %v (each hash checked, an entry both hold shown once):", len(ans.Rows), ans.Datacenter, time.Since(t0).Round(time.Millisecond))
	for i, r := range ans.Rows {
		if i == 4 {
			f.say("   …")
			break
		}
		f.say("   %s  %-14s %-12s %s %s %s", r.Time.Local().Format("15:04:05"), r.Node, r.Actor, r.Action, r.Decision, r.Reason)
	}
	f.say("   each datacenter recorded it: actor user:dora, action %s, object \"action=live-view object=praha-1/entrance since=…\"", auditquery.Op)
	return nil
}
