package replication

// Replication, the datacenter's side: one puller per live store of the
// policy keeps a replica of the store's encrypted segments and epoch records
// in this node's own media store (the same layout as the store's, so
// "byte-identical" can be checked file by file) and of its audit journal in
// DIR/replicas/audit/<store>.jsonl. A datacenter keeps ciphertext only: it
// never holds an epoch key, only its own custodian share inside each record
// (DESIGN §4 invariant 3). It applies each camera's retention like the store.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Replicas runs a datacenter's pullers.
type Replicas struct {
	d    ReplicaDeps
	st   *store.Store
	cfg  Config
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	pullers map[string]*puller // by store name

	alarmMu sync.Mutex
	alarm   string // guarded by alarmMu: the storage alarm last logged ("" none)
}

type puller struct {
	store  string
	site   string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	lastPull time.Time
	err      string
	audit    *auditReplica
	// auditFlag says why the store's journal no longer chains onto the
	// copy held ("" while it does). The copy then stops following it, but
	// footage keeps coming: a suspect journal is a reason to alarm, not
	// to stop keeping the evidence.
	auditFlag string // guarded by mu

	// Footage whose seal does not verify is refused (never stored) and
	// skipped: refused holds, per camera, the newest refused segment and
	// epoch record, which the cursor moves past, so one bad item neither
	// enters the replica nor stops the store's later footage. It is
	// memory only: after a restart the items are fetched, refused and
	// alarmed again.
	refused      map[string]replCursor        // guarded by mu
	refusedCount uint64                       // guarded by mu
	lastRefusal  string                       // guarded by mu
	epochs       map[string]*keys.SealedEpoch // the last record verified, per camera (pull goroutine only)
}

// noteStorage logs and audits the replicas' storage alarm (full,
// unavailable, reads refused for integrity, indexed objects missing) when
// it is raised and when it clears, once each; status shows it throughout
// (store.Health). A pull that hit it has stored nothing past the failure,
// so the cursor stays where the storage holds everything before it.
func (r *Replicas) noteStorage() {
	h := r.st.Health()
	state := ""
	if h.DiskFull || h.Unavailable || h.Corrupt > 0 || len(h.Missing) > 0 {
		state = fmt.Sprint(h.DiskFull, h.Unavailable, h.Corrupt, len(h.Missing))
	}
	r.alarmMu.Lock()
	prev := r.alarm
	r.alarm = state
	r.alarmMu.Unlock()
	switch {
	case state == prev:
	case state == "":
		r.d.Logf("node: replica storage alarm cleared: %s answers and stores again", cmp.Or(h.Storage, "the disk"))
		r.d.Audit(audit.Event{Actor: r.d.Name, Action: "replica-storage", Object: cmp.Or(h.Storage, "disk"), Decision: audit.Allow, Reason: "storage alarm cleared"})
	default:
		r.d.Logf("node: REPLICA STORAGE ALARM: %s; replication waits and acknowledges nothing it has not stored", h.Alarm())
		r.d.Audit(audit.Event{Actor: r.d.Name, Action: "replica-storage", Object: cmp.Or(h.Storage, "disk"), Decision: audit.Deny, Reason: h.Alarm()})
	}
}

// Health is the replicas' storage and its alarms.
func (r *Replicas) Health() store.Health { return r.st.Health() }

// auditFlagged is the flag, or "".
func (p *puller) auditFlagged() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auditFlag
}

// StartReplicas runs a datacenter's pullers, keeping the replicas in st
// (the node's media store, opened for them), until Close; Close closes st.
func StartReplicas(st *store.Store, cfg Config, d ReplicaDeps) *Replicas {
	if cfg.PullWait <= 0 {
		cfg.PullWait = 5 * time.Second
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 4
	}
	r := &Replicas{d: d, st: st, cfg: cfg, stop: make(chan struct{}), pullers: map[string]*puller{}}
	r.reconcile()
	r.wg.Add(1)
	go r.loop()
	return r
}

