// Package metrics owns the node's Prometheus exposition (`custos up
// --metrics ADDR`): a collector that reads the node's status at each scrape
// and turns it into metrics, so nothing in the node counts twice and a
// scrape sees one consistent status. Labels are bounded by the federation's
// size — a camera, a peer, a datacenter, a Raft role — never a segment,
// request or user, so a scrape's size follows the policy, not the traffic.
// The listener is loopback or the mesh only: the figures say what the
// federation records and where, which is for its operators.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/node"
)

const ns = "custos"

// Collector is a prometheus.Collector over a node's status.
type Collector struct {
	status func() (node.Status, error)
	now    func() time.Time
	descs  map[string]*prometheus.Desc
	order  []string
}

// metric names and their help and labels.
var defs = []struct {
	name, help string
	labels     []string
}{
	{"node_info", "The node: name, version, federation (always 1).", []string{"name", "version", "federation"}},
	{"status_errors_total", "Scrapes whose status could not be read (1 on the failing scrape).", nil},
	{"peer_rx_bytes_total", "WireGuard bytes received from the peer.", []string{"peer"}},
	{"peer_tx_bytes_total", "WireGuard bytes sent to the peer.", []string{"peer"}},
	{"peer_path", "The path packets to the peer take now (1 for the path in the label).", []string{"peer", "path"}},
	{"peer_alive", "Whether gossip hears the peer (1) or not (0).", []string{"peer"}},
	{"peer_path_bytes_total", "WireGuard datagram bytes to or from the peer, by the path they took (direct UDP or a datacenter's relay).", []string{"peer", "path", "direction"}},
	{"raft_role", "This node's Raft role (1 for the role in the label).", []string{"role"}},
	{"raft_term", "The Raft term this node knows.", nil},
	{"raft_commit_index", "The last log index this node knows committed.", nil},
	{"raft_applied_index", "The last command this node's policy replica applied.", nil},
	{"raft_leader_contact_age_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", nil},
	{"raft_commit_seconds", "Commands this node committed as leader: seconds from handing each to Raft to its commit and apply.", nil},
	{"policy_commands_total", "Policy commands this replica applied since it started, by kind (request.create, request.approve, grant.add …).", []string{"kind"}},
	{"policy_refused_total", "Policy commands this replica refused since it started (a bad signature, a replay, a rule broken).", nil},
	{"policy_protocol", "The policy protocol this node's release speaks.", nil},
	{"policy_stalled", "1 while this node's policy replica is stopped at a command of a newer protocol (it then serves nothing: upgrade it).", nil},
	{"requests", "Footage requests the policy holds, by status.", []string{"status"}},
	{"access_cuts_total", "Accesses this node ended because the policy ended them: peers dropped from its mesh (revoked, removed, a window over) and live views whose grant or window ended.", []string{"kind"}},
	{"camera_frames_total", "Frames the camera delivered (this run).", []string{"camera"}},
	{"camera_frames_dropped_total", "Frames dropped before the first keyframe or refused as malformed.", []string{"camera"}},
	{"camera_segments_written_total", "Segments stored (this run).", []string{"camera"}},
	{"camera_segments_lost_total", "Segments dropped (queue full) or refused by the disk (this run).", []string{"camera"}},
	{"camera_reconnects_total", "Source reconnection attempts.", []string{"camera"}},
	{"camera_stored_bytes", "Ciphertext stored for the camera, all runs.", []string{"camera"}},
	{"camera_queued_segments", "Segments waiting for the disk.", []string{"camera"}},
	{"camera_bitrate_bps", "The camera's bitrate.", []string{"camera"}},
	{"camera_lag_seconds", "Seconds since the end of the camera's newest stored segment.", []string{"camera"}},
	{"camera_recording", "Whether the camera records now (1) or not (0).", []string{"camera"}},
	{"disk_free_bytes", "Bytes available to the segment store (-1 if unknown).", nil},
	{"disk_full", "1 while the segment store refuses writes for lack of space.", nil},
	{"replication_lag_seconds", "A store's camera: seconds of footage the datacenter has not acknowledged.", []string{"camera", "datacenter"}},
	{"replication_lag_bytes", "A store's camera: ciphertext bytes the datacenter has not acknowledged.", []string{"camera", "datacenter"}},
	{"replica_storage_alarm", "A datacenter's replica storage: 1 while the alarm in the label holds (unavailable, full; a bucket's, or the disk's).", []string{"alarm"}},
	{"replica_storage_corrupt_total", "Replica reads refused since start because the bytes did not match the index.", nil},
	{"replica_storage_missing", "Indexed replica objects the bucket lacks (footage lost from it; at most 20 are listed).", nil},
	{"mesh_bad_checksum_packets_total", "Packets from authenticated peers dropped since start for a wrong TCP/UDP checksum (a faulty NIC or driver on the sending side).", nil},
	{"corrupt_segments_total", "Segments this node holds but could not serve intact since it started.", nil},
	{"clock_skew_seconds", "This node's wall clock minus the voters' time, as last estimated (negative: behind).", nil},
	{"clock_alarm", "1 while the clock skew is past the bound (new access is then refused).", nil},
	{"audit_failing", "1 while the audit journal cannot record (the node then refuses access).", nil},
	{"alerts", "Alerts of the last 24 hours, by rule.", []string{"rule"}},
	{"exports_running", "Exports running on this node.", nil},
}

