package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/join"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Version is set at build time (-ldflags "-X …/node.Version=…").
var Version = "dev"

// DefaultFederation names the mesh prefix when none is configured.
const DefaultFederation = "custos"

// Config configures a node. Dir and Listen are required.
type Config struct {
	// Dir is the data directory (created 0700 if absent). It holds the node
	// key (node.key, 0600) and the local API socket (custos.sock).
	Dir string
	// Name is the node's human name; default: the directory's base name.
	Name string
	// Listen is the underlay UDP address for WireGuard. The socket binds
	// the port on all local addresses (as wireguard-go does); the address
	// is what peers are told to send to.
	Listen netip.AddrPort
	// Federation names the mesh prefix; all nodes of a federation share it.
	Federation string
	// PeersFile is the static peers file (TOML); re-read when it changes.
	PeersFile string
	// UAPISocket is the WireGuard UAPI socket path; default Dir/wg.sock.
	// Link it into /var/run/wireguard/NAME.sock for `wg show NAME`.
	UAPISocket string
	// NoGossip turns memberlist off.
	NoGossip bool
	// Logf receives log lines; nil discards them.
	Logf func(format string, args ...any)
	// PeersPoll is how often the peers file is checked; default 1s.
	PeersPoll time.Duration
	// AuditRetention is how long audit entries are kept; default 30 days.
	AuditRetention time.Duration
	// Recording tunes a store's recording (zero: production defaults).
	Recording recording.Config
	// Replication tunes replication to the datacenters (zero: production
	// defaults, no uplink limit).
	Replication replication.Config
}

// Node is a running Custos node.
type Node struct {
	cfg     Config
	dirLock *os.File // flock on DIR/node.lock, held while the node runs
	// corruptSegments counts segments this node could not serve intact
	// (an alarm in its status).
	corruptSegments atomic.Uint64
	logf            func(string, ...any)
	started         time.Time
	mesh            *mesh.Mesh
	api             *apiServer
	audit           *audit.Journal
	auditq          *policystore.Queue    // the policy state machine's events
	rec             *recording.Recorder   // a store's cameras; nil elsewhere
	repl            *replication.Source   // a store's replication to the datacenters; nil elsewhere
	replicas        *replication.Replicas // a datacenter's replicas of the stores; nil elsewhere
	policy          *policystore.Store    // nil when running from a peers file
	raft            *consensus.Node       // likewise
	members         *membership.Reconciler
	seed            []mesh.Peer // datacenters to reach before the policy names peers
	join            *join.Server
	svc             *service            // the node service (service.go); nil without a policy
	relKeys         *release.Keys       // one-time release keys made here (node/release)
	custody         *keys.CustodySigner // this node's key as a custody signer; named per use
	rel             *release.Service    // store and datacenter ops of a release, exports

	reloadMu  sync.Mutex // serializes ReloadPeers
	mu        sync.Mutex // guards peersHash, peersSeen and peersErr
	peersHash [32]byte
	peersSeen [32]byte // the content the last poll read (see ReloadPeers)
	peersErr  error

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	failMu   sync.Mutex
	failure  error         // why the node stopped itself (fail); Run returns it
	failDone chan struct{} // closed once fail's close and cleanup are done
}

// KeyPath is where a node keeps its WireGuard key.
func KeyPath(dir string) string { return filepath.Join(dir, "node.key") }

// SocketPath is the node's local API socket.
func SocketPath(dir string) string { return filepath.Join(dir, "custos.sock") }