// Close stops the pullers and closes the media store.
func (r *Replicas) Close() {
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	for name, p := range r.pullers {
		p.cancel()
		<-p.done
		delete(r.pullers, name)
	}
	r.mu.Unlock()
	r.st.Close()
}

// Store is the datacenter's media store, which holds the replicas.
func (r *Replicas) Store() *store.Store { return r.st }

func (r *Replicas) loop() {
	defer r.wg.Done()
	var pruned time.Time
	r.d.Follow(r.stop, time.Minute, func() {
		r.d.Retain(r.st)
		if now := time.Now(); now.Sub(pruned) >= auditPruneEvery && r.pruneAudit(now) {
			pruned = now
		}
	}, r.reconcile)
}

// auditPruneEvery is how often the copies of the stores' journals are
// pruned, as often as the nodes prune their own.
const auditPruneEvery = time.Hour

// reconcile runs one puller per live store of the policy while this node
// may hold replicas itself.
func (r *Replicas) reconcile() {
	st := r.d.Policy.State()
	now := time.Now()
	want := map[string]string{}
	if policy.ReplicaTarget(st, r.d.Self(st), now) == nil {
		for name, nd := range st.Nodes {
			if nd.Role == policy.RoleStore && nd.Site != "" && policy.Member(st, name, now) {
				want[name] = nd.Site
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, p := range r.pullers {
		if want[name] != p.site {
			p.cancel()
			<-p.done
			delete(r.pullers, name)
		}
	}
	for name, site := range want {
		if r.pullers[name] != nil {
			continue
		}
		ar, err := openAuditReplica(r.d.AuditDir, name)
		if err != nil {
			r.d.Logf("node: replica of %s's audit journal: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &puller{store: name, site: site, cancel: cancel, done: make(chan struct{}), audit: ar}
		r.pullers[name] = p
		go func() {
			defer close(p.done)
			r.pull(ctx, p)
		}()
	}
}

// apply checks one item against what the store claims and stores it.
func (r *Replicas) apply(p *puller, h replItem, payload []byte) error {
	if h.Kind != "audit" && !strings.HasPrefix(h.Camera, p.site+"/") {
		return fmt.Errorf("camera %q is not of the store's site %s", h.Camera, p.site)
	}
	var sum [32]byte
	if h.Kind != "audit" {
		got := sha256.Sum256(payload)
		want, err := hex.DecodeString(h.SHA256)
		if err != nil || !bytes.Equal(want, got[:]) {
			return fmt.Errorf("%s %s %s: payload does not match its SHA-256", h.Kind, h.Camera, stamp(h.Start))
		}
		sum = got
	}
	switch h.Kind {
	case "epoch":
		e, err := custody.VerifyEpoch(r.d.Policy.State(), h.Camera, payload)
		if err == nil && (!e.Record.Start.Equal(h.Start) || !e.Record.End.Equal(h.End)) {
			err = fmt.Errorf("epoch record %s %s: names %s…%s: %w", h.Camera, stamp(h.Start), stamp(e.Record.Start), stamp(e.Record.End), custody.ErrBroken)
		}
		if err != nil {
			return r.refuse(p, h, err)
		}
		return r.erased(p, h, r.st.PutEpoch(h.Camera, h.Start, h.End, payload))
	case "segment":
		ep, err := r.epochOf(p, h.Camera, h.EpochStart)
		var g *keys.SealedSegment
		if err == nil {
			g, err = custody.VerifySegment(r.d.Policy.State(), h.Camera, payload, ep)
		}
		if err == nil && (!g.Link.Start.Equal(h.Start) || !g.Link.End.Equal(h.End)) {
			err = fmt.Errorf("segment %s %s: its signed link says %s…%s: %w", h.Camera, stamp(h.Start), stamp(g.Link.Start), stamp(g.Link.End), custody.ErrBroken)
		}
		if err != nil {
			return r.refuse(p, h, err)
		}
		return r.erased(p, h, r.st.Put(store.SegmentMeta{Camera: h.Camera, Start: h.Start, End: h.End, EpochStart: h.EpochStart,
			Size: int64(len(payload)), SHA256: sum}, payload))
	case "audit":
		err := p.audit.append(payload, h.Count)
		if errors.Is(err, errAuditChain) {
			r.flagAudit(p, err)
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown item kind %q", h.Kind)
}

// epochOf is the verified epoch record a segment of cam names, from this
// replica (where only verified records are stored).
func (r *Replicas) epochOf(p *puller, cam string, start time.Time) (*keys.SealedEpoch, error) {
	if e := p.epochs[cam]; e != nil && e.Record.Start.Equal(start) {
		return e, nil
	}
	b, err := r.st.Epoch(cam, start)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("segment of %s names epoch %s, whose record this replica does not hold (refused or never sent): %w",
			cam, stamp(start), custody.ErrBroken)
	}
	if err != nil {
		return nil, err
	}
	e, err := custody.VerifyEpoch(r.d.Policy.State(), cam, b)
	if err != nil {
		return nil, err
	}
	if p.epochs == nil {
		p.epochs = map[string]*keys.SealedEpoch{}
	}
	p.epochs[cam] = e
	return e, nil
}

// erased passes err on, except the store's refusal of footage an approved
// erasure covers (a store restored from an old backup still offers it):
// that is final, so the item is skipped like a refused one, without an
// alarm.
func (r *Replicas) erased(p *puller, h replItem, err error) error {
	if !errors.Is(err, store.ErrErased) {
		return err
	}
	p.skip(h)
	return nil
}

// skip moves p's cursor past item h.
func (p *puller) skip(h replItem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused == nil {
		p.refused = map[string]replCursor{}
	}
	c := p.refused[h.Camera]
	if h.Kind == "epoch" && h.Start.After(c.Epoch) {
		c.Epoch = h.Start
	}
	if h.Kind == "segment" && h.Start.After(c.Segment) {
		c.Segment = h.Start
	}
	p.refused[h.Camera] = c
}

// refuse keeps footage that fails its custody check out of the replica:
// other errors stand (the pull retries), a custody failure is alarmed and
// audited and the item skipped (see puller.refused).
func (r *Replicas) refuse(p *puller, h replItem, err error) error {
	if !errors.Is(err, custody.ErrBroken) {
		return err
	}
	p.skip(h)
	p.mu.Lock()
	p.refusedCount++
	p.lastRefusal = err.Error()
	p.mu.Unlock()
	r.d.Logf("node: CUSTODY ALARM: replica of %s: refused %s %s %s: %v", p.store, h.Kind, h.Camera, stamp(h.Start), err)
	r.d.Audit(audit.Event{Actor: r.d.Name, Action: "replica-refused", Object: h.Kind + " " + h.Camera + "@" + stamp(h.Start),
		Decision: audit.Deny, Reason: err.Error()})
	return nil
}

// flagAudit raises the alarm, once per puller, that p's store's journal
// was rewritten: in the log, in this node's own journal and in its status.
func (r *Replicas) flagAudit(p *puller, err error) {
	p.mu.Lock()
	first := p.auditFlag == ""
	if first {
		p.auditFlag = err.Error()
	}
	p.mu.Unlock()
	if !first {
		return
	}
	r.d.Logf("node: AUDIT ALARM: replica of %s's audit journal: %v; footage replication continues", p.store, err)
	r.d.Audit(audit.Event{Actor: r.d.Name, Action: "audit-replica", Object: p.store, Decision: audit.Deny,
		Reason: err.Error() + "; the copy held is kept and no longer follows the store's journal"})
	if r.d.AuditBroken != nil {
		r.d.AuditBroken(p.store, err)
	}
}
