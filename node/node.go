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
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/alerting"
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/node/join"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"

	"golang.zx2c4.com/wireguard/conn"
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
	// ReplicaBlobs, if set, keeps a datacenter's replicas (segments and
	// epoch records) in this blob store, an S3 bucket (`up --replicas`),
	// instead of files under DIR/media; the index stays in DIR/media.
	ReplicaBlobs store.Blobs

	// meshBind replaces the mesh's UDP bind: tests and benchmarks impair
	// the underlay with it. Unexported, so no caller outside can.
	meshBind conn.Bind
	// wall replaces the node's wall clock: tests move it. Unexported, so
	// no caller outside can; nil: wallSource (time.Now, or in a build with
	// the custos_testclock tag, offset by DIR/testclock-offset).
	wall func() time.Time
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
	auditq          *policystore.Queue             // the policy state machine's events
	rec             *recording.Recorder            // a store's cameras; nil elsewhere
	repl            *replication.Source            // a store's replication to the datacenters; nil elsewhere
	replicas        *replication.Replicas          // a datacenter's replicas of the stores; nil elsewhere
	alerts          *alerting.Runner               // a datacenter's alert rules (alerts.go); nil elsewhere
	fetchedAlerts   atomic.Pointer[[]AlertSummary] // an admin node's: the datacenters' recent alerts
	policy          *policystore.Store             // nil when running from a peers file
	raft            *consensus.Node                // likewise
	members         *membership.Reconciler
	seed            []mesh.Peer // datacenters to reach before the policy names peers
	join            *join.Server
	share           *tcpShare           // a datacenter's TCP port: relay and join service
	relaySrv        *mesh.RelayServer   // a datacenter's relay; nil elsewhere
	seedRelays      []mesh.Relay        // the token's datacenters, until the policy names them
	svc             *service            // the node service (service.go); nil without a policy
	relKeys         *release.Keys       // one-time release keys made here (node/release)
	custody         *keys.CustodySigner // this node's key as a custody signer; named per use
	drafts          breachDrafts        // automatic breach drafts under way (breachdraft.go)
	rel             *release.Service    // store and datacenter ops of a release, exports
	eraser          *erasure.Eraser     // a store's or datacenter's erasures; nil elsewhere
	revs            *revocations        // envelopes that revoked nodes, for their notices
	// revoked is a checked notice of this node's own revocation that its
	// replica has not applied (revocation.go); nil if none.
	revoked atomic.Pointer[revocationNotice]
	// selfRevokedAt is when this node's replica applied its revocation
	// (Unix ns; 0: never), for cutRevoked.
	selfRevokedAt atomic.Int64
	// cuts counts accesses this node ended because the policy did.
	cuts  struct{ peers, live atomic.Uint64 }
	clock *trustedClock // the clock of access decisions (clock.go)
	gate  protocolGate  // the leader's view of who knows which protocol (version.go)
	// protocolSaid, if not 0, is the protocol op version reports instead
	// of policy.Protocol: tests play a node of an older release with it.
	protocolSaid atomic.Int32

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
	explicitName := cfg.Name != ""
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dirLock, fed, err := claimDir(&cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			dirLock.Close()
		}
	}()
	if fed != "" {
		if err := nameFromDir(&cfg, explicitName); err != nil {
			return nil, err
		}
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
		relKeys: release.NewKeys(), dirLock: dirLock, revs: newRevocations()}
	wall := cfg.wall
	if wall == nil {
		wall = wallSource(cfg.Dir)
	}
	n.clock = newTrustedClock(cfg.Dir, wall)
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
	if err := n.openAudit(); err != nil {
		return nil, err
	}
	if err := n.startMesh(&priv, prefix, peers, fed != ""); err != nil {
		return nil, err
	}
	if fed != "" {
		if err := n.startFederation(); err != nil {
			return nil, err
		}
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

// openAudit opens the node's audit journal, repairing a crash's tail.
func (n *Node) openAudit() (err error) {
	if n.audit, err = audit.Open(n.cfg.Dir, audit.Options{Node: n.cfg.Name, Retention: n.cfg.AuditRetention}); err != nil {
		return fmt.Errorf("node: audit journal: %w", err)
	}
	for _, r := range n.audit.Recovered() {
		n.logf("node: audit journal: recovered after a crash: %s", r)
	}
	return nil
}

// startMesh brings up WireGuard with its read-only UAPI socket and the
// static peers, if any.
func (n *Node) startMesh(priv *keys.NodePrivate, prefix netip.Prefix, peers []mesh.Peer, relay bool) (err error) {
	cfg := n.cfg
	uapi, err := listenPrivate(cfg.UAPISocket)
	if err != nil {
		return fmt.Errorf("node: wireguard uapi socket: %w", err)
	}
	n.mesh, err = mesh.New(mesh.Config{
		PrivateKey: *priv,
		Prefix:     prefix,
		ListenPort: cfg.Listen.Port(),
		Endpoint:   cfg.Listen,
		UAPI:       uapi,
		NoGossip:   cfg.NoGossip,
		Relay:      relay, // a federation's relays come from its policy (underlay.go)
		Bind:       cfg.meshBind,
		Name:       cfg.Name,
		Logf:       cfg.Logf,
	})
	if err != nil {
		uapi.Close()
		return fmt.Errorf("node: %w", err)
	}
	if err := n.mesh.SetPeers(peers); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.auditEvent(audit.Event{Actor: cfg.Name, Action: "node-start", Object: n.mesh.PublicKey().String()})
	n.auditPeers(nil, peers, "peers-file")
	return nil
}

// startFederation starts what a member of a federation runs: consensus
// over the policy, membership from it, the roles this node plays, then
// the node service that serves them.
func (n *Node) startFederation() (err error) {
	cfg := n.cfg
	if n.seed, err = readSeed(cfg.Dir); err != nil {
		return err
	}
	if err := n.startConsensus(n.mesh.PublicKey()); err != nil {
		return err
	}
	// Before the roles: a store told of its revocation records nothing.
	if err := n.loadRevoked(); err != nil {
		return err
	}
	n.members = membership.Start(membership.Config{Self: n.mesh.PublicKey().String(), Policy: n.policy, Mesh: readmitting{n.mesh, n.raft, n},
		Now: n.now, Logf: n.logf, Persist: func(p []mesh.Peer) error { return writeLastPeers(cfg.Dir, p) }, Seed: n.seed})
	// Raft listens and the first peers are set: complete at once the
	// handshakes peers tried while this node was down (the leader's, for a
	// node that just joined), instead of after WireGuard's 5 s retry.
	n.mesh.Greet()
	n.wg.Add(1)
	go n.raftMembers()
	if err := n.startRoles(); err != nil {
		return err
	}
	// After the relay server: its first recheck follows the first policy.
	n.seedRelays = seedRelaysOf(cfg.Dir)
	n.wg.Add(1)
	go n.watchRelays()
	// After the recordings it serves, before the API that exports.
	if n.svc, err = startService(n, ServicePort); err != nil {
		return err
	}
	n.wg.Add(1)
	go n.sweepReleaseKeys()
	n.wg.Add(1)
	go n.followVoterClocks()
	n.verifyJournalAtStart()
	n.wg.Add(1)
	go n.pollAlerts()
	return nil
}

// startRoles starts a datacenter's join service and replicas, or a
// store's replication source and recorders. A joining or restarted node's
// replica may still be empty (Raft replays its log once a leader names the
// commit index), so its role also comes from its directory: the role its
// token gave, or the custodian key every datacenter holds. A datacenter
// that waited for its replica would refuse the joins its tokens name.
func (n *Node) startRoles() (err error) {
	cfg := n.cfg
	st := n.policy.State()
	me := st.Nodes[st.NameOfKey(n.mesh.PublicKey().String())]
	if me != nil && me.Role == policy.RoleDatacenter || joinedAs(cfg.Dir) == policy.RoleDatacenter || fileExists(CustodianKeyPath(cfg.Dir)) {
		if err := n.startRelayServer(); err != nil {
			return err
		}
		if n.join, err = startJoinServer(n, cfg.Listen, n.share.other); err != nil {
			return err
		}
		if n.replicas, err = startReplicas(n, cfg.Replication); err != nil {
			return err
		}
		n.alerts = startAlerts(n)
	}
	if n.replicas == nil && cfg.ReplicaBlobs != nil {
		n.logf("node: --replicas %s is ignored: only a datacenter keeps replicas", cfg.ReplicaBlobs)
	}
	if me != nil && me.Role == policy.RoleStore || isStoreJoin(cfg.Dir) {
		// Before the recorders start: their policy loop reads n.repl.
		n.repl = newReplSource(n, cfg.Replication)
		if n.rec, err = recording.Start(cfg.Recording, n.recordingDeps()); err != nil {
			return err
		}
	}
	if n.rec != nil || n.replicas != nil {
		if n.eraser, err = startEraser(n); err != nil {
			return err
		}
	}
	return nil
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
		n.drafts.close()
		if n.svc != nil {
			n.svc.stopClients() // exports in the API end now
		}
		if n.api != nil {
			n.api.close()
		}
		if n.join != nil {
			n.join.Close()
		}
		if n.relaySrv != nil {
			n.relaySrv.Close()
		}
		if n.share != nil {
			n.share.Close()
		}
		if n.svc != nil {
			n.svc.close() // before the recordings its handlers read
		}
		if n.eraser != nil {
			n.eraser.Close() // before the media store it erases in
		}
		if n.rec != nil {
			n.rec.Close()
		}
		if n.replicas != nil {
			n.replicas.Close()
		}
		if n.alerts != nil {
			n.alerts.Close()
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

// auditEvent appends to the journal; a failure is logged loudly (the event
// itself is already done by then).
func (n *Node) auditEvent(e audit.Event) {
	if _, err := n.audit.Append(e); err != nil {
		n.logf("node: AUDIT FAILURE: %v (event %s %s)", err, e.Action, e.Object)
	}
}

// pruneAudit drops audit entries past the retention the policy sets
// (policy.State.AuditKeep: 30 days unless the quorum chose longer), at
// start and hourly. Until the node holds a policy it prunes nothing, and
// looks again every minute: a node catching up must not prune by a default
// the federation has raised. A node run from a peers file has no policy
// and keeps Config.AuditRetention.
func (n *Node) pruneAudit() {
	defer n.wg.Done()
	for {
		wait := time.Hour
		var st *policy.State
		if n.policy != nil {
			st = n.policy.State()
		}
		switch {
		case n.policy != nil && (st == nil || st.FederationID == ""):
			wait = time.Minute
		default:
			if st != nil {
				if err := n.audit.SetRetention(max(st.AuditKeep(), n.cfg.AuditRetention)); err != nil {
					n.logf("node: AUDIT retention: %v", err)
				}
			}
			if removed, err := n.audit.Prune(time.Now()); err != nil {
				n.logf("node: AUDIT prune: %v", err)
			} else if removed > 0 {
				n.logf("node: audit: pruned %d entries past retention", removed)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
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
