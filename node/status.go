package node

// What `custos status` shows of a node.

import (
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/node/replication"
	"github.com/custos-cctv/custos/policy"
)

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
	// Underlay is how this node reaches its peers: its relays, its
	// reflexive address and the candidates it advertises.
	Underlay  *mesh.UnderlayStatus `json:"underlay,omitempty"`
	Consensus *consensus.Status    `json:"consensus,omitempty"`
	Recording *recording.Status    `json:"recording,omitempty"`
	// Replication is a store's: per camera and datacenter, how far each
	// datacenter's replica reaches and the lag.
	Replication []replication.Status `json:"replication,omitempty"`
	// Replicas is a datacenter's: the stores it keeps replicas of.
	Replicas []replication.ReplicaStatus `json:"replicas,omitempty"`
	// ReplicaStorage is a datacenter's: where its replicas are kept and
	// that storage's alarms (full, unavailable, integrity, missing).
	ReplicaStorage *store.Health            `json:"replica_storage,omitempty"`
	Exports        []release.ExportProgress `json:"exports,omitempty"` // running exports
	// CorruptSegments counts segments this node holds but could not serve
	// intact since it started (an alarm: each is audited and logged).
	CorruptSegments uint64 `json:"corrupt_segments,omitempty"`
	// BadChecksums counts packets from peers dropped for a wrong TCP/UDP
	// checksum since the node started (mesh.BadChecksums).
	BadChecksums uint64 `json:"mesh_bad_checksums,omitempty"`
	// ClockSkewSeconds is this node's wall clock minus the voters' time
	// (their median), as last estimated (negative: behind; absent: no
	// estimate yet).
	ClockSkewSeconds *float64 `json:"clock_skew_seconds,omitempty"`
	// ClockAlarm says the skew is past the bound, or the voters' time was
	// too far from this node's trusted time to follow: the node then refuses
	// new access (live views, releases, exports) until its time is fixed.
	ClockAlarm string `json:"clock_alarm,omitempty"`
	// ClockWarning says what the clock saw of the voters' times without
	// following it: a voter outvoted, or voters disagreeing.
	ClockWarning string `json:"clock_warning,omitempty"`
	// AuditFailure says since when and why the audit journal fails to
	// record; the node refuses access until it records again.
	AuditFailure string `json:"audit_failure,omitempty"`
	// Membership is the node's own standing in its federation (member,
	// revoked, window over, cut off by every peer) as far as it can know.
	Membership *Membership `json:"membership,omitempty"`
	// Alerts are the alert rules' findings of the last 24 hours: on a
	// datacenter the ones it raised, on an admin node every datacenter's.
	Alerts []AlertSummary `json:"alerts,omitempty"`
	// Cuts count, since the node started, the accesses it ended because
	// the policy ended them.
	Cuts AccessCuts `json:"access_cuts"`
	// Requests counts the footage requests this node's replica holds, by
	// status (pending, approved, denied, expired).
	Requests map[string]int `json:"requests,omitempty"`
	// Commands counts the policy commands this replica applied since it
	// started, by kind, and Refused those it refused.
	Commands map[string]uint64 `json:"policy_commands,omitempty"`
	Refused  uint64            `json:"policy_refused,omitempty"`
	// Protocol is the policy protocol this release speaks; Stalled says
	// where the replica stopped at a command of a newer one (then the
	// node serves nothing until it is upgraded).
	Protocol int    `json:"protocol"`
	Stalled  string `json:"policy_stalled,omitempty"`
}

// AccessCuts are accesses a node ended because the policy did.
type AccessCuts struct {
	// Peers dropped from this node's mesh (revoked, removed, a window
	// over): WireGuard then refuses their packets.
	Peers uint64 `json:"peers"`
	// LiveViews this store ended because the viewer's grant, membership
	// or window ended while it watched.
	LiveViews uint64 `json:"live_views"`
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

// Status reports the node's state.
func (n *Node) Status() (Status, error) {
	peers, err := n.mesh.Status()
	if err != nil {
		return Status{}, err
	}
	for i := range peers {
		// Gossip hears of a peer through others; liveness says alive only
		// when this node hears it too.
		if peers[i].Path == "none" && peers[i].Liveness == "alive" {
			peers[i].Liveness = "unreachable"
		}
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
		BadChecksums:    n.mesh.BadChecksums(),
	}
	if d, ok := n.clock.Skew(); ok {
		sec := d.Seconds()
		st.ClockSkewSeconds = &sec
	}
	if err := n.clock.Fresh(); err != nil {
		st.ClockAlarm = err.Error()
	}
	st.ClockWarning = n.clock.Warning()
	if u := n.mesh.Underlay(); len(u.Relays) > 0 || len(u.Candidates) > 0 {
		st.Underlay = &u
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
	st.Membership = n.membership(st.Consensus, peers)
	if n.rec != nil {
		st.Recording = n.rec.Status()
	}
	if n.repl != nil {
		st.Replication = n.repl.Status()
	}
	if n.replicas != nil {
		st.Replicas = n.replicas.Status()
		h := n.replicas.Health()
		st.ReplicaStorage = &h
	}
	if ex := n.rel.Exports(); len(ex) > 0 {
		st.Exports = ex
	}
	st.Alerts = n.recentAlerts(time.Now())
	st.Cuts = AccessCuts{Peers: n.cuts.peers.Load(), LiveViews: n.cuts.live.Load()}
	st.Protocol = policy.Protocol
	if n.policy != nil {
		if s := n.policy.Stalled(); s != nil {
			st.Stalled = s.Error()
		}
		st.Commands, st.Refused = n.policy.Counts()
		if ps := n.policy.State(); len(ps.Requests) > 0 {
			now := n.now()
			st.Requests = map[string]int{}
			for _, r := range ps.Requests {
				st.Requests[ps.RequestStatus(r, now)]++
			}
		}
	}
	return st, nil
}
