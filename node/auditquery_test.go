package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// TestAuditQueryAcrossSites: an auditor asks, through the admin node, who
// watched a camera; the answer comes from dc-a's copy of the store's
// journal, and dc-a records who asked. The same signed query carried by a
// store is refused and recorded; an admin node will not carry a query for
// a viewer.
func TestAuditQueryAcrossSites(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	shop := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	users := map[string]*keys.AdminKey{}
	for name, role := range map[string]policy.UserRole{"dora": policy.UserAuditor, "vic": policy.UserViewer} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		users[name] = k
		if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddUser,
			User: &policy.User{Name: name, Role: role, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}})); err != nil || !res.Applied {
			t.Fatalf("user %s: %+v %v", name, res, err)
		}
	}
	waitTrue(t, 10*time.Second, "the desk to know dora and vic", func() bool {
		st := desk.Policy()
		return st.Users["dora"] != nil && st.Users["vic"] != nil
	})
	shop.auditEvent(audit.Event{Actor: "desk", Action: "live-view", Object: "praha-1/till", Decision: audit.Allow, Reason: "start; grant g-1"})

	ask := func(user string, q auditquery.Query) []byte {
		q.Federation, q.User = testFederation, user
		b, err := auditquery.Sign(&q, users[user])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	who := auditquery.Query{Site: "praha-1", Object: "praha-1/till", Since: time.Now().Add(-time.Hour)}
	var ans AuditAnswer
	waitTrue(t, 60*time.Second, "the store's entry to reach dc-a and the answer", func() bool {
		a, err := QueryAuditVia(ctx, desk.cfg.Dir, ask("dora", who))
		if err != nil {
			t.Logf("query: %v", err)
			return false
		}
		ans = a
		return len(a.Rows) > 0
	})
	if len(ans.Rows) != 1 {
		t.Fatalf("rows %+v, want the one live view", ans.Rows)
	}
	r := ans.Rows[0]
	if r.Node != "store" || r.Site != "praha-1" || r.Actor != "desk" || r.Action != "live-view" || !slices.Equal(ans.Datacenter, []string{"dc-a"}) {
		t.Fatalf("row %+v from %v, want the store's live view of praha-1/till by desk, from dc-a", r, ans.Datacenter)
	}
	if queries := auditOf(t, f.dc, auditquery.Op, audit.Allow); len(queries) == 0 || queries[len(queries)-1].Actor != "user:dora" ||
		!strings.Contains(queries[len(queries)-1].Object, "object=praha-1/till") || !strings.Contains(queries[len(queries)-1].Reason, "desk") {
		t.Fatalf("dc-a recorded %+v, want dora's query via desk", queries)
	}

	// A viewer's query is refused by the datacenter (403 at the desk).
	_, err := QueryAuditVia(ctx, desk.cfg.Dir, ask("vic", who))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "role viewer") {
		t.Fatalf("a viewer's query: %v, want a 403 naming the role", err)
	}
	// The auditor's own signed query carried by a store is refused, and
	// recorded; a store's own API will not carry one either.
	_, err = shop.askAudit(ctx, shop.policy.State(), "dc-a", ask("dora", who))
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != rpc.Denied || !strings.Contains(re.Message, "admin nodes") {
		t.Fatalf("a store carrying a query: %v, want denied", err)
	}
	denied := auditOf(t, f.dc, auditquery.Op, audit.Deny)
	if len(denied) < 2 || denied[len(denied)-1].Actor != "store" {
		t.Fatalf("dc-a's refusals %+v, want the viewer's and the store's", denied)
	}
	if _, err := QueryAuditVia(ctx, shop.cfg.Dir, ask("dora", who)); err == nil || !strings.Contains(err.Error(), "admin node") {
		t.Fatalf("the store's API carried a query: %v", err)
	}
}

// auditOf returns n's journal entries of action with decision.
func auditOf(t *testing.T, n *Node, action, decision string) []audit.Entry {
	t.Helper()
	es, err := n.Audit(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range es {
		if e.Action == action && e.Decision == decision {
			out = append(out, e)
		}
	}
	return out
}
