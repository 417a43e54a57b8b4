package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Joining. A new node cannot reach anyone inside the mesh, since nobody has
// its key yet, so it hands its redeem to a datacenter over the underlay: TCP
// on the datacenter's listen address (the port number WireGuard uses for
// UDP). The redeem carries no secret, only a proof that binds the joining
// node's key, so the channel needs no encryption: someone who copies it can
// only admit the same key. The datacenter accepts nothing but redeems, and
// its leader dry-runs each one (vet) before it enters the log.

const (
	joinMaxRequest = policy.MaxEnvelope
	// joinTimeout is how long a joiner waits for its answer.
	joinTimeout = 15 * time.Second
	// joinReadTimeout: a joiner sends its redeem (at most joinMaxRequest
	// bytes) as soon as it connects; a connection that has not sent all of
	// it by then is cut, so idle connections cannot hold the service.
	joinReadTimeout = 5 * time.Second
	// joinMaxConns connections are served at once, at most
	// joinMaxPerSource of them from one source (an IPv4 address or an
	// IPv6 /64). When all are taken, a new connection displaces the
	// oldest one still sending its request: a real joiner sends at once,
	// so it is displaced only if joinMaxConns others arrive meanwhile.
	joinMaxConns     = 32
	joinMaxPerSource = 2
	// joinMaxSubmits redeems are being committed at once; more wait.
	joinMaxSubmits = 4
	// Refusals are audited once per source and reason per
	// joinAuditEvery, and at most joinAuditBurst at once and
	// joinAuditPerSec after that over all sources.
	joinAuditEvery  = 10 * time.Minute
	joinAuditBurst  = 20
	joinAuditPerSec = 0.2
	joinAuditKeys   = 4096
	// joinAnswerMargin: the datacenter gives up committing a redeem this
	// long before the joiner gives up waiting, so the joiner hears how it
	// ended (if it stopped listening first and asked the next datacenter,
	// a redeem that did commit would look like a spent invite).
	joinAnswerMargin = 3 * time.Second
)

// joinFile records, on a joining node, whom to contact until the policy
// names its peers.
const joinFile = "join.json"

type joinInfo struct {
	Datacenters []TokenPeer `json:"datacenters"`
	Voters      []TokenPeer `json:"voters,omitempty"` // the token's other voters
	Role        string      `json:"role,omitempty"`   // what the invite made this node
	// Invite and Signer (the fingerprint of the key that signed the
	// token) are what the node checks against the policy once its
	// replica holds its own membership (see checkJoin); Checked records
	// that the check passed.
	Invite  string `json:"invite,omitempty"`
	Signer  string `json:"signer,omitempty"`
	Checked bool   `json:"checked,omitempty"`
}

func readJoinInfo(dir string) (*joinInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, joinFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var ji joinInfo
	if err := json.Unmarshal(b, &ji); err != nil {
		return nil, fmt.Errorf("node: %s is damaged", filepath.Join(dir, joinFile))
	}
	return &ji, nil
}

// writeJoinInfo replaces the join file (temporary file, fsync, rename).
func writeJoinInfo(dir string, ji *joinInfo) error {
	b, err := json.Marshal(ji)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, joinFile, b)
}

// isStoreJoin reports whether dir joined as a store: such a node records
// from its first start, before its replica names its role.
func isStoreJoin(dir string) bool { return joinedAs(dir) == policy.RoleStore }

// joinedAs is the role this directory's node joined with, if it joined.
func joinedAs(dir string) policy.NodeRole {
	ji, err := readJoinInfo(dir)
	if err != nil || ji == nil {
		return ""
	}
	return policy.NodeRole(ji.Role)
}

// joinServer is the join service: TCP from anyone on the underlay, so
// everything about it is bounded (DESIGN §4 invariant 14): connections in
// all and per source, the time to send a request, its size, redeems being
// committed, and the audit entries refusals write.
type joinServer struct {
	n       *Node
	ln      net.Listener
	wg      sync.WaitGroup
	submits chan struct{}
	gate    *auditGate

	mu          sync.Mutex
	readTimeout time.Duration // joinReadTimeout; tests shorten it
	conns       map[net.Conn]*joinConn
	perSource   map[netip.Prefix]int
}

