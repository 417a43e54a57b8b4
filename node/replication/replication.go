// Package replication owns the replication of a store's footage to the
// datacenters (DESIGN §8, §4 invariants 9 and 10): the store's side
// (Source: the ops replicate and replicate-get, the uplink budget, what
// each datacenter acknowledged, refusals) and the datacenter's side
// (Replicas: one puller per store, the custody checks of what arrives,
// the copy of each store's audit journal, status).
//
// The datacenters pull. Each pull names what the datacenter already holds
// (per camera, the newest segment and epoch record; the last audit entry),
// which is at once its acknowledgement of everything before and the cursor
// to resume from, so a pull after any restart, partition or crash of either
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
//
// It never imports the node: what it needs of the node it runs in (the
// policy, the audit journal, dialling, naming callers) comes through Deps.
// A datacenter never holds an epoch key, and neither side ever deletes
// footage: retention is the node's, applied through Deps.
package replication

import (
	"context"
	"encoding/json"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// The ops a store serves.
const (
	OpReplicate    = "replicate"     // what the datacenter lacks: records, audit, segment references
	OpReplicateGet = "replicate-get" // one segment's ciphertext
)

// Config tunes replication; the zero value is production.
type Config struct {
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

// Policy is the node's local copy of the policy.
type Policy interface {
	State() *policy.State
}

// Journal is the node's own audit journal, which a store replicates.
type Journal interface {
	Head() (seq uint64, hash audit.Digest)
	After(seq uint64, limit int) ([]audit.Entry, error)
}

// Deps is what both sides need of the node they run in.
type Deps struct {
	Name   string                        // this node's configured name: the actor of what it audits
	Policy Policy                        // read locally, never linearizably
	Self   func(st *policy.State) string // this node's name in st (found by its key)
	Audit  func(audit.Event)             // appends to the node's journal; the node logs a failure
	Logf   func(format string, a ...any)
	// Now, if set, is the node's decision clock (nil: time.Now).
	Now func() time.Time
}

func (d Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// SourceDeps is what a store's side needs.
type SourceDeps struct {
	Deps
	// Media is the store's recordings; nil while it records nothing.
	Media func() *store.Store
	// Journal is replicated to the datacenters.
	Journal Journal
	// Caller is the live member peer is, or an rpc denial.
	Caller func(st *policy.State, peer keys.NodePublic) (string, error)
	// Outside, if set, is told of each audited refusal of a datacenter
	// in a jurisdiction the policy keeps no data in (the node drafts a
	// breach); it must not block.
	Outside func(dc string, why error)
}

// ReplicaDeps is what a datacenter's side needs.
type ReplicaDeps struct {
	Deps
	// AuditDir holds the copies of the stores' audit journals
	// (DIR/replicas/audit).
	AuditDir string
	// Dial opens a service connection to the live member name.
	Dial func(ctx context.Context, st *policy.State, name string) (*mesh.QUICConn, error)
	// Follow runs retain at once and every retainEvery, and reconcile on
	// every policy change, until stop closes (the node's policy loop).
	Follow func(stop <-chan struct{}, retainEvery time.Duration, retain, reconcile func())
	// Retain applies each camera's retention to s, like the store's.
	Retain func(s *store.Store)
	// AuditKeep is how long the copies of the stores' journals keep
	// entries by the policy st: as long as the stores' own journals.
	AuditKeep func(st *policy.State) time.Duration
	// AuditBroken, if set, is told once per puller that a store's journal
	// no longer chains onto the copy held (the node drafts a breach); it
	// must not block.
	AuditBroken func(store string, err error)
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

// after is the query bound for "after t": the store's Segments and Epochs
// return what overlaps [from, to); callers drop what starts at or before t.
func after(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// frameWriter is where an answer goes: an *rpc.Writer.
type frameWriter interface {
	WriteFrame([]byte) error
}

func writeItem(w frameWriter, h replItem, payload []byte) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := w.WriteFrame(b); err != nil {
		return err
	}
	return w.WriteFrame(payload)
}

// stamp formats t as the node's messages do.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
