package node

// Replication, the store's side (DESIGN §8, §4 invariants 9 and 10): the
// datacenters pull. Each pull names what the datacenter already holds (per
// camera, the newest segment and epoch record; the last audit entry), which
// is at once its acknowledgement of everything before and the cursor to
// resume from, so a pull after any restart, partition or crash of either
// side continues where the last acknowledged one ended, and sending a thing
// twice is harmless (the store's Put is idempotent). The store answers with
// the epoch records and audit entries the datacenter lacks first, then
// references to the next segments in time order (which keeps each camera's
// order). The datacenter fetches the segments themselves (op
// replicate-get) over several QUIC connections at once and stores them in
// that order; the store paces them by its uplink budget. Several
// connections because each loss-based congestion controller alone cannot
// carry a camera's bitrate over a lossy, distant link (throughput falls
// with RTT·√loss: about 0.6 Mbit/s per connection at 100 ms and 5 %), the
// way parallel TCP streams are used for bulk transfer. A store never
// deletes anything because it was replicated: only retention deletes.
//
// Why pull and not push: the cursor lives with the copy it describes, so it
// cannot disagree with it, and the rpc framing (one bounded request, a
// streamed answer) fits a pull without a second framing for uploads.

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

const (
	opReplicate    = "replicate"     // what the datacenter lacks: records, audit, segment references
	opReplicateGet = "replicate-get" // one segment's ciphertext
)

// ReplicationConfig tunes replication; the zero value is production.
type ReplicationConfig struct {
	// UplinkBytesPerSec is a store's budget for segments sent to all
	// datacenters together; 0 means unlimited. Epoch records and audit
	// entries are small and go first, outside the budget.
	UplinkBytesPerSec int64
	// PullWait is how long a datacenter's pull waits at the store for
	// something new before it returns empty (long poll); default 5 s.
	PullWait time.Duration
	// Lanes is how many QUIC connections a datacenter fetches one
	// store's segments over at once; default 4.
	Lanes int
}

// Replication limits.
const (
	replBatchSegments = 32       // segment references per pull answer
	replBatchBytes    = 32 << 20 // ciphertext bytes they name
	replBatchAudit    = 2000     // audit entries per pull answer
	replMaxWait       = 30 * time.Second
	replPollEvery     = 200 * time.Millisecond
	replStaleAfter    = 30 * time.Second // no pull for this long: unreachable
	replRefusalAudit  = 10 * time.Minute // a repeated refusal is audited again after this
)

// replPull is the body of a pull: what the datacenter holds.
type replPull struct {
	Cameras  map[string]replCursor `json:"cameras"`
	AuditSeq uint64                `json:"audit_seq"`
	WaitMS   int                   `json:"wait_ms"`
}

// replCursor is the newest segment and epoch record a replica holds of a
// camera (start times); everything before is held too.
type replCursor struct {
	Segment time.Time `json:"segment,omitzero"`
	Epoch   time.Time `json:"epoch,omitzero"`
}

// replItem heads each item of a pull's answer; the next frame is its
// payload (an epoch record, a segment's ciphertext, or audit lines).
type replItem struct {
	Kind       string    `json:"kind"` // "epoch", "audit" or "segment" (a reference: no payload frame follows)
	Camera     string    `json:"camera,omitempty"`
	Start      time.Time `json:"start,omitzero"`
	End        time.Time `json:"end,omitzero"`
	EpochStart time.Time `json:"epoch_start,omitzero"`
	SHA256     string    `json:"sha256,omitempty"`
	Count      int       `json:"count,omitempty"` // audit lines
	Size       int64     `json:"size,omitempty"`  // a segment's ciphertext bytes
}

// replGet asks for one segment's ciphertext.
type replGet struct {
	Camera string    `json:"camera"`
	Start  time.Time `json:"start"`
	SHA256 string    `json:"sha256"`
}

const maxReplItem = 1 << 10

// farFuture bounds "everything after" queries of the store.
var farFuture = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// replSource is a store's replication state: the uplink budget and what
// each datacenter acknowledged.
type replSource struct {
	n       *Node
	cfg     ReplicationConfig
	limiter *rate.Limiter // nil: unlimited

	mu      sync.Mutex
	acks    map[string]map[string]replCursor // datacenter → camera → held
	lastAck map[string]time.Time             // datacenter → last pull or fetch
	refused map[string]refusal               // datacenter → last audited refusal
}