type joinConn struct {
	src         netip.Prefix
	start       time.Time
	readTimeout time.Duration
	reading     bool // still receiving its request: may be displaced
}

func startJoinServer(n *Node, listen netip.AddrPort) (*joinServer, error) {
	ln, err := net.Listen("tcp", listen.String())
	if err != nil {
		return nil, fmt.Errorf("node: join service on TCP %s: %w", listen, err)
	}
	js := &joinServer{n: n, ln: ln, readTimeout: joinReadTimeout,
		submits: make(chan struct{}, joinMaxSubmits),
		gate:    newAuditGate(joinAuditEvery, joinAuditPerSec, joinAuditBurst, joinAuditKeys),
		conns:   map[net.Conn]*joinConn{}, perSource: map[netip.Prefix]int{}}
	js.wg.Add(1)
	go js.accept()
	return js, nil
}

func (js *joinServer) accept() {
	defer js.wg.Done()
	for {
		c, err := js.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: keep serving.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		src := joinSource(c.RemoteAddr())
		jc, why := js.admit(c, src)
		if why != "" {
			c.Close() // the joiner tries again, or the next datacenter
			js.refuse(src, why, "", "")
			continue
		}
		js.wg.Add(1)
		go func() {
			defer js.wg.Done()
			defer js.release(c)
			js.serve(c, jc)
		}()
	}
}

// joinSource is whom per-source limits count a connection against: its
// IPv4 address, or its IPv6 /64 (one host's usual share).
func joinSource(a net.Addr) netip.Prefix {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// admit takes a slot for c, or says why not.
func (js *joinServer) admit(c net.Conn, src netip.Prefix) (*joinConn, string) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.perSource[src] >= joinMaxPerSource {
		return nil, fmt.Sprintf("more than %d connections at once from this source", joinMaxPerSource)
	}
	if len(js.conns) >= joinMaxConns {
		var oldest net.Conn
		for oc, jc := range js.conns {
			if jc.reading && (oldest == nil || jc.start.Before(js.conns[oldest].start)) {
				oldest = oc
			}
		}
		if oldest == nil {
			return nil, "join service busy"
		}
		js.dropLocked(oldest)
		oldest.Close() // its reader fails at once
	}
	jc := &joinConn{src: src, start: time.Now(), readTimeout: js.readTimeout, reading: true}
	js.conns[c] = jc
	js.perSource[src]++
	return jc, ""
}

func (js *joinServer) dropLocked(c net.Conn) {
	jc := js.conns[c]
	if jc == nil {
		return
	}
	delete(js.conns, c)
	if js.perSource[jc.src]--; js.perSource[jc.src] <= 0 {
		delete(js.perSource, jc.src)
	}
}

func (js *joinServer) release(c net.Conn) {
	js.mu.Lock()
	js.dropLocked(c)
	js.mu.Unlock()
}

func (js *joinServer) doneReading(c net.Conn) {
	js.mu.Lock()
	if jc := js.conns[c]; jc != nil {
		jc.reading = false
	}
	js.mu.Unlock()
}

func (js *joinServer) close() {
	js.ln.Close()
	js.mu.Lock()
	for c := range js.conns {
		c.SetReadDeadline(time.Now()) // readers stop; redeems in commit end by their deadline
	}
	js.mu.Unlock()
	js.wg.Wait()
}

// refuse audits a refused join attempt, if the gate lets it: once per
// source and reason per joinAuditEvery, within the overall rate. why is
// one of a few fixed texts, so that junk cannot vary the key; detail (what
// exactly was wrong, maybe chosen by the sender) goes only into the entry.
func (js *joinServer) refuse(src netip.Prefix, why, object, detail string) {
	ok, note := js.gate.pass(src.String()+"\x00"+why, time.Now())
	if !ok {
		return
	}
	reason := why
	if detail != "" {
		reason += ": " + clipText(detail, 300)
	}
	js.n.auditEvent(audit.Event{Actor: src.String(), Action: "join", Object: clipText(object, 100), Decision: audit.Deny, Reason: reason + note})
}

