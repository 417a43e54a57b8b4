package node

// Replication, the datacenter's side: one puller per live store of the
// policy keeps a replica of the store's encrypted segments and epoch records
// in this node's own media store (the same layout as the store's, so
// "byte-identical" can be checked file by file) and of its audit journal in
// DIR/replicas/audit/<store>.jsonl. A datacenter keeps ciphertext only: it
// never holds an epoch key, only its own custodian share inside each record
// (DESIGN §4 invariant 3). It applies each camera's retention like the store.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/custody"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// replicas runs a datacenter's pullers.
type replicas struct {
	n    *Node
	st   *store.Store
	cfg  ReplicationConfig
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	pullers map[string]*puller // by store name
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

// auditFlagged is the flag, or "".
func (p *puller) auditFlagged() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auditFlag
}

func startReplicas(n *Node, cfg ReplicationConfig) (*replicas, error) {
	st, err := openMedia(n, "replicas", store.Options{})
	if err != nil {
		return nil, err
	}
	if cfg.PullWait <= 0 {
		cfg.PullWait = 5 * time.Second
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 4
	}
	r := &replicas{n: n, st: st, cfg: cfg, stop: make(chan struct{}), pullers: map[string]*puller{}}
	r.reconcile()
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

func (r *replicas) close() {
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

func (r *replicas) loop() {
	defer r.wg.Done()
	followPolicy(r.n, r.stop, nil, time.Minute, func() { retainStore(r.n, r.st) }, r.reconcile)
}

// reconcile runs one puller per live store of the policy while this node
// may hold replicas itself.
func (r *replicas) reconcile() {
	st := r.n.policy.State()
	now := time.Now()
	want := map[string]string{}
	if policy.ReplicaTarget(st, r.n.selfName(st), now) == nil {
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
		ar, err := openAuditReplica(filepath.Join(r.n.cfg.Dir, "replicas", "audit"), name)
		if err != nil {
			r.n.logf("node: replica of %s's audit journal: %v", name, err)
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

// pull keeps one store's replica current until ctx ends: pull, store,
// repeat; on any failure drop the connections and retry with a capped,
// jittered backoff.
func (r *replicas) pull(ctx context.Context, p *puller) {
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
			for len(lanes) < r.cfg.Lanes {
				c, err := r.n.dialNode(ctx, r.n.policy.State(), p.store)
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
			r.n.logf("node: replica of %s: %v", p.store, err)
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
func (r *replicas) cursors(site string) (map[string]replCursor, error) {
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
func (r *replicas) pullOnce(ctx context.Context, lanes []*mesh.QUICConn, p *puller) error {
	q, err := r.pullRequest(p)
	if err != nil {
		return err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return err
	}
	rd, err := rpc.Call(ctx, lanes[0], opReplicate, body)
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
			if err := strictJSON(hb, &h); err != nil {
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
func (r *replicas) pullRequest(p *puller) (replPull, error) {
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
func (r *replicas) fetchSegments(ctx context.Context, lanes []*mesh.QUICConn, p *puller, refs []replItem) error {
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
				if rd, err := rpc.Call(ctx, conn, opReplicateGet, b); err != nil {
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

// apply checks one item against what the store claims and stores it.
func (r *replicas) apply(p *puller, h replItem, payload []byte) error {
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
		e, err := custody.VerifyEpoch(r.n.policy.State(), h.Camera, payload)
		if err == nil && (!e.Record.Start.Equal(h.Start) || !e.Record.End.Equal(h.End)) {
			err = fmt.Errorf("epoch record %s %s: names %s…%s: %w", h.Camera, stamp(h.Start), stamp(e.Record.Start), stamp(e.Record.End), custody.ErrBroken)
		}
		if err != nil {
			return r.refuse(p, h, err)
		}
		return r.st.PutEpoch(h.Camera, h.Start, h.End, payload)
	case "segment":
		ep, err := r.epochOf(p, h.Camera, h.EpochStart)
		var g *keys.SealedSegment
		if err == nil {
			g, err = custody.VerifySegment(r.n.policy.State(), h.Camera, payload, ep)
		}
		if err == nil && (!g.Link.Start.Equal(h.Start) || !g.Link.End.Equal(h.End)) {
			err = fmt.Errorf("segment %s %s: its signed link says %s…%s: %w", h.Camera, stamp(h.Start), stamp(g.Link.Start), stamp(g.Link.End), custody.ErrBroken)
		}
		if err != nil {
			return r.refuse(p, h, err)
		}
		return r.st.Put(store.SegmentMeta{Camera: h.Camera, Start: h.Start, End: h.End, EpochStart: h.EpochStart,
			Size: int64(len(payload)), SHA256: sum}, payload)
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
func (r *replicas) epochOf(p *puller, cam string, start time.Time) (*keys.SealedEpoch, error) {
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
	e, err := custody.VerifyEpoch(r.n.policy.State(), cam, b)
	if err != nil {
		return nil, err
	}
	if p.epochs == nil {
		p.epochs = map[string]*keys.SealedEpoch{}
	}
	p.epochs[cam] = e
	return e, nil
}

// refuse keeps footage that fails its custody check out of the replica:
// other errors stand (the pull retries), a custody failure is alarmed and
// audited and the item skipped (see puller.refused).
func (r *replicas) refuse(p *puller, h replItem, err error) error {
	if !errors.Is(err, custody.ErrBroken) {
		return err
	}
	p.mu.Lock()
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
	p.refusedCount++
	p.lastRefusal = err.Error()
	p.mu.Unlock()
	r.n.logf("node: CUSTODY ALARM: replica of %s: refused %s %s %s: %v", p.store, h.Kind, h.Camera, stamp(h.Start), err)
	r.n.auditEvent(audit.Event{Actor: r.n.cfg.Name, Action: "replica-refused", Object: h.Kind + " " + h.Camera + "@" + stamp(h.Start),
		Decision: audit.Deny, Reason: err.Error()})
	return nil
}

// flagAudit raises the alarm, once per puller, that p's store's journal
// was rewritten: in the log, in this node's own journal and in its status.
func (r *replicas) flagAudit(p *puller, err error) {
	p.mu.Lock()
	first := p.auditFlag == ""
	if first {
		p.auditFlag = err.Error()
	}
	p.mu.Unlock()
	if !first {
		return
	}
	r.n.logf("node: AUDIT ALARM: replica of %s's audit journal: %v; footage replication continues", p.store, err)
	r.n.auditEvent(audit.Event{Actor: r.n.cfg.Name, Action: "audit-replica", Object: p.store, Decision: audit.Deny,
		Reason: err.Error() + "; the copy held is kept and no longer follows the store's journal"})
}

// ReplicaStatus is one store's replica on a datacenter.
type ReplicaStatus struct {
	Store    string    `json:"store"`
	State    string    `json:"state"` // pulling, unreachable
	LastPull time.Time `json:"last_pull,omitzero"`
	Error    string    `json:"error,omitempty"`
	AuditSeq uint64    `json:"audit_seq"` // the store's audit entries held, up to
	// AuditAlarm says why the store's journal no longer chains onto the
	// copy held (rewritten); footage is still pulled.
	AuditAlarm string `json:"audit_alarm,omitempty"`
	// Refused counts footage from the store whose seal did not verify
	// (not stored); RefusedLast says why the last one was refused.
	Refused     uint64          `json:"refused,omitempty"`
	RefusedLast string          `json:"refused_last,omitempty"`
	Cameras     []ReplicaCamera `json:"cameras"`
}

// ReplicaCamera is what a datacenter holds of one camera.
type ReplicaCamera struct {
	Camera   string    `json:"camera"`
	Segments int       `json:"segments"`
	Bytes    int64     `json:"bytes"`
	Newest   time.Time `json:"newest,omitzero"` // end of the newest segment held
}

func (r *replicas) status() []ReplicaStatus {
	r.mu.Lock()
	ps := make([]*puller, 0, len(r.pullers))
	for _, p := range r.pullers {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].store < ps[j].store })
	cams, _ := r.st.Cameras()
	var out []ReplicaStatus
	for _, p := range ps {
		p.mu.Lock()
		rs := ReplicaStatus{Store: p.store, LastPull: p.lastPull, Error: p.err, AuditSeq: p.audit.seq(), AuditAlarm: p.auditFlag,
			Refused: p.refusedCount, RefusedLast: p.lastRefusal}
		p.mu.Unlock()
		rs.State = "pulling"
		if time.Since(rs.LastPull) > replStaleAfter {
			rs.State = "unreachable"
		}
		for _, cam := range cams {
			if !strings.HasPrefix(cam, p.site+"/") {
				continue
			}
			s, err := r.st.Stats(cam)
			if err != nil {
				continue
			}
			rs.Cameras = append(rs.Cameras, ReplicaCamera{Camera: cam, Segments: s.Segments, Bytes: s.Bytes, Newest: s.Newest})
		}
		out = append(out, rs)
	}
	return out
}

// auditReplica is a datacenter's copy of one store's audit journal: the
// store's lines, byte for byte, appended only when each entry's hash checks
// and it chains onto the last one held. A store whose journal was rewritten
// cannot make the replica follow: the break is refused, alarmed and
// audited (flagAudit), and the store's footage is still replicated.
type auditReplica struct {
	path string
	mu   sync.Mutex
	last uint64
	hash audit.Digest
}

// errAuditChain is a store's journal that does not continue the copy held.
var errAuditChain = errors.New("audit chain broken")

func openAuditReplica(dir, storeName string) (*auditReplica, error) {
	a := &auditReplica{path: filepath.Join(dir, storeName+".jsonl")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, err
	}
	f, err := os.Open(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	defer f.Close()
	// The last complete line names where the chain continues.
	fi, err := f.Stat()
	if err != nil {
		return a, err
	}
	off := max(fi.Size()-2*audit.MaxLineBytes, 0)
	tail := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(tail, off); err != nil {
		return a, err
	}
	if i := bytes.LastIndexByte(tail, '\n'); i >= 0 && i != len(tail)-1 {
		// An unterminated last line: a crash mid-append; it is cut off.
		if err := os.Truncate(a.path, off+int64(i)+1); err != nil {
			return a, err
		}
		tail = tail[:i+1]
	}
	lines := bytes.Split(bytes.TrimSuffix(tail, []byte("\n")), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) > 0 {
		e, err := audit.DecodeEntry(last)
		if err != nil {
			return a, fmt.Errorf("%s: last line: %w", a.path, err)
		}
		a.last, a.hash = e.Seq, e.Hash
	}
	return a, nil
}

func (a *auditReplica) seq() uint64 {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// append verifies and appends count lines, with one fsync.
func (a *auditReplica) append(lines []byte, count int) error {
	if a == nil {
		return errors.New("no audit replica")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	parts := bytes.SplitAfter(lines, []byte("\n"))
	if len(parts) > 0 && len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) != count {
		return fmt.Errorf("audit: %d lines, header says %d", len(parts), count)
	}
	last, hash := a.last, a.hash
	for _, l := range parts {
		e, err := audit.DecodeEntry(l)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		// The first entry ever held may start anywhere (the store may
		// have pruned); after that each must chain on.
		if last != 0 && (e.Seq != last+1 || e.Prev != hash) {
			return fmt.Errorf("audit: entry %d does not chain onto entry %d held (the store's journal was rewritten?): %w", e.Seq, last, errAuditChain)
		}
		last, hash = e.Seq, e.Hash
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		if _, err = f.Write(lines); err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Undo a partial write so the file ends where the chain does.
			f.Truncate(fi.Size())
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit replica: %w", err)
	}
	a.last, a.hash = last, hash
	return nil
}