type refusal struct {
	reason string
	at     time.Time
}

func newReplSource(n *Node, cfg ReplicationConfig) *replSource {
	r := &replSource{n: n, cfg: cfg, acks: map[string]map[string]replCursor{},
		lastAck: map[string]time.Time{}, refused: map[string]refusal{}}
	if cfg.UplinkBytesPerSec > 0 {
		// A burst of a quarter second (at least 64 KiB) keeps the pace
		// smooth without making small budgets unusable.
		burst := max(int(cfg.UplinkBytesPerSec/4), 64<<10)
		r.limiter = rate.NewLimiter(rate.Limit(cfg.UplinkBytesPerSec), burst)
	}
	return r
}

// handleReplicate serves a datacenter's pull. It reads the local policy, not
// a linearizable one: a store cut off from consensus must keep replicating
// to the datacenters it can reach (invariant 10), and who may hold replicas
// changes rarely and only by commands every replica applies.
func (n *Node) handleReplicate(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q replPull
	if err := strictJSON(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {cameras, audit_seq, wait_ms}: " + err.Error()}
	}
	caller, site, err := n.replicaCaller(peer)
	if err != nil {
		return err
	}
	n.repl.ack(caller, site, q.Cameras)
	wait := min(time.Duration(q.WaitMS)*time.Millisecond, replMaxWait)
	if q.WaitMS == 0 {
		wait = 0
	}
	deadline := time.Now().Add(wait)
	for {
		sent, err := n.repl.serve(ctx, site, q, w)
		if err != nil || sent > 0 || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(replPollEvery):
		}
	}
}

// replicaCaller authorizes a replication request: this node is a store and
// the caller may hold replicas (policy.Authorize, ActReplicate); a refusal
// is audited. It returns the caller and this store's site.
func (n *Node) replicaCaller(peer keys.NodePublic) (caller, site string, err error) {
	if n.rec == nil || n.repl == nil {
		return "", "", denied("this node is not a store and has nothing to replicate")
	}
	st := n.policy.State()
	if caller, err = n.callerName(st, peer); err != nil {
		return "", "", err
	}
	if d := policy.Authorize(st, policy.Subject{Kind: "node", Name: caller}, policy.ActReplicate, "", time.Now()); !d.Allow {
		n.repl.refuse(caller, errors.New(d.Reason))
		return "", "", denied("%s", d.Reason)
	}
	return caller, n.selfSite(st), nil
}

// selfSite is this node's site in st.
func (n *Node) selfSite(st *policy.State) string {
	if me := st.Nodes[n.selfName(st)]; me != nil {
		return me.Site
	}
	return ""
}

// refuse audits a refused datacenter: once, then again when the reason
// changes or replRefusalAudit has passed, so a retrying datacenter cannot
// flood the journal.
func (r *replSource) refuse(dc string, why error) {
	r.mu.Lock()
	last, seen := r.refused[dc]
	due := !seen || last.reason != why.Error() || time.Since(last.at) > replRefusalAudit
	if due {
		r.refused[dc] = refusal{reason: why.Error(), at: time.Now()}
	}
	r.mu.Unlock()
	if due {
		r.n.logf("node: replication to %s refused: %v", dc, why)
		r.n.auditEvent(audit.Event{Actor: dc, Action: "replicate", Object: r.n.cfg.Name, Decision: audit.Deny, Reason: why.Error()})
	}
}

// refuseOutside audits, once, each datacenter of the policy that the
// store will not replicate to (nor split key shares to): a datacenter in a
// jurisdiction the policy keeps no data in is refused whether or not it
// ever asks.
func (r *replSource) refuseOutside(st *policy.State) {
	for name, nd := range st.Nodes {
		if nd.Role != policy.RoleDatacenter || nd.Revoked || st.DataJurisdictionAllowed(nd.Jurisdiction) {
			continue
		}
		r.mu.Lock()
		_, seen := r.refused[name]
		r.mu.Unlock()
		if !seen {
			r.refuse(name, policy.ReplicaTarget(st, name, time.Now()))
		}
	}
}