// clipText cuts s to at most n bytes of valid UTF-8.
func clipText(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (js *joinServer) serve(c net.Conn, jc *joinConn) {
	defer c.Close()
	src, start := jc.src, jc.start
	c.SetDeadline(start.Add(jc.readTimeout))
	b, err := io.ReadAll(io.LimitReader(c, joinMaxRequest+1))
	js.doneReading(c)
	c.SetDeadline(start.Add(joinTimeout))
	res := ApplyResult{}
	defer func() { json.NewEncoder(c).Encode(res) }()
	if err != nil || len(b) > joinMaxRequest {
		res.Reason = fmt.Sprintf("join request unreadable, over %d bytes, or not sent within %v", joinMaxRequest, jc.readTimeout)
		js.refuse(src, "join request unreadable, too large or too slow", "", "")
		return
	}
	env, err := policy.DecodeEnvelope(b)
	var cmd *policy.Command
	if err == nil {
		cmd, err = policy.DecodeCommand(env.Body)
	}
	if err == nil && (cmd.Kind != policy.KindRedeemInvite || cmd.Redeem == nil) {
		err = errors.New("the join service takes only invite redeems")
	}
	if err != nil {
		res.Reason = err.Error()
		js.refuse(src, "not an invite redeem", "", err.Error())
		return
	}
	object := "invite " + cmd.Redeem.Invite
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(joinTimeout-joinAnswerMargin))
	defer cancel()
	// The leader vets every command, but a refusal there is audited as a
	// policy change on every try; the dry run here refuses junk first,
	// through the gate.
	if err := js.n.preVetJoin(ctx, env, cmd); err != nil {
		res.Reason = err.Error()
		js.refuse(src, "redeem refused", object, err.Error())
		return
	}
	select {
	case js.submits <- struct{}{}:
		defer func() { <-js.submits }()
	case <-ctx.Done():
		res.Reason = "join service busy; try again"
		return
	}
	res, err = js.n.Submit(ctx, env)
	if err != nil {
		res.Reason = err.Error()
	}
	if !res.Applied {
		js.refuse(src, "redeem not applied", object, res.Reason)
		return
	}
	js.n.auditEvent(audit.Event{Actor: cmd.Redeem.PublicKey, Action: "join", Object: object, Decision: audit.Allow, Reason: res.Reason})
}

// preVetJoin dry-runs a redeem on this node's replica, and once more on a
// replica made current if the first try fails (it may lag behind the
// invite).
func (n *Node) preVetJoin(ctx context.Context, env policy.Envelope, cmd *policy.Command) error {
	if d := time.Since(cmd.Time); d > maxClockSkew || d < -maxClockSkew {
		return fmt.Errorf("command time %s is more than %v from this datacenter's clock", cmd.Time.UTC().Format(time.RFC3339), maxClockSkew)
	}
	try := func(st *policy.State) error {
		dry, err := clone(st)
		if err != nil {
			return err
		}
		_, err = dry.Apply(env)
		return err
	}
	err := try(n.policy.State())
	if err == nil {
		return nil
	}
	st, serr := n.syncPolicy(ctx)
	if serr != nil {
		return err
	}
	return try(st)
}

// PrepareJoin readies dir to join the federation of a token: the node key,
// the anchor, and the datacenters to contact. It then sends the redeem to
// the datacenters, one after another, until one takes it.
func PrepareJoin(ctx context.Context, cfg Config, t *Token) (ApplyResult, error) {
	if err := cfg.Validate(); err != nil {
		return ApplyResult{}, err
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return ApplyResult{}, err
	}
	if fed, err := FederationOf(cfg.Dir); err != nil {
		return ApplyResult{}, err
	} else if fed != "" {
		return ApplyResult{}, fmt.Errorf("node: %s already belongs to federation %q", cfg.Dir, fed)
	}
	if t.signer == "" {
		return ApplyResult{}, errors.New("node: the token was not checked (use DecodeToken)")
	}
	// The token is spent once the join commits: check first that the node
	// can run where it says it will.
	if err := checkListen(cfg.Listen, t.Role == string(policy.RoleDatacenter)); err != nil {
		return ApplyResult{}, err
	}
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(cfg.Dir))
	if err != nil {
		return ApplyResult{}, fmt.Errorf("node: %w", err)
	}
	pub := priv.Public()
	priv.Zero()
	var custodian []byte
	if t.Role == string(policy.RoleDatacenter) {
		if custodian, err = makeCustodianKey(cfg.Dir, cfg.Name); err != nil {
			return ApplyResult{}, err
		}
	}
	env, err := t.Redeem(pub, cfg.Listen.String(), custodian, time.Now())
	if err != nil {
		return ApplyResult{}, err
	}
	var res ApplyResult
	var lastErr error
	for _, dc := range t.Datacenters {
		res, lastErr = sendJoin(ctx, dc.Endpoint, env)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return ApplyResult{}, fmt.Errorf("node: no datacenter took the join: %w", lastErr)
	}
	if !res.Applied {
		return res, nil
	}
	// The token's signature was checked only against the key it carries;
	// the node checks that key against the policy once it holds it.
	ji := &joinInfo{Datacenters: t.Datacenters, Voters: t.Voters, Role: t.Role, Invite: t.Invite, Signer: t.signer}
	if err := writeJoinInfo(cfg.Dir, ji); err != nil {
		return res, err
	}
	ab, _ := json.Marshal(t.Anchor)
	return res, os.WriteFile(filepath.Join(cfg.Dir, federationFile), ab, 0o600)
}

