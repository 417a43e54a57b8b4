package erasure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// OpReceipt is the node-to-node op that asks a node for its receipt of an
// erasure: body {"request": ID}, answer one frame with the signed receipt.
const OpReceipt = "erasure-receipt"

// Row states beside keys.ErasureDone and keys.ErasureFailed.
const (
	Pending     = "pending"     // the node has not reported it (yet)
	Unreachable = "unreachable" // the node did not answer
	Invalid     = "invalid"     // the node's answer did not verify
	// Revoked: the node is not asked. Its disk may still hold its copy
	// (a stolen store), which stays sealed: custodians answer only for
	// footage their own replicas hold, and theirs is erased.
	Revoked = "revoked"
)

// Row is one node's part of an erasure.
type Row struct {
	Node     string    `json:"node"`
	Role     string    `json:"role"`
	State    string    `json:"state"`
	Segments int       `json:"segments"`
	Bytes    int64     `json:"bytes"`
	Epochs   int       `json:"epochs"`
	Held     int       `json:"held,omitempty"`
	Time     time.Time `json:"time,omitzero"`
	Note     string    `json:"note,omitempty"`
	// Receipt is the signed receipt, for anyone to check again.
	Receipt []byte `json:"receipt,omitempty"`
}

// Status is an erasure's progress on every node that holds its footage.
type Status struct {
	Request  string    `json:"request"`
	Cameras  []string  `json:"cameras"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Approved time.Time `json:"approved,omitzero"`
	// State is "done" when every row is done, else the request's policy
	// status ("pending" approval, "denied", "expired") or "in progress".
	State string `json:"state"`
	Rows  []Row  `json:"rows"`
}

// Fetch asks node for its signed receipt of erasure id; (nil, nil) when
// it has none.
type Fetch func(ctx context.Context, node, id string) ([]byte, error)

// Holders are the nodes that hold, or may hold, r's footage: the stores
// of its cameras' sites and every datacenter, revoked ones included (a
// revoked store's disk still holds what it recorded; the row says so).
func Holders(st *policy.State, r *policy.Request) []string {
	sites := map[string]bool{}
	for _, c := range r.Cameras {
		site, _, _ := strings.Cut(c, "/")
		sites[site] = true
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(st.Nodes)) {
		n := st.Nodes[name]
		if n.Role == policy.RoleDatacenter || (n.Role == policy.RoleStore && sites[n.Site]) {
			out = append(out, name)
		}
	}
	return out
}

// Collect gathers erasure id's receipts from every holder, in parallel,
// each bounded by ctx, and checks each against its node's key.
func Collect(ctx context.Context, st *policy.State, id string, fetch Fetch) (Status, error) {
	r := st.Requests[id]
	if r == nil {
		return Status{}, fmt.Errorf("no request %q in the policy", id)
	}
	if r.Action != policy.ActionErase {
		return Status{}, fmt.Errorf("request %s is not an erasure (custos erase makes one)", id)
	}
	out := Status{Request: id, Cameras: r.Cameras, From: r.From, To: r.To, Approved: r.ApprovedAt}
	holders := Holders(st, r)
	out.Rows = make([]Row, len(holders))
	now := time.Now()
	approved := !r.ApprovedAt.IsZero()
	var wg sync.WaitGroup
	for i, name := range holders {
		nd := st.Nodes[name]
		row := &out.Rows[i]
		row.Node, row.Role, row.State = name, string(nd.Role), Pending
		switch {
		case !approved:
			row.Note = "not approved"
			continue
		case nd.Revoked:
			row.State, row.Note = Revoked, "not asked: a copy on its disk stays sealed, as no custodian answers for footage its own replica no longer holds"
			continue
		case !policy.Member(st, name, now):
			row.Note = "not a live member now: it erases when it runs again with the policy"
		}
		wg.Go(func() {
			b, err := fetch(ctx, name, id)
			switch {
			case err != nil:
				row.State, row.Note = Unreachable, err.Error()
			case b == nil:
				if row.Note == "" {
					row.Note = "no receipt yet"
				}
			default:
				rec, err := Open(st, name, id, b)
				if err != nil {
					row.State, row.Note = Invalid, err.Error()
					return
				}
				row.State, row.Time, row.Receipt, row.Note = rec.State, rec.Time, b, rec.Error
				for _, c := range rec.Cameras {
					row.Segments += c.Segments
					row.Bytes += c.Bytes
					row.Epochs += c.Epochs
					row.Held += c.Held
				}
			}
		})
	}
	wg.Wait()
	switch {
	case !approved:
		out.State = st.RequestStatus(r, now)
	case !slices.ContainsFunc(out.Rows, func(r Row) bool { return r.State != keys.ErasureDone && r.State != Revoked }):
		out.State = keys.ErasureDone
	default:
		out.State = "in progress"
	}
	return out, nil
}

// HandleReceipt serves OpReceipt to a live member (the caller checks
// membership: who sends the request is authenticated by the mesh).
func (e *Eraser) HandleReceipt(_ context.Context, body []byte, w *rpc.Writer) error {
	var q struct {
		Request string `json:"request"`
	}
	if err := rpc.DecodeStrict(body, &q); err != nil || q.Request == "" {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {\"request\": ID}"}
	}
	b, ok := e.Receipt(q.Request)
	if !ok {
		return &rpc.Error{Code: rpc.Failed, Message: ErrNoReceipt.Error()}
	}
	return w.WriteFrame(b)
}

// ErrNoReceipt: the node has no receipt of the erasure (yet).
var ErrNoReceipt = errors.New("no receipt of this erasure here (yet)")

// ReceiptRequest is the body of OpReceipt.
func ReceiptRequest(id string) []byte {
	b, _ := json.Marshal(struct {
		Request string `json:"request"`
	}{id})
	return b
}
