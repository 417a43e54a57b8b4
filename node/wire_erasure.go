package node

// The glue between the node and node/erasure: a store's or a datacenter's
// eraser over its media store, the op that hands out its receipts, and the
// collection of every holder's receipts for `custos erase status`.

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/node/rpc"
)

// startEraser runs the eraser of a node that holds footage (after the
// recorders or the replicas started).
func startEraser(n *Node) (*erasure.Eraser, error) {
	return erasure.Start(erasure.Deps{
		Name:    n.cfg.Name,
		Dir:     n.cfg.Dir,
		Policy:  n.policy,
		Audit:   recordingAudit{n},
		Logf:    n.logf,
		Self:    n.selfName,
		Custody: n.custody,
		Media: func() *store.Store {
			switch {
			case n.rec != nil:
				return n.rec.Store()
			case n.replicas != nil:
				return n.replicas.Store()
			}
			return nil
		},
	})
}

// handleErasureReceipt serves this node's receipt of an erasure to a live
// member.
func (n *Node) handleErasureReceipt(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	if _, err := n.callerName(n.policy.State(), peer); err != nil {
		return err
	}
	if n.eraser == nil {
		return &rpc.Error{Code: rpc.Failed, Message: erasure.ErrNoReceipt.Error()}
	}
	return n.eraser.HandleReceipt(ctx, body, w)
}

// ErasureStatus collects erasure id's receipts from every node that holds
// its footage.
func (n *Node) ErasureStatus(ctx context.Context, id string) (erasure.Status, error) {
	if n.policy == nil {
		return erasure.Status{}, errors.New("this node runs from a static peers file, not a replicated policy")
	}
	st, err := n.syncPolicy(ctx)
	if err != nil {
		st = n.policy.State() // a partitioned node shows what it knows
	}
	self := n.selfName(st)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return erasure.Collect(ctx, st, id, func(ctx context.Context, node, id string) ([]byte, error) {
		if node == self {
			if n.eraser == nil {
				return nil, nil
			}
			b, _ := n.eraser.Receipt(id)
			return b, nil
		}
		c, err := n.dialNode(ctx, st, node)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		rd, err := rpc.Call(ctx, c, erasure.OpReceipt, erasure.ReceiptRequest(id))
		var re *rpc.Error
		if errors.As(err, &re) && re.Code == rpc.Failed && strings.Contains(re.Message, erasure.ErrNoReceipt.Error()) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		defer rd.Close()
		fs, err := rpc.ReadFramesLimit(rd, 1, keys.MaxErasureReceipt+128)
		if err != nil {
			return nil, err
		}
		if len(fs) != 1 {
			return nil, errors.New("no receipt in the answer")
		}
		return fs[0], nil
	})
}