func sendJoin(ctx context.Context, endpoint string, env policy.Envelope) (ApplyResult, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return ApplyResult{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(env.Marshal()); err != nil {
		return ApplyResult{}, err
	}
	c.(*net.TCPConn).CloseWrite()
	var res ApplyResult
	if err := json.NewDecoder(io.LimitReader(c, 64<<10)).Decode(&res); err != nil {
		return ApplyResult{}, fmt.Errorf("join answer from %s: %w", endpoint, err)
	}
	return res, nil
}

// readSeed returns whom a node talks to until its policy replica names its
// peers: the peers it last had (lastPeersFile), else the datacenters and
// other voters its join token named. A restarted node's replica is empty
// until a leader tells it the commit index (Raft restores the state machine
// only from a snapshot and replays the log only once it knows what is
// committed); with no peers meanwhile it could reach no leader, and a
// founding datacenter, which has no token, would be cut off for good.
func readSeed(dir string) ([]mesh.Peer, error) {
	if last, err := readLastPeers(dir); err != nil {
		return nil, err
	} else if len(last) > 0 {
		return last, nil
	}
	return readTokenSeed(dir)
}

// lastPeersFile holds the mesh peers a node's policy last gave it.
const lastPeersFile = "last-peers.json"

type lastPeer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint,omitempty"`
}