// New returns a collector that reads status at each scrape.
func New(status func() (node.Status, error)) *Collector {
	c := &Collector{status: status, now: time.Now, descs: make(map[string]*prometheus.Desc)}
	for _, d := range defs {
		c.descs[d.name] = prometheus.NewDesc(ns+"_"+d.name, d.help, d.labels, nil)
		c.order = append(c.order, d.name)
	}
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, name := range c.order {
		ch <- c.descs[name]
	}
}

// Collect reads the status once and sends what it says.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	st, err := c.status()
	if err != nil {
		counter("status_errors_total", 1)
		return
	}
	counter("status_errors_total", 0)
	gauge("node_info", 1, st.Name, st.Version, st.Federation)
	for _, p := range st.Peers {
		name := p.Name
		if name == "" {
			name = p.PublicKey.ShortString()
		}
		counter("peer_rx_bytes_total", float64(p.RxBytes), name)
		counter("peer_tx_bytes_total", float64(p.TxBytes), name)
		gauge("peer_path", 1, name, pathKind(p.Path))
		gauge("peer_alive", b2f(p.Liveness == "alive"), name)
		counter("peer_path_bytes_total", float64(p.Bytes.DirectRx), name, "direct", "rx")
		counter("peer_path_bytes_total", float64(p.Bytes.DirectTx), name, "direct", "tx")
		counter("peer_path_bytes_total", float64(p.Bytes.RelayRx), name, "relay", "rx")
		counter("peer_path_bytes_total", float64(p.Bytes.RelayTx), name, "relay", "tx")
	}
	if cs := st.Consensus; cs != nil {
		gauge("raft_role", 1, strings.ToLower(cs.Role.String()))
		gauge("raft_term", float64(cs.Term))
		gauge("raft_commit_index", float64(cs.CommitIndex))
		gauge("raft_applied_index", float64(cs.AppliedIndex))
		age := 0.0
		if !cs.LastContact.IsZero() {
			age = c.now().Sub(cs.LastContact).Seconds()
		}
		gauge("raft_leader_contact_age_seconds", age)
		h := cs.Commits
		if bounds := consensus.CommitBuckets(); len(h.Buckets) == len(bounds) {
			buckets := make(map[float64]uint64, len(bounds))
			for i, le := range bounds {
				buckets[le] = h.Buckets[i]
			}
			ch <- prometheus.MustNewConstHistogram(c.descs["raft_commit_seconds"], h.Count, h.SumSeconds, buckets)
		}
	}
	for kind, n := range st.Commands {
		counter("policy_commands_total", float64(n), kind)
	}
	counter("policy_refused_total", float64(st.Refused))
	gauge("policy_protocol", float64(st.Protocol))
	gauge("policy_stalled", b2f(st.Stalled != ""))
	for status, n := range st.Requests {
		gauge("requests", float64(n), status)
	}
	counter("access_cuts_total", float64(st.Cuts.Peers), "peer")
	counter("access_cuts_total", float64(st.Cuts.LiveViews), "live_view")
	if rs := st.Recording; rs != nil {
		gauge("disk_free_bytes", float64(rs.Disk.Free))
		gauge("disk_full", b2f(rs.Disk.DiskFull))
		for _, cam := range rs.Cameras {
			id := cam.Camera
			counter("camera_frames_total", float64(cam.Frames), id)
			counter("camera_frames_dropped_total", float64(cam.FramesDropped+cam.FramesRefused), id)
			counter("camera_segments_written_total", float64(cam.SegmentsWritten), id)
			counter("camera_segments_lost_total", float64(cam.SegmentsLost), id)
			counter("camera_reconnects_total", float64(cam.Reconnects), id)
			gauge("camera_stored_bytes", float64(cam.Bytes), id)
			gauge("camera_queued_segments", float64(cam.Queued), id)
			gauge("camera_bitrate_bps", cam.BitrateBPS, id)
			lag := 0.0
			if !cam.LastSegment.IsZero() {
				lag = max(0, c.now().Sub(cam.LastSegment).Seconds())
			}
			gauge("camera_lag_seconds", lag, id)
			gauge("camera_recording", b2f(cam.State == media.StateRecording), id)
		}
	}
	for _, r := range st.Replication {
		if r.Camera == "" || r.Datacenter == "" {
			continue // an error line, not a camera
		}
		gauge("replication_lag_seconds", r.LagSeconds, r.Camera, r.Datacenter)
		gauge("replication_lag_bytes", float64(r.LagBytes), r.Camera, r.Datacenter)
	}
	if h := st.ReplicaStorage; h != nil {
		gauge("replica_storage_alarm", b2f(h.Unavailable), "unavailable")
		gauge("replica_storage_alarm", b2f(h.DiskFull), "full")
		counter("replica_storage_corrupt_total", float64(h.Corrupt))
		gauge("replica_storage_missing", float64(len(h.Missing)))
	}
	counter("corrupt_segments_total", float64(st.CorruptSegments))
	counter("mesh_bad_checksum_packets_total", float64(st.BadChecksums))
	gauge("audit_failing", b2f(st.AuditFailure != ""))
	if st.ClockSkewSeconds != nil {
		gauge("clock_skew_seconds", *st.ClockSkewSeconds)
	}
	gauge("clock_alarm", b2f(st.ClockAlarm != ""))
	rules := map[string]int{}
	for _, a := range st.Alerts {
		rules[a.Rule]++
	}
	for rule, n := range rules {
		gauge("alerts", float64(n), rule)
	}
	gauge("exports_running", float64(len(st.Exports)))
}