// ack records what datacenter dc holds; the first pull of a session is
// audited (a pull every few seconds is not).
func (r *replSource) ack(dc, site string, held map[string]replCursor) {
	r.mu.Lock()
	first := time.Since(r.lastAck[dc]) > replStaleAfter
	m := r.acks[dc]
	if m == nil {
		m = map[string]replCursor{}
		r.acks[dc] = m
	}
	for cam, c := range held {
		if strings.HasPrefix(cam, site+"/") {
			m[cam] = c
		}
	}
	r.lastAck[dc] = time.Now()
	delete(r.refused, dc)
	r.mu.Unlock()
	if first {
		r.n.auditEvent(audit.Event{Actor: dc, Action: "replicate", Object: r.n.cfg.Name, Decision: audit.Allow,
			Reason: "datacenter in an allowed jurisdiction pulls ciphertext, epoch records and audit"})
	}
}

// serve writes one batch of what q lacks: epoch records, then audit
// entries, then segments by start time. It returns how many items it sent.
func (r *replSource) serve(ctx context.Context, site string, q replPull, w *rpc.Writer) (int, error) {
	s := r.n.rec.Store()
	cams, err := s.Cameras()
	if err != nil {
		return 0, fmt.Errorf("listing cameras: %w", err)
	}
	sent := 0
	var segs []store.SegmentMeta
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue // only the store's own site's footage leaves it
		}
		held := q.Cameras[cam]
		// Segments are listed before epoch records: a record is durable
		// before any segment encrypted to it, so every segment listed
		// has its record in the list that follows.
		ss, err := s.Segments(cam, after(held.Segment), farFuture)
		if err != nil {
			return sent, err
		}
		eps, err := s.Epochs(cam, after(held.Epoch), farFuture)
		if err != nil {
			return sent, err
		}
		for _, m := range eps {
			if !m.Start.After(held.Epoch) && !held.Epoch.IsZero() {
				continue
			}
			rec, err := s.Epoch(cam, m.Start)
			if err != nil {
				return sent, fmt.Errorf("reading epoch record: %w", err)
			}
			if err := writeItem(w, replItem{Kind: "epoch", Camera: cam, Start: m.Start, End: m.End, SHA256: hex.EncodeToString(m.SHA256[:])}, rec); err != nil {
				return sent, err
			}
			sent++
		}
		for _, m := range ss {
			if held.Segment.IsZero() || m.Start.After(held.Segment) {
				segs = append(segs, m)
			}
		}
	}
	// The journal is read from a mark near the datacenter's cursor, and
	// not at all when it holds the head (the usual pull).
	var entries []audit.Entry
	if head, _ := r.n.audit.Head(); head > q.AuditSeq {
		if entries, err = r.n.audit.After(q.AuditSeq, replBatchAudit); err != nil {
			return sent, fmt.Errorf("reading the audit journal: %w", err)
		}
	}
	if len(entries) > 0 {
		var lines []byte
		for _, e := range entries {
			l, err := e.Line()
			if err != nil {
				return sent, err
			}
			lines = append(lines, l...)
		}
		if err := writeItem(w, replItem{Kind: "audit", Count: len(entries)}, lines); err != nil {
			return sent, err
		}
		sent++
	}
	slices.SortStableFunc(segs, func(a, b store.SegmentMeta) int { return a.Start.Compare(b.Start) })
	var bytes int64
	for i, m := range segs {
		if i == replBatchSegments || bytes >= replBatchBytes {
			break
		}
		h := replItem{Kind: "segment", Camera: m.Camera, Start: m.Start, End: m.End, EpochStart: m.EpochStart,
			SHA256: hex.EncodeToString(m.SHA256[:]), Size: m.Size}
		b, err := json.Marshal(h)
		if err != nil {
			return sent, err
		}
		if err := w.WriteFrame(b); err != nil {
			return sent, err
		}
		bytes += m.Size
		sent++
	}
	return sent, nil
}

// handleReplicateGet serves one segment a datacenter's pull named, paced by
// the uplink budget. The same rules as the pull: a datacenter the policy
// lets hold replicas, and only this store's own site's footage.
func (n *Node) handleReplicateGet(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	var q replGet
	if err := strictJSON(body, &q); err != nil {
		return &rpc.Error{Code: rpc.BadRequest, Message: "want {camera, start, sha256}: " + err.Error()}
	}
	sum, err := hex.DecodeString(q.SHA256)
	if err != nil || len(sum) != 32 {
		return &rpc.Error{Code: rpc.BadRequest, Message: "sha256: want 64 hex digits"}
	}
	caller, site, err := n.replicaCaller(peer)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(q.Camera, site+"/") {
		return denied("camera %q is not of this store's site %s", q.Camera, site)
	}
	ct, err := n.rec.Store().ReadSegment(store.SegmentMeta{Camera: q.Camera, Start: q.Start, SHA256: [32]byte(sum)})
	if err != nil {
		// Gone to retention, or never here: the datacenter's next pull
		// names what there is.
		return fmt.Errorf("segment %s %s: %w", q.Camera, stamp(q.Start), err)
	}
	n.repl.contact(caller)
	if err := n.repl.pace(ctx, len(ct)); err != nil {
		return err
	}
	return w.WriteFrame(ct)
}