func readLastPeers(dir string) ([]mesh.Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, lastPeersFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var list []lastPeer
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("node: %s is damaged (delete it; the node then starts from its join token)", lastPeersFile)
	}
	var out []mesh.Peer
	for _, p := range list {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// writeLastPeers records peers (temporary file, fsync, rename) when they
// differ from what the file holds.
func writeLastPeers(dir string, peers []mesh.Peer) error {
	list := make([]lastPeer, 0, len(peers))
	for _, p := range peers {
		lp := lastPeer{Name: p.Name, PublicKey: p.PublicKey.String()}
		if p.Endpoint.IsValid() {
			lp.Endpoint = p.Endpoint.String()
		}
		list = append(list, lp)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(filepath.Join(dir, lastPeersFile)); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeFileAtomic(dir, lastPeersFile, b)
}

// writeFileAtomic replaces dir/name with b, mode 0600: temporary file,
// fsync, rename, so a crash leaves the old file or the new, never half.
func writeFileAtomic(dir, name string, b []byte) error {
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// readTokenSeed returns the datacenters and other voters a joined node's
// token named.
func readTokenSeed(dir string) ([]mesh.Peer, error) {
	ji, err := readJoinInfo(dir)
	if err != nil || ji == nil {
		return nil, err
	}
	var out []mesh.Peer
	for _, p := range append(ji.Datacenters, ji.Voters...) {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// raftMembers keeps, on the leader, the Raft configuration equal to the
// policy: live datacenters and witnesses vote; live stores, admin nodes and
// installers (inside their window: they need the policy to know their
// peers) replicate as non-voters; anyone else is removed. It runs on every policy change and when this node becomes leader.
func (n *Node) raftMembers() {
	defer n.wg.Done()
	leader := false
	for {
		changed := n.policy.Changed()
		if leader {
			n.reconcileRaft()
		}
		select {
		case <-n.stop:
			return
		case l := <-n.raft.LeaderCh():
			leader = l
		case <-changed:
		case <-time.After(n.raftRecheck()):
		}
	}
}

// raftRecheck is how soon raftMembers looks again: soon while a future voter
// waits for promotion.
func (n *Node) raftRecheck() time.Duration {
	if len(n.stagedSince) > 0 {
		return time.Second
	}
	return maxReconcileWait
}

// promoteAfter is how long a future voter replicates as a non-voter, and
// is seen alive by gossip, before it gets a vote.
const promoteAfter = 3 * time.Second

func (n *Node) reconcileRaft() {
	st := n.policy.State()
	now := time.Now()
	want := map[string]consensus.Server{}
	voter := map[string]bool{}
	for name, pn := range st.Nodes {
		if !policy.Member(st, name, now) {
			continue
		}
		pub, err := keys.ParseNodePublic(pn.PublicKey)
		if err != nil {
			continue
		}
		want[pn.PublicKey] = consensus.Server{ID: pn.PublicKey, Addr: netip.AddrPortFrom(n.mesh.AddrOf(pub), RaftPort)}
		voter[pn.PublicKey] = pn.Role == policy.RoleDatacenter || pn.Role == policy.RoleWitness
	}
	cur := n.raft.Status()
	have := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range cur.Members {
		have[m.ID] = m.Voter
		if _, ok := want[m.ID]; !ok && m.ID != cur.ID {
			if err := n.raft.Remove(ctx, m.ID); err != nil {
				n.logf("node: raft: remove %s: %v", m.ID, err)
			}
		}
	}
	live := map[netip.Addr]bool{}
	if ps, err := n.mesh.Status(); err == nil {
		for _, p := range ps {
			live[p.Addr] = p.Liveness == "alive"
		}
	}
	for id, s := range want {
		isVoter, present := have[id]
		if present && isVoter == voter[id] {
			delete(n.stagedSince, id)
			continue
		}
		var err error
		switch {
		case !present:
			// Every server starts as a non-voter: a voter that cannot be
			// reached yet would cost the cluster its quorum (with one voter,
			// the leader would step down at once).
			err = n.raft.AddNonvoter(ctx, s)
			if voter[id] {
				n.stagedSince[id] = time.Now()
			}
		case voter[id]:
			// Promote once it has replicated for a while and gossip sees it.
			since, ok := n.stagedSince[id]
			if !ok {
				n.stagedSince[id] = time.Now()
				continue
			}
			if time.Since(since) < promoteAfter || !live[s.Addr.Addr()] {
				continue
			}
			err = n.raft.AddVoter(ctx, s)
		default:
			err = n.raft.AddNonvoter(ctx, s) // demotion
		}
		if err != nil {
			n.logf("node: raft: add %s: %v", id, err)
		}
	}
}

// Checking the token's signer. A joining node cannot know the federation's
// admins before its replica holds the policy, so DecodeToken checks only
// that the key the token carries made its signature. Once the replica
// holds this node's own membership (its redeem, hence the invite before
// it, is applied), checkJoin checks that key against the committed
// policy. A token signed by anyone else — a revoked admin, someone who
// never was one, or someone who re-signed a copied token with other
// datacenters — fails here: the node undoes its join and stops.

// ErrJoinRefused is wrapped when a joined node found its token's signer
// not to check out against the policy.
var ErrJoinRefused = errors.New("join refused and undone")

// joinRefusedFile marks a directory whose join was undone, with the
// reason; readAnchor refuses such a directory.
const joinRefusedFile = "join-refused.json"

type joinRefusal struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// joinWasRefused returns ErrJoinRefused, with the reason, for a directory
// whose join was undone.
func joinWasRefused(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, joinRefusedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	var r joinRefusal
	if json.Unmarshal(b, &r) != nil || r.Reason == "" {
		r.Reason = "(reason unreadable)"
	}
	return fmt.Errorf("node: %s: %w: %s. The directory belongs to no federation; join again, in an empty directory, with a token an admin of the federation made", dir, ErrJoinRefused, r.Reason)
}

// startJoinCheck starts checkJoin on a joined node whose token's signer
// was not yet checked against the policy.
func (n *Node) startJoinCheck() error {
	ji, err := readJoinInfo(n.cfg.Dir)
	if err != nil || ji == nil || ji.Checked || ji.Invite == "" {
		return err
	}
	n.wg.Add(1)
	go n.checkJoin(ji)
	return nil
}

func (n *Node) checkJoin(ji *joinInfo) {
	defer n.wg.Done()
	self := n.mesh.PublicKey().String()
	for {
		changed := n.policy.Changed()
		done, err := verifyJoin(n.policy.State(), self, ji)
		if done && err == nil {
			ji.Checked = true
			if werr := writeJoinInfo(n.cfg.Dir, ji); werr != nil {
				n.logf("node: recording the join check: %v (it runs again at the next start)", werr)
			}
			n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "join", Object: "invite " + ji.Invite, Decision: audit.Allow,
				Reason: "the token's signer " + ji.Signer + " made the invite and is a current admin"})
			return
		}
		if done {
			n.refuseJoin(ji, err)
			return
		}
		select {
		case <-n.stop:
			return
		case <-changed:
		}
	}
}

// verifyJoin checks a joined node's token against the policy st. It is
// done once st holds the node (key self): until then the replica may lag.
func verifyJoin(st *policy.State, self string, ji *joinInfo) (done bool, err error) {
	if st == nil || st.Federation == "" {
		return false, nil
	}
	name := NameByKey(st, self)
	if name == "" {
		return false, nil
	}
	inv := st.Invites[ji.Invite]
	if inv == nil {
		return true, fmt.Errorf("the policy of federation %q holds no invite %q, the one the join token names", st.Federation, ji.Invite)
	}
	if inv.Name != name || string(inv.Role) != ji.Role {
		return true, fmt.Errorf("invite %q is for %s %q, but this node is %q and its token said %s", ji.Invite, inv.Role, inv.Name, name, ji.Role)
	}
	u := st.Users[inv.CreatedBy]
	if u == nil || u.Revoked || u.Role != policy.UserAdmin {
		return true, fmt.Errorf("invite %q was made by %q, who is not a current admin of federation %q", ji.Invite, inv.CreatedBy, st.Federation)
	}
	if !strings.EqualFold(u.Fingerprint, ji.Signer) {
		return true, fmt.Errorf("the join token was signed by key %s, not by admin %q (key %s) who made invite %q", ji.Signer, u.Name, u.Fingerprint, ji.Invite)
	}
	return true, nil
}

// refuseJoin undoes this node's join and stops it: the directory is
// marked refused first (joinRefusedFile), so that it stays refused whatever
// happens next; once the node is stopped, and nothing writes there any
// more, the directory loses its federation, token and last peers. The
// membership the redeem made stays in the policy until an admin revokes it;
// this node no longer uses it.
func (n *Node) refuseJoin(ji *joinInfo, why error) {
	reason := why.Error()
	n.logf("node: JOIN REFUSED: %s; undoing the join and stopping", reason)
	n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "join", Object: "invite " + ji.Invite, Decision: audit.Deny, Reason: reason})
	b, _ := json.Marshal(joinRefusal{Reason: reason, At: time.Now().UTC()})
	if err := writeFileAtomic(n.cfg.Dir, joinRefusedFile, b); err != nil {
		n.logf("node: marking the join refused: %v", err)
	}
	dir, logf := n.cfg.Dir, n.logf
	n.fail(fmt.Errorf("node: %w: %s", ErrJoinRefused, reason), func() {
		for _, f := range []string{federationFile, joinFile, lastPeersFile} {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				logf("node: undoing the join: %v", err)
			}
		}
	})
}

// checkListen binds, and lets go, what the node will listen on: its
// WireGuard UDP port on every address (as the mesh does), and a
// datacenter's join port on TCP.
func checkListen(listen netip.AddrPort, datacenter bool) error {
	u, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(listen.Port())})
	if err != nil {
		return fmt.Errorf("node: cannot listen on UDP port %d (in use, or not permitted): %w; the token is not spent", listen.Port(), err)
	}
	u.Close()
	if datacenter {
		l, err := net.Listen("tcp", listen.String())
		if err != nil {
			return fmt.Errorf("node: cannot take joins on TCP %s (in use, or not this host's address): %w; the token is not spent", listen, err)
		}
		l.Close()
	}
	return nil
}
