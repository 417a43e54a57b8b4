package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/rpc"
)

// pull keeps one store's replica current until ctx ends: pull, store,
// repeat; on any failure drop the connections and retry with a capped,
// jittered backoff.
func (r *Replicas) pull(ctx context.Context, p *puller) {
	var lanes []*mesh.QUICConn // lanes[0] also carries the pulls
	closeLanes := func() {
		for _, c := range lanes {
			c.Close()
		}
		lanes = nil
	}
	defer closeLanes()
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := func() error {
			// While the replicas' storage does not answer, ask it (one small
			// request) rather than the store: a pull now would fetch
			// footage over the store's uplink only to drop it.
			if r.st.Health().Unavailable {
				if err := r.st.Probe(); err != nil {
					return err
				}
			}
			for len(lanes) < r.cfg.Lanes {
				c, err := r.d.Dial(ctx, r.d.Policy.State(), p.store)
				if err != nil {
					return err
				}
				lanes = append(lanes, c)
			}
			return r.pullOnce(ctx, lanes, p)
		}()
		p.mu.Lock()
		if err == nil {
			p.lastPull, p.err = time.Now(), ""
		} else if ctx.Err() == nil {
			p.err = err.Error()
		}
		p.mu.Unlock()
		r.noteStorage()
		if err == nil {
			backoff = 500 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		closeLanes()
		var re *rpc.Error
		if errors.As(err, &re) && re.Code == rpc.Denied {
			r.d.Logf("node: replica of %s: %v", p.store, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2)):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// cursors is what this replica holds of site's cameras.
func (r *Replicas) cursors(site string) (map[string]replCursor, error) {
	cams, err := r.st.Cameras()
	if err != nil {
		return nil, err
	}
	out := map[string]replCursor{}
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue
		}
		seg, segOK, ep, epOK, err := r.st.Newest(cam)
		if err != nil {
			return nil, err
		}
		var c replCursor
		if segOK {
			c.Segment = seg.Start
		}
		if epOK {
			c.Epoch = ep.Start
		}
		out[cam] = c
	}
	return out, nil
}

// pullOnce asks for what is missing, stores the epoch records and audit
// entries, then fetches the segments named over all lanes at once and
// stores them in the order named. Each item is durable before the next is
// stored; a failure leaves a prefix stored, which the next pull's cursor
// acknowledges.
func (r *Replicas) pullOnce(ctx context.Context, lanes []*mesh.QUICConn, p *puller) error {
	q, err := r.pullRequest(p)
	if err != nil {
		return err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return err
	}
	rd, err := rpc.Call(ctx, lanes[0], OpReplicate, body)
	if err != nil {
		return err
	}
	var refs []replItem
	err = func() error {
		defer rd.Close()
		for {
			hb, err := rd.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			var h replItem
			if len(hb) > maxReplItem {
				return fmt.Errorf("replica of %s: item header of %d bytes", p.store, len(hb))
			}
			if err := rpc.DecodeStrict(hb, &h); err != nil {
				return fmt.Errorf("replica of %s: item header: %w", p.store, err)
			}
			if h.Kind == "segment" {
				if len(refs) == replBatchSegments {
					return fmt.Errorf("replica of %s: more segments than the %d a pull names", p.store, replBatchSegments)
				}
				refs = append(refs, h)
				continue
			}
			payload, err := rd.Next()
			if err != nil {
				return rpc.NoEOF(err)
			}
			if err := r.apply(p, h, payload); err != nil {
				return fmt.Errorf("replica of %s: %w", p.store, err)
			}
		}
	}()
	if err != nil {
		return err
	}
	return r.fetchSegments(ctx, lanes, p, refs)
}

// pullRequest is what p asks its store for.
func (r *Replicas) pullRequest(p *puller) (replPull, error) {
	held, err := r.cursors(p.site)
	if err != nil {
		return replPull{}, err
	}
	auditSeq := p.audit.seq()
	if p.auditFlagged() != "" {
		// Ask for no audit lines: the store would send the same
		// unchainable batch on every pull, and its answer would never
		// wait for new footage.
		auditSeq = math.MaxUint64
	}
	p.mu.Lock()
	for cam, c := range p.refused {
		h := held[cam]
		if c.Segment.After(h.Segment) {
			h.Segment = c.Segment
		}
		if c.Epoch.After(h.Epoch) {
			h.Epoch = c.Epoch
		}
		held[cam] = h
	}
	p.mu.Unlock()
	return replPull{Cameras: held, AuditSeq: auditSeq, WaitMS: int(r.cfg.PullWait / time.Millisecond)}, nil
}

// fetchSegments fetches refs over the lanes, lane i taking refs i, i+n, …
// in turn, and stores each as soon as all before it are stored.
func (r *Replicas) fetchSegments(ctx context.Context, lanes []*mesh.QUICConn, p *puller, refs []replItem) error {
	if len(refs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	type got struct {
		ct  []byte
		err error
	}
	results := make([]chan got, len(refs))
	for i := range results {
		results[i] = make(chan got, 1)
	}
	for l, conn := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := l; i < len(refs); i += len(lanes) {
				h := refs[i]
				b, _ := json.Marshal(replGet{Camera: h.Camera, Start: h.Start, SHA256: h.SHA256})
				var g got
				if rd, err := rpc.Call(ctx, conn, OpReplicateGet, b); err != nil {
					g.err = err
				} else {
					fs, err := rpc.ReadFrames(rd, 1)
					rd.Close()
					switch {
					case err != nil:
						g.err = err
					case len(fs) != 1:
						g.err = fmt.Errorf("segment %s %s: no data", h.Camera, stamp(h.Start))
					default:
						g.ct = fs[0]
					}
				}
				results[i] <- g
				if g.err != nil {
					return // the stores stop at the first failure anyway
				}
			}
		}()
	}
	for i, h := range refs {
		var g got
		select {
		case g = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if g.err != nil {
			return fmt.Errorf("replica of %s: fetching segment %s %s: %w", p.store, h.Camera, stamp(h.Start), g.err)
		}
		if err := r.apply(p, h, g.ct); err != nil {
			return fmt.Errorf("replica of %s: %w", p.store, err)
		}
	}
	return nil
}
