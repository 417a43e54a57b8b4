package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/media"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/replication"
)

// twin is a node's status that the test moves on.
type twin struct {
	mu sync.Mutex
	st node.Status
	er error
}

func (t *twin) status() (node.Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st, t.er
}

func (t *twin) set(f func(*node.Status)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.st)
}

// scrape fetches /metrics from srv and parses it with Prometheus's own
// text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("scrape: %s: %s", res.Status, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation) // the strictest names
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in the scrape", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no %s%v in the scrape", name, want)
	return 0
}

// A scrape of a store's status parses with Prometheus's parser, says what
// the status says, and moves when the status does; labels are cameras,
// peers, datacenters, roles and path kinds only.
func TestScrapeParsesAndMoves(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tw := &twin{st: node.Status{
		Name: "store-praha-1", Version: "v1", Federation: "acme",
		Peers: []mesh.PeerStatus{
			{Name: "dc-a", RxBytes: 100, TxBytes: 200, Liveness: "alive", Path: "direct 192.0.2.1:51820",
				Bytes: mesh.PathBytes{DirectRx: 90, DirectTx: 180, RelayRx: 10, RelayTx: 20}},
			{Name: "dc-b", RxBytes: 5, TxBytes: 6, Liveness: "suspect", Path: "relay dc-a"},
		},
		Consensus: &consensus.Status{Role: consensus.Follower, Term: 3, CommitIndex: 70, AppliedIndex: 69, LastContact: now.Add(-2 * time.Second),
			Commits: consensus.Latency{Count: 4, SumSeconds: 0.02, Buckets: []uint64{0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}}},
		Commands:       map[string]uint64{"request.create": 2, "request.approve": 3},
		Refused:        1,
		Protocol:       2,
		Stalled:        "the policy replica stopped at entry 9",
		Requests:       map[string]int{"pending": 1, "approved": 1},
		Cuts:           node.AccessCuts{Peers: 1, LiveViews: 2},
		BadChecksums:   4,
		ReplicaStorage: &store.Health{Storage: "s3://replicas/dc-a", Unavailable: true, Corrupt: 2, Missing: []string{"segments/x.seg"}},
		Recording: &recording.Status{Cameras: []recording.CameraStatus{{
			Camera: "praha-1/entrance", State: media.StateRecording, Frames: 250, SegmentsWritten: 10, Bytes: 5e6,
			BitrateBPS: 4e6, LastSegment: now.Add(-3 * time.Second),
		}}},
		Replication: []replication.Status{{Camera: "praha-1/entrance", Datacenter: "dc-a", LagSeconds: 4, LagBytes: 1000}},
	}}
	tw.st.Recording.Disk.Free = 1 << 30
	c := New(tw.status)
	c.now = func() time.Time { return now }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, c) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String() + "/metrics"

	fams := scrape(t, url)
	cam := map[string]string{"camera": "praha-1/entrance"}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"custos_node_info", map[string]string{"name": "store-praha-1", "federation": "acme"}, 1},
		{"custos_camera_frames_total", cam, 250},
		{"custos_camera_segments_written_total", cam, 10},
		{"custos_camera_lag_seconds", cam, 3},
		{"custos_camera_recording", cam, 1},
		{"custos_disk_free_bytes", nil, 1 << 30},
		{"custos_replication_lag_seconds", map[string]string{"camera": "praha-1/entrance", "datacenter": "dc-a"}, 4},
		{"custos_peer_rx_bytes_total", map[string]string{"peer": "dc-a"}, 100},
		{"custos_peer_path", map[string]string{"peer": "dc-a", "path": "direct"}, 1},
		{"custos_peer_path", map[string]string{"peer": "dc-b", "path": "relay"}, 1},
		{"custos_peer_alive", map[string]string{"peer": "dc-b"}, 0},
		{"custos_raft_role", map[string]string{"role": "follower"}, 1},
		{"custos_raft_commit_index", nil, 70},
		{"custos_raft_leader_contact_age_seconds", nil, 2},
		{"custos_peer_path_bytes_total", map[string]string{"peer": "dc-a", "path": "relay", "direction": "tx"}, 20},
		{"custos_peer_path_bytes_total", map[string]string{"peer": "dc-a", "path": "direct", "direction": "rx"}, 90},
		{"custos_policy_commands_total", map[string]string{"kind": "request.approve"}, 3},
		{"custos_policy_refused_total", nil, 1},
		{"custos_policy_protocol", nil, 2},
		{"custos_replica_storage_alarm", map[string]string{"alarm": "unavailable"}, 1},
		{"custos_replica_storage_alarm", map[string]string{"alarm": "full"}, 0},
		{"custos_replica_storage_corrupt_total", nil, 2},
		{"custos_replica_storage_missing", nil, 1},
		{"custos_policy_stalled", nil, 1},
		{"custos_requests", map[string]string{"status": "pending"}, 1},
		{"custos_access_cuts_total", map[string]string{"kind": "peer"}, 1},
		{"custos_access_cuts_total", map[string]string{"kind": "live_view"}, 2},
		{"custos_mesh_bad_checksum_packets_total", nil, 4},
	}
	for _, ck := range checks {
		if got := value(t, fams, ck.name, ck.labels); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
	// The commit histogram: its count, sum and cumulative buckets.
	h := fams["custos_raft_commit_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 0.02 || len(h.GetBucket()) != len(consensus.CommitBuckets())+1 || // and +Inf

		h.GetBucket()[1].GetUpperBound() != 0.001 || h.GetBucket()[1].GetCumulativeCount() != 1 {
		t.Errorf("commit histogram: %v", h)
	}
	// Bounded labels: no address, no relay name, no segment in any value.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), ":") || strings.Contains(l.GetValue(), ".ts") {
					t.Errorf("%s has label %s=%q: an address or a segment in a label", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// The status moves; the next scrape follows.
	tw.set(func(s *node.Status) {
		s.Recording.Cameras[0].Frames = 500
		s.Recording.Cameras[0].SegmentsLost = 1
		s.Peers[0].RxBytes = 1e6
		s.Consensus.Role = consensus.Leader
		s.Consensus.LastContact = time.Time{}
		s.AuditFailure = "disk full since 12:00"
		s.Commands["request.approve"]++
		s.Cuts.LiveViews++
		s.Peers[0].Bytes.RelayTx += 1000
	})
	fams = scrape(t, url)
	if got := value(t, fams, "custos_camera_frames_total", cam); got != 500 {
		t.Errorf("frames after the status moved: %v", got)
	}
	if got := value(t, fams, "custos_camera_segments_lost_total", cam); got != 1 {
		t.Errorf("segments lost: %v", got)
	}
	if got := value(t, fams, "custos_peer_rx_bytes_total", map[string]string{"peer": "dc-a"}); got != 1e6 {
		t.Errorf("rx bytes: %v", got)
	}
	if got := value(t, fams, "custos_raft_role", map[string]string{"role": "leader"}); got != 1 {
		t.Errorf("role: %v", got)
	}
	if got := value(t, fams, "custos_audit_failing", nil); got != 1 {
		t.Errorf("audit failing: %v", got)
	}
	if got := value(t, fams, "custos_policy_commands_total", map[string]string{"kind": "request.approve"}); got != 4 {
		t.Errorf("approvals applied: %v", got)
	}
	if got := value(t, fams, "custos_access_cuts_total", map[string]string{"kind": "live_view"}); got != 3 {
		t.Errorf("live views cut: %v", got)
	}
	if got := value(t, fams, "custos_peer_path_bytes_total", map[string]string{"peer": "dc-a", "path": "relay", "direction": "tx"}); got != 1020 {
		t.Errorf("relayed bytes: %v", got)
	}

	// A status that cannot be read gives a scrape that says so, not a 500.
	tw.mu.Lock()
	tw.er = errors.New("node stopping")
	tw.mu.Unlock()
	fams = scrape(t, url)
	if got := value(t, fams, "custos_status_errors_total", nil); got != 1 {
		t.Errorf("status errors: %v", got)
	}
	if fams["custos_camera_frames_total"] != nil {
		t.Error("camera figures from a status that could not be read")
	}
}

// The endpoint is for loopback or the mesh only.
func TestCheckAddr(t *testing.T) {
	mesh := netip.MustParsePrefix("fd7a:1234:5678:9abc::/64")
	for _, ok := range []string{"127.0.0.1:9477", "[::1]:9477", "[fd7a:1234:5678:9abc::5]:9477"} {
		if _, err := CheckAddr(ok, mesh); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:9477", "[::]:9477", "192.0.2.10:9477", "[fd7a:1234:5678:9abd::5]:9477", "localhost:9477", "127.0.0.1", ""} {
		if _, err := CheckAddr(bad, mesh); err == nil || !strings.Contains(err.Error(), "--metrics") {
			t.Errorf("%q: %v, want a refusal naming --metrics", bad, err)
		}
	}
}