// pathKind is a path's kind: direct, relay or none (not its address or
// relay name, which would grow the label's values with the underlay).
func pathKind(p string) string {
	kind, _, _ := strings.Cut(p, " ")
	switch kind {
	case "direct", "relay":
		return kind
	}
	return "none"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CheckAddr accepts a listen address for the metrics endpoint: an IP and
// a port on loopback or in the mesh prefix, never a wildcard or another
// interface's address.
func CheckAddr(s string, mesh netip.Prefix) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--metrics %q: want IP:PORT on loopback or the mesh, such as 127.0.0.1:9477", s)
	}
	a := ap.Addr().Unmap()
	switch {
	case a.IsLoopback():
	case mesh.IsValid() && mesh.Contains(a):
	default:
		return netip.AddrPort{}, fmt.Errorf("--metrics %q: the metrics say what the federation records and where; serve them on loopback (127.0.0.1) or the node's mesh address, not %s", s, a)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// Handler serves the collector's metrics (and nothing of the process's
// own: Go runtime metrics are another registry's business).
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve serves /metrics on ln until ctx ends, then closes ln and every
// connection (a scraper's kept-alive one too).
func Serve(ctx context.Context, ln net.Listener, c *Collector) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(c))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	defer context.AfterFunc(ctx, func() { srv.Close() })()
	if err := srv.Serve(ln); !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