// Validate checks cfg and fills defaults.
func (cfg *Config) Validate() error {
	if cfg.Dir == "" {
		return errors.New("node: no data directory (use --dir DIR)")
	}
	if !cfg.Listen.IsValid() {
		return errors.New("node: no listen address (use --listen HOST:PORT)")
	}
	if cfg.Name == "" {
		cfg.Name = filepath.Base(filepath.Clean(cfg.Dir))
	}
	if err := validName(cfg.Name); err != nil {
		return fmt.Errorf("node: name: %w", err)
	}
	if cfg.Federation == "" {
		cfg.Federation = DefaultFederation
	}
	if cfg.UAPISocket == "" {
		cfg.UAPISocket = filepath.Join(cfg.Dir, "wg.sock")
	}
	if cfg.PeersPoll == 0 {
		cfg.PeersPoll = time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return nil
}

// New validates cfg, loads or creates the node key and starts the node.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	// Before touching sockets or keys: one node per data directory. The
	// flock decides between two that start at once (a socket check alone
	// let both past it, and the loser then blamed the audit journal).
	dirLock, err := lockDataDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			dirLock.Close()
		}
	}()
	fed, err := FederationOf(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if fed != "" {
		if cfg.PeersFile != "" {
			return nil, fmt.Errorf("node: %s belongs to federation %q, whose policy decides the peers; drop --peers", cfg.Dir, fed)
		}
		cfg.Federation = fed
	}
	prefix, err := keys.MeshPrefix(cfg.Federation)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var peers []mesh.Peer
	var peersHash [32]byte
	if cfg.PeersFile != "" {
		if peers, peersHash, err = membership.ReadPeersFile(cfg.PeersFile); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	priv, created, err := keys.LoadOrCreateNodeKey(KeyPath(cfg.Dir))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	defer priv.Zero()
	if created {
		cfg.Logf("node: created node key %s", KeyPath(cfg.Dir))
	}
	n := &Node{cfg: cfg, logf: cfg.Logf, started: time.Now(), stop: make(chan struct{}), peersHash: peersHash,
		relKeys: release.NewKeys(), dirLock: dirLock}
	n.rel = newRelease(n)
	// A store seals its footage with its node key (keys/custody.go); the
	// signer keeps the derived scalar after priv is wiped, until Close.
	if n.custody, err = keys.NewCustodySigner("node", &priv); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.audit, err = audit.Open(cfg.Dir, audit.Options{Node: cfg.Name, Retention: cfg.AuditRetention}); err != nil {
		return nil, fmt.Errorf("node: audit journal: %w", err)
	}
	for _, r := range n.audit.Recovered() {
		n.logf("node: audit journal: recovered after a crash: %s", r)
	}
	uapi, err := listenPrivate(cfg.UAPISocket)
	if err != nil {
		return nil, fmt.Errorf("node: wireguard uapi socket: %w", err)
	}
	n.mesh, err = mesh.New(mesh.Config{
		PrivateKey: priv,
		Prefix:     prefix,
		ListenPort: cfg.Listen.Port(),
		Endpoint:   cfg.Listen,
		UAPI:       uapi,
		NoGossip:   cfg.NoGossip,
		Name:       cfg.Name,
		Logf:       cfg.Logf,
	})
	if err != nil {
		uapi.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := n.mesh.SetPeers(peers); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.auditEvent(audit.Event{Actor: cfg.Name, Action: "node-start", Object: n.mesh.PublicKey().String()})
	n.auditPeers(nil, peers, "peers-file")
	if fed != "" {
		if n.seed, err = readSeed(cfg.Dir); err != nil {
			return nil, err
		}
		if err := n.startConsensus(n.mesh.PublicKey()); err != nil {
			return nil, err
		}
		n.members = membership.Start(membership.Config{Self: n.mesh.PublicKey().String(), Policy: n.policy, Mesh: readmitting{n.mesh, n.raft},
			Now: time.Now, Logf: n.logf, Persist: func(p []mesh.Peer) error { return writeLastPeers(cfg.Dir, p) }, Seed: n.seed})
		n.wg.Add(1)
		go n.raftMembers()
		st := n.policy.State()
		me := st.Nodes[NameByKey(st, n.mesh.PublicKey().String())]
		// A joining or restarted node's replica may still be empty (Raft
		// replays its log once a leader names the commit index), so its
		// role also comes from its directory: the role its token gave, or
		// the custodian key every datacenter holds. A datacenter that
		// waited for its replica would refuse the joins its tokens name.
		if me != nil && me.Role == policy.RoleDatacenter || joinedAs(cfg.Dir) == policy.RoleDatacenter || fileExists(CustodianKeyPath(cfg.Dir)) {
			if n.join, err = startJoinServer(n, cfg.Listen); err != nil {
				return nil, err
			}
			if n.replicas, err = startReplicas(n, cfg.Replication); err != nil {
				return nil, err
			}
		}
		if me != nil && me.Role == policy.RoleStore || isStoreJoin(cfg.Dir) {
			// Before the recorders start: their policy loop reads n.repl.
			n.repl = newReplSource(n, cfg.Replication)
			if n.rec, err = recording.Start(cfg.Recording, n.recordingDeps()); err != nil {
				return nil, err
			}
		}
		// After the recordings it serves, before the API that exports.
		if n.svc, err = startService(n, ServicePort); err != nil {
			return nil, err
		}
		n.wg.Add(1)
		go n.sweepReleaseKeys()
	}
	if n.api, err = startAPI(SocketPath(cfg.Dir), n); err != nil {
		return nil, err
	}
	if cfg.PeersFile != "" {
		n.wg.Add(1)
		go n.watchPeers()
	}
	n.wg.Add(1)
	go n.pruneAudit()
	// Last: a failed check stops the node, which must be whole by then.
	if fed != "" {
		if err := n.startJoinCheck(); err != nil {
			return nil, err
		}
	}
	n.logf("node: %s up; mesh %s; wireguard UDP %d; api %s", cfg.Name, n.mesh.Addr(), n.mesh.ListenPort(), SocketPath(cfg.Dir))
	return n, nil
}

// Mesh returns the node's mesh.
func (n *Node) Mesh() *mesh.Mesh { return n.mesh }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Run blocks until ctx is done or the node stops itself, then closes the
// node; it returns why the node stopped itself, if it did.
func (n *Node) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-n.stop:
	}
	n.Close()
	n.failMu.Lock()
	done := n.failDone
	n.failMu.Unlock()
	if done != nil {
		<-done
	}
	return n.Failure()
}

