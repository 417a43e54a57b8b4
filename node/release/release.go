// Package release owns opening approved footage (DESIGN §7): a store's and
// a datacenter's serving of an approved request's scope (the epochs and
// segments ops), a datacenter custodian's answers sealed to the request's
// one-time key (the release op), the one-time release keys the requesting
// node holds in memory, the export that combines the answers and writes
// the one plaintext file, and the recovery key's answers standing in for a
// missing datacenter.
//
// It must never serve or release anything before the policy, read
// linearizably, says the request is releasable to the node that asks; it
// never rebuilds an epoch key, never writes a release key or a share to a
// disk, and never keeps a custodian key in memory between releases. It
// holds no node: what it needs of one (the policy, the peers, the audit
// journal, the footage held here) comes through the small interfaces below.
package release

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Ops of the node service this package serves.
const (
	OpEpochs   = "epochs"   // store: epoch records of an approved scope
	OpSegments = "segments" // store: ciphertext segments of an approved scope
	OpRelease  = "release"  // datacenter: shares released to a request's key
)

// ErrNoPolicy: the node runs without a replicated policy, so there is
// nothing to release under.
var ErrNoPolicy = errors.New("this node runs from a static peers file, not a replicated policy")

// Policy is the node's replica of the federation's policy.
type Policy interface {
	State() *policy.State
	Changed() <-chan struct{}
	// Sync is a linearizable read: the replica made at least as new as the
	// leader's commit index, so that an approval or revocation committed
	// anywhere is seen before anything is served or released on it.
	Sync(ctx context.Context) (*policy.State, error)
}

// Peers names the members of the federation and reaches them over the
// node service.
type Peers interface {
	// Caller is the live member peer is, or an rpc denial.
	Caller(st *policy.State, peer keys.NodePublic) (string, error)
	// Self is this node's name in st.
	Self(st *policy.State) string
	// Dial opens a service connection to the live member name.
	Dial(ctx context.Context, st *policy.State, name string) (*mesh.QUICConn, error)
	// Call opens op with body q (JSON) on target; the caller closes the
	// reader and the connection.
	Call(ctx context.Context, st *policy.State, target, op string, q any) (*rpc.Reader, *mesh.QUICConn, error)
}

// Auditor records decisions in the node's audit journal.
type Auditor interface {
	Event(e audit.Event)
	// Serve records a serve decision: allow with what went out, or deny
	// with why.
	Serve(actor, action, object string, err error, detail string)
	// Ready refuses access (an rpc error) while the journal cannot record.
	Ready(actor, action, object string) error
}

// Media is a store of encrypted recordings (*store.Store).
type Media interface {
	Epochs(camera string, from, to time.Time) ([]store.EpochMeta, error)
	Epoch(camera string, start time.Time) ([]byte, error)
	Segments(camera string, from, to time.Time) ([]store.SegmentMeta, error)
	ReadSegment(meta store.SegmentMeta) ([]byte, error)
}

// Holdings is the footage this node holds, if any (nil Media otherwise).
type Holdings interface {
	// Served is what the store ops serve: a store's own recordings, or a
	// datacenter's replicas (playback when the store is offline).
	Served() Media
	// Replicas is a datacenter's replicas, which a custodian answers from.
	Replicas() Media
}

// Config is what the node tells the release service about itself.
type Config struct {
	Name string // this node's name, the actor of its own alarms
	// CustodianKey is the path of a datacenter's custodian key, read for
	// each release call and wiped when it returns.
	CustodianKey string
	Logf         func(format string, args ...any)
	// Corrupt counts segments this node holds but could not serve intact
	// (an alarm in the node's status).
	Corrupt *atomic.Uint64
	// Exported is the file of the exports this node made (exported.go);
	// "" keeps them in memory only.
	Exported string
}

// Deps are the node's parts the release service uses.
type Deps struct {
	Policy   Policy
	Peers    Peers
	Audit    Auditor
	Holdings Holdings
	Keys     *Keys // one-time release keys made here
	// Now, if set, is the node's decision clock (nil: time.Now); Fresh,
	// if set, refuses a new release or export while that clock cannot be
	// trusted.
	Now   func() time.Time
	Fresh func() error
}

func (s *Service) now() time.Time {
	if s.d.Now != nil {
		return s.d.Now()
	}
	return time.Now()
}

func (s *Service) fresh() error {
	if s.d.Fresh != nil {
		return s.d.Fresh()
	}
	return nil
}

// Service serves the store and datacenter ops and runs this node's
// exports.
type Service struct {
	cfg      Config
	d        Deps
	exports  exportsRunning
	exported *exportedLog
}

// New returns the release service of a node. A file of past exports that
// cannot be read is logged; the service starts without it.
func New(cfg Config, d Deps) *Service {
	ex, err := openExported(cfg.Exported)
	if err != nil && cfg.Logf != nil {
		cfg.Logf("node: %v", err)
	}
	return &Service{cfg: cfg, d: d, exported: ex}
}

// Exports are this node's exports in progress.
func (s *Service) Exports() []ExportProgress { return s.exports.list() }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