// contact notes that datacenter dc is fetching (it is reachable).
func (r *replSource) contact(dc string) {
	r.mu.Lock()
	r.lastAck[dc] = time.Now()
	r.mu.Unlock()
}

// after is the query bound for "after t": the store's Segments and Epochs
// return what overlaps [from, to); callers drop what starts at or before t.
func after(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// pace waits until n bytes fit the uplink budget.
func (r *replSource) pace(ctx context.Context, n int) error {
	if r.limiter == nil {
		return nil
	}
	for n > 0 {
		k := min(n, r.limiter.Burst())
		if err := r.limiter.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func writeItem(w *rpc.Writer, h replItem, payload []byte) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := w.WriteFrame(b); err != nil {
		return err
	}
	return w.WriteFrame(payload)
}

// ReplicationStatus is one camera's replication to one datacenter, as a
// store sees it.
type ReplicationStatus struct {
	Camera     string `json:"camera"`
	Datacenter string `json:"datacenter"`
	// State: caught-up, behind, waiting (no pull yet), unreachable (no
	// pull for 30 s) or refused (the policy keeps data elsewhere).
	State       string    `json:"state"`
	UpTo        time.Time `json:"replicated_up_to,omitzero"` // end of the newest segment acknowledged
	LagSeconds  float64   `json:"lag_seconds"`               // newest local segment's end − UpTo
	LagBytes    int64     `json:"lag_bytes"`                 // ciphertext not yet acknowledged
	LagSegments int       `json:"lag_segments"`
	LastPull    time.Time `json:"last_pull,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// status reports every camera the store holds against every datacenter
// of the policy.
func (r *replSource) status() []ReplicationStatus {
	st := r.n.policy.State()
	site := r.n.selfSite(st)
	s := r.n.rec.Store()
	cams, err := s.Cameras()
	if err != nil {
		return []ReplicationStatus{{State: "error", Error: err.Error()}}
	}
	var dcs []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleDatacenter && !nd.Revoked {
			dcs = append(dcs, name)
		}
	}
	sort.Strings(dcs)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ReplicationStatus
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue
		}
		newest, ok, _, _, err := s.Newest(cam)
		if err != nil {
			out = append(out, ReplicationStatus{Camera: cam, State: "error", Error: err.Error()})
			continue
		}
		for _, dc := range dcs {
			rs := ReplicationStatus{Camera: cam, Datacenter: dc, LastPull: r.lastAck[dc]}
			if err := policy.ReplicaTarget(st, dc, now); err != nil {
				rs.State, rs.Error = "refused", err.Error()
				out = append(out, rs)
				continue
			}
			// Only what follows the acknowledged segment is read, so the
			// cost is the lag, not the store.
			held := r.acks[dc][cam]
			pending, err := s.Segments(cam, after(held.Segment), farFuture)
			if err != nil {
				rs.State, rs.Error = "error", err.Error()
				out = append(out, rs)
				continue
			}
			var first time.Time
			for _, m := range pending {
				if !held.Segment.IsZero() && !m.Start.After(held.Segment) {
					if m.Start.Equal(held.Segment) {
						rs.UpTo = m.End
					}
					continue
				}
				if first.IsZero() {
					first = m.Start
				}
				rs.LagSegments++
				rs.LagBytes += m.Size
			}
			if ok && rs.LagSegments > 0 {
				rs.LagSeconds = newest.End.Sub(cmp.Or(rs.UpTo, first)).Seconds()
			}
			switch {
			case rs.LastPull.IsZero():
				rs.State = "waiting"
			case now.Sub(rs.LastPull) > replStaleAfter:
				rs.State = "unreachable"
				rs.Error = fmt.Sprintf("no pull for %s", now.Sub(rs.LastPull).Round(time.Second))
			case rs.LagSegments == 0:
				rs.State = "caught-up"
			default:
				rs.State = "behind"
			}
			out = append(out, rs)
		}
	}
	return out
}