// fail stops the node for good because of err (Run returns it), then runs
// cleanup, if any, on the stopped node. It returns at once: the caller may
// be one of the goroutines Close waits for.
func (n *Node) fail(err error, cleanup func()) {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	if n.failDone != nil {
		return
	}
	n.failure = err
	done := make(chan struct{})
	n.failDone = done
	go func() {
		defer close(done)
		n.Close()
		if cleanup != nil {
			cleanup()
		}
	}()
}

// Failure is why the node stopped itself, or nil.
func (n *Node) Failure() error {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	return n.failure
}

// Close stops the node in reverse start order. Safe to call twice.
func (n *Node) Close() error {
	n.once.Do(func() {
		close(n.stop)
		n.wg.Wait()
		if n.svc != nil {
			n.svc.stopClients() // exports in the API end now
		}
		if n.api != nil {
			n.api.close()
		}
		if n.join != nil {
			n.join.Close()
		}
		if n.svc != nil {
			n.svc.close() // before the recordings its handlers read
		}
		if n.rec != nil {
			n.rec.Close()
		}
		if n.replicas != nil {
			n.replicas.Close()
		}
		if n.members != nil {
			n.members.Close()
		}
		if n.raft != nil {
			n.raft.Close()
		}
		n.custody.Zero()
		if n.mesh != nil {
			n.mesh.Close()
		}
		n.relKeys.ZeroAll()
		if n.auditq != nil {
			n.auditq.Close()
		}
		if n.audit != nil {
			n.auditEvent(audit.Event{Actor: n.cfg.Name, Action: "node-stop"})
			n.audit.Close()
		}
		// Last: the directory is free for another node only when this one
		// holds nothing in it.
		n.dirLock.Close()
	})
	return nil
}

// watchPeers re-reads the peers file when its content changes, so that
// removing a line removes the peer within two poll intervals. A broken edit
// keeps the last good peer set and is reported in status.
func (n *Node) watchPeers() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PeersPoll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.ReloadPeers()
	}
}

