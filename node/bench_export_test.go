package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// BenchmarkExport: a store holding an hour of one camera's footage (real
// encrypted, sealed segments from the recording pipeline, written before
// the store starts: recordBacklog), two datacenters as custodians holding
// its replicas, a sealed federation (two approvals). Per range, its first minute and the
// whole hour: a request, two approvals, and the export on an admin node
// to an MPEG-TS file, as `custos export` runs it. Reported: MB/s of
// ciphertext over the whole export (the custodians' answers included),
// decrypt-MB/s over the part after the keys (fetch, check, decrypt,
// write), and the export's seconds. `make bench` sets them beside keys'
// BenchmarkDecryptSegment. CUSTOS_EXPORT_FOOTAGE changes the hour.
func BenchmarkExport(b *testing.B) {
	footage := time.Hour
	if v := os.Getenv("CUSTOS_EXPORT_FOOTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Minute {
			b.Fatalf("CUSTOS_EXPORT_FOOTAGE=%q: want a duration of at least 2m", v)
		}
		footage = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	f := foundAcme(b, ctx)
	joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	submit := func(dir string, env policy.Envelope) {
		b.Helper()
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			b.Fatalf("submit: %+v %v", res, err)
		}
	}
	const cam = "praha-1/backlog"
	// No source: the store serves the backlog and records nothing new.
	submit(f.dc.cfg.Dir, signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{
		Site: "praha-1", Name: "backlog", Purpose: "p", LegalBasis: "b", Retention: 72 * time.Hour}}))
	desk := joinAcme(b, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	start := time.Now()
	st, segs, _ := joinBacklogStore(b, ctx, f, cam, footage)
	first, newest := segs[0].Start, segs[len(segs)-1].End
	b.Logf("backlog: %d segments from %s, recorded and joined in %v", len(segs), first.Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
	approvers := f.seal(b, ctx)
	// A custodian answers only for segments it holds: both datacenters
	// first replicate the hour.
	start = time.Now()
	waitTrue(b, 20*time.Minute, "both datacenters to hold the backlog", func() bool {
		s, err := st.Status()
		if err != nil {
			return false
		}
		caught := 0
		for _, r := range s.Replication {
			if r.Camera == cam && r.LagSegments == 0 && r.UpTo.Equal(newest) {
				caught++
			}
		}
		return caught == 2
	})
	b.Logf("replicated to both datacenters in %v", time.Since(start).Round(time.Second))

	n := 0
	for _, r := range []struct {
		name string
		span time.Duration
	}{{"1m", time.Minute}, {"1h", footage}} {
		b.Run(r.name, func(b *testing.B) {
			var bytes int64
			var total, decrypt time.Duration
			for b.Loop() {
				n++
				id := fmt.Sprintf("x%d", n)
				pub, err := desk.NewReleaseKey()
				if err != nil {
					b.Fatal(err)
				}
				submit(desk.cfg.Dir, signed(b, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
					ID: id, Node: "desk", Selector: cam, From: first, To: first.Add(r.span), Purpose: "bench", Basis: "bench", Key: pub,
					Expires: time.Now().Add(time.Hour)}}))
				waitTrue(b, 10*time.Second, "the request on desk", func() bool { return desk.Policy().Requests[id] != nil })
				digest := policy.RequestDigest(testFederation, desk.Policy().Requests[id])
				for _, name := range []string{"bob", "carol"} {
					submit(desk.cfg.Dir, signed(b, approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
						Approval: &policy.Approval{Request: id, Digest: digest}}))
				}
				out := filepath.Join(b.TempDir(), id+".ts")
				res, err := desk.Export(ctx, order(b, f.admin, release.ExportRequest{Request: id, Out: out, Exporter: "alice"}))
				if err != nil || res.Refused != "" {
					b.Fatalf("export: %+v %v", res, err)
				}
				if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
					b.Fatalf("export wrote nothing: %v", err)
				}
				os.Remove(out)
				bytes += res.Ciphertext
				total += res.Total
				decrypt += res.Total - res.Release
			}
			b.ReportMetric(float64(bytes)/1e6/total.Seconds(), "MB/s")
			b.ReportMetric(float64(bytes)/1e6/decrypt.Seconds(), "decrypt-MB/s")
			b.ReportMetric(total.Seconds()/float64(b.N), "s/export")
		})
	}
}
