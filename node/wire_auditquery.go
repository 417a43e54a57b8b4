package node

// The glue between the node and node/auditquery: a datacenter answers an
// auditor's signed query from its copies of the stores' journals and its
// own; an admin node asks every datacenter and merges the answers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// auditReplicaDir is where a datacenter keeps its copies of the stores'
// journals, one <store>.jsonl each.
func (n *Node) auditReplicaDir() string { return filepath.Join(n.cfg.Dir, "replicas", "audit") }

// handleAuditQuery answers a query signed by an auditor and carried by an
// admin node. Everything else is refused and the refusal recorded.
func (n *Node) handleAuditQuery(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	st := n.policy.State()
	caller, err := n.callerName(st, peer)
	if err != nil {
		return err
	}
	deny := func(actor, reason string) error {
		n.auditEvent(audit.Event{Actor: actor, Action: auditquery.Op, Object: "via " + caller, Decision: audit.Deny, Reason: reason})
		return &rpc.Error{Code: rpc.Denied, Message: reason}
	}
	if nd := st.Nodes[caller]; nd.Role != policy.RoleAdminNode {
		return deny(caller, fmt.Sprintf("audit queries come from admin nodes; %s is a %s", caller, nd.Role))
	}
	if n.replicas == nil {
		return &rpc.Error{Code: rpc.Failed, Message: "this node keeps no copies of the stores' journals (ask a datacenter)"}
	}
	q, why, err := auditquery.Verify(st, body, n.now())
	if err != nil {
		actor := caller
		if q != nil && q.User != "" {
			actor = "user:" + q.User
		}
		return deny(actor, err.Error())
	}
	actor := "user:" + q.User
	if err := n.auditReady(actor, auditquery.Op, q.Describe()); err != nil {
		return err
	}
	c := auditquery.NewCollector(auditquery.NewMatcher(st, q))
	if err := n.scanAuditReplicas(ctx, st, c); err != nil {
		n.auditEvent(audit.Event{Actor: actor, Action: auditquery.Op, Object: q.Describe(), Decision: audit.Deny, Reason: err.Error()})
		return &rpc.Error{Code: rpc.Failed, Message: err.Error()}
	}
	if c.Matches("") {
		own, err := n.Audit(q.Since)
		if err != nil {
			return &rpc.Error{Code: rpc.Failed, Message: err.Error()}
		}
		for _, e := range own {
			c.Add("", e)
		}
	}
	rows := c.Rows()
	frames, err := auditquery.Frames(rows)
	if err != nil {
		return &rpc.Error{Code: rpc.Failed, Message: err.Error()}
	}
	n.auditEvent(audit.Event{Actor: actor, Action: auditquery.Op, Object: q.Describe(), Decision: audit.Allow,
		Reason: fmt.Sprintf("%d entries (%d more left out) to admin node %s; %s", len(rows), c.More, caller, why)})
	for _, f := range frames {
		if err := w.WriteFrame(f); err != nil {
			return err
		}
	}
	return nil
}

// scanAuditReplicas feeds every copy of a store's journal held to c, the
// copies of revoked stores too (a stolen store's last entries are exactly
// what an auditor wants).
func (n *Node) scanAuditReplicas(ctx context.Context, st *policy.State, c *auditquery.Collector) error {
	des, err := os.ReadDir(n.auditReplicaDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), ".jsonl")
		if !ok || !de.Type().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		site := ""
		if nd := st.Nodes[name]; nd != nil {
			site = nd.Site
		}
		if err := c.ScanFile(filepath.Join(n.auditReplicaDir(), de.Name()), site); err != nil {
			return err
		}
	}
	return nil
}

// errAuditDenied marks a query every datacenter refused by the policy.
var errAuditDenied = errors.New("audit query refused")

// AuditAnswer is an admin node's answer to an audit query: the merged
// rows, how many were left out for the limit, and each datacenter that
// did not answer, with why.
type AuditAnswer struct {
	Rows       []auditquery.Row  `json:"rows"`
	More       int               `json:"more,omitempty"`
	Datacenter []string          `json:"datacenters"` // those that answered
	Failed     map[string]string `json:"failed,omitempty"`
}

// QueryAudit carries a signed audit query (auditquery.Signed's JSON) to
// every datacenter of the policy and merges their answers. It fails only
// when no datacenter answered.
func (n *Node) QueryAudit(ctx context.Context, body []byte) (AuditAnswer, error) {
	if n.policy == nil {
		return AuditAnswer{}, errors.New("this node runs from a static peers file, not a replicated policy")
	}
	st := n.policy.State()
	if self := st.Nodes[n.selfName(st)]; self == nil || self.Role != policy.RoleAdminNode {
		return AuditAnswer{}, errors.New("audit queries are carried by admin nodes: run it with --dir of an admin node")
	}
	var s auditquery.Signed
	var q auditquery.Query
	if json.Unmarshal(body, &s) != nil || json.Unmarshal(s.Query, &q) != nil {
		return AuditAnswer{}, errors.New("audit query: not a signed query")
	}
	var dcs []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleDatacenter && policy.Member(st, name, n.now()) {
			dcs = append(dcs, name)
		}
	}
	slices.Sort(dcs)
	if len(dcs) == 0 {
		return AuditAnswer{}, errors.New("the policy has no live datacenter to ask")
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	answers := make([][]auditquery.Row, len(dcs))
	errs := make([]error, len(dcs))
	var wg sync.WaitGroup
	for i, dc := range dcs {
		wg.Go(func() { answers[i], errs[i] = n.askAudit(ctx, st, dc, body) })
	}
	wg.Wait()
	out := AuditAnswer{Failed: map[string]string{}}
	var denied error
	for i, dc := range dcs {
		if errs[i] != nil {
			out.Failed[dc] = errs[i].Error()
			var re *rpc.Error
			if errors.As(errs[i], &re) && re.Code == rpc.Denied {
				denied = errs[i]
			}
			continue
		}
		out.Datacenter = append(out.Datacenter, dc)
	}
	if len(out.Datacenter) == 0 {
		if denied != nil {
			return AuditAnswer{}, fmt.Errorf("%w: %v", errAuditDenied, denied)
		}
		return AuditAnswer{}, fmt.Errorf("no datacenter answered: %v", out.Failed)
	}
	out.Rows, out.More = auditquery.Merge(q.Limit, answers...)
	return out, nil
}

func (n *Node) askAudit(ctx context.Context, st *policy.State, dc string, body []byte) ([]auditquery.Row, error) {
	c, err := n.dialNode(ctx, st, dc)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rd, err := rpc.Call(ctx, c, auditquery.Op, body)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	frames, err := rpc.ReadFrames(rd, rpc.MaxFrames)
	if err != nil {
		return nil, err
	}
	return auditquery.DecodeFrames(frames)
}

// apiAuditQuery serves POST /v1/audit/query: a signed audit query,
// answered by the datacenters. A query every datacenter refused is 403.
func (n *Node) apiAuditQuery(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(b) > 64<<10 {
		http.Error(w, "audit query: want a signed query of at most 64 KiB", http.StatusBadRequest)
		return
	}
	ans, err := n.QueryAudit(r.Context(), b)
	switch {
	case errors.Is(err, errAuditDenied):
		http.Error(w, err.Error(), http.StatusForbidden)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		writeJSON(w, ans)
	}
}