// ReloadPeers applies the peers file now if it changed. A file that is
// missing or broken keeps the previous peers (a half-written edit must not
// cut a store off) and is reported in status and the log until fixed.
func (n *Node) ReloadPeers() {
	if n.cfg.PeersFile == "" {
		return
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	peers, h, err := membership.ReadPeersFile(n.cfg.PeersFile)
	n.mu.Lock()
	same := err == nil && h == n.peersHash
	// A new content is applied once two polls in a row read it: an edit
	// caught half-written (an editor truncates, then writes) parses as
	// fewer peers and must not cut them off.
	settling := err == nil && !same && h != n.peersSeen
	n.peersSeen = h
	n.mu.Unlock()
	if same || settling {
		return
	}
	old := n.mesh.PeerList()
	if err == nil {
		err = n.mesh.SetPeers(peers)
	}
	if err == nil {
		n.auditPeers(old, peers, "peers-file")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("%w (keeping the previous peers)", err)
		if n.peersErr == nil || n.peersErr.Error() != err.Error() {
			n.logf("node: %v", err)
		}
		n.peersErr = err
		return
	}
	n.peersHash, n.peersErr = h, nil
	n.logf("node: peers file reloaded: %d peers", len(peers))
}

// auditEvent appends to the journal; a failure is logged loudly (the event
// itself is already done by then).
func (n *Node) auditEvent(e audit.Event) {
	if _, err := n.audit.Append(e); err != nil {
		n.logf("node: AUDIT FAILURE: %v (event %s %s)", err, e.Action, e.Object)
	}
}

// auditPeers records who joined and left this node's mesh.
func (n *Node) auditPeers(old, cur []mesh.Peer, actor string) {
	was := map[keys.NodePublic]bool{}
	for _, p := range old {
		was[p.PublicKey] = true
	}
	is := map[keys.NodePublic]bool{}
	for _, p := range cur {
		is[p.PublicKey] = true
		if !was[p.PublicKey] {
			n.auditEvent(audit.Event{Actor: actor, Action: "peer-add", Object: p.Name + " " + p.PublicKey.String(), Decision: audit.Allow})
		}
	}
	for _, p := range old {
		if !is[p.PublicKey] {
			n.auditEvent(audit.Event{Actor: actor, Action: "peer-remove", Object: p.Name + " " + p.PublicKey.String()})
		}
	}
}

// pruneAudit drops audit entries past retention, at start and hourly.
func (n *Node) pruneAudit() {
	defer n.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if removed, err := n.audit.Prune(time.Now()); err != nil {
			n.logf("node: AUDIT prune: %v", err)
		} else if removed > 0 {
			n.logf("node: audit: pruned %d entries past retention", removed)
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// Audit returns the journal's entries since t.
func (n *Node) Audit(since time.Time) ([]audit.Entry, error) {
	n.flushAudit()
	return n.audit.Since(since)
}

func (n *Node) flushAudit() {
	if n.auditq != nil {
		n.auditq.Flush()
	}
}

// VerifyAudit checks the journal's chain.
func (n *Node) VerifyAudit() (audit.Report, error) {
	n.flushAudit()
	return n.audit.Verify()
}

// prepareDir makes the data directory 0700, or checks an existing one:
// whoever can write it could replace the key or the sockets.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("node: data directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("node: data directory %s has mode %#o: others could replace its key or sockets; run: chmod 700 %s", dir, perm, dir)
	}
	return nil
}

// Status is what `custos status` shows.
type Status struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	PublicKey  keys.NodePublic   `json:"public_key"`
	MeshAddr   netip.Addr        `json:"mesh_addr"`
	Federation string            `json:"federation"`
	Prefix     netip.Prefix      `json:"mesh_prefix"`
	Listen     string            `json:"listen"`
	ListenPort uint16            `json:"listen_port"`
	UAPISocket string            `json:"uapi_socket"`
	Uptime     string            `json:"uptime"`
	PeersFile  string            `json:"peers_file,omitempty"`
	PeersError string            `json:"peers_error,omitempty"`
	Peers      []mesh.PeerStatus `json:"peers"`
	Consensus  *consensus.Status `json:"consensus,omitempty"`
	Recording  *recording.Status `json:"recording,omitempty"`
	// Replication is a store's: per camera and datacenter, how far each
	// datacenter's replica reaches and the lag.
	Replication []replication.Status `json:"replication,omitempty"`
	// Replicas is a datacenter's: the stores it keeps replicas of.
	Replicas []replication.ReplicaStatus `json:"replicas,omitempty"`
	Exports  []release.ExportProgress    `json:"exports,omitempty"` // running exports
	// CorruptSegments counts segments this node holds but could not serve
	// intact since it started (an alarm: each is audited and logged).
	CorruptSegments uint64 `json:"corrupt_segments,omitempty"`
	// AuditFailure says since when and why the audit journal fails to
	// record; the node refuses access until it records again.
	AuditFailure string `json:"audit_failure,omitempty"`
}

// Status reports the node's state.
func (n *Node) Status() (Status, error) {
	peers, err := n.mesh.Status()
	if err != nil {
		return Status{}, err
	}
	st := Status{
		Name:       n.cfg.Name,
		Version:    Version,
		PublicKey:  n.mesh.PublicKey(),
		MeshAddr:   n.mesh.Addr(),
		Federation: n.cfg.Federation,
		Prefix:     n.mesh.Prefix(),
		Listen:     n.cfg.Listen.String(),
		ListenPort: n.mesh.ListenPort(),
		UAPISocket: n.cfg.UAPISocket,
		Uptime:     time.Since(n.started).Round(time.Second).String(),
		PeersFile:  n.cfg.PeersFile,
		Peers:      peers,

		CorruptSegments: n.corruptSegments.Load(),
	}
	if err := n.audit.Failure(); err != nil {
		st.AuditFailure = err.Error()
	}
	n.mu.Lock()
	if n.peersErr != nil {
		st.PeersError = n.peersErr.Error()
	}
	n.mu.Unlock()
	if n.raft != nil {
		cs := n.raft.Status()
		st.Consensus = &cs
	}
	if n.rec != nil {
		st.Recording = n.rec.Status()
	}
	if n.repl != nil {
		st.Replication = n.repl.Status()
	}
	if n.replicas != nil {
		st.Replicas = n.replicas.Status()
	}
	if ex := n.rel.Exports(); len(ex) > 0 {
		st.Exports = ex
	}
	return st, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Liveness is what gossip says of the peer named peer ("alive",
// "suspect", "dead"), or "absent" when it is no peer of this node.
func (s Status) Liveness(peer string) string {
	for _, p := range s.Peers {
		if p.Name == peer {
			return p.Liveness
		}
	}
	return "absent"
}

// NodeKey makes the node key of dir if it has none and returns its public
// half, which peers files and invites name.
func NodeKey(dir string) (keys.NodePublic, error) {
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(dir))
	if err != nil {
		return keys.NodePublic{}, err
	}
	defer priv.Zero()
	return priv.Public(), nil
}
