package node

import (
	"bytes"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/release"
)

// checkCustodyOnReplica: with the store offline, an export reads the
// datacenters' replicas and checks every segment against the store's seal
// as the policy knows it. Footage planted on the replicas — the store's own
// segment tampered with, or moved to another time, and a segment sealed
// with a key that is not the store's although it names it — fails the
// export, naming the segment; with --allow-gaps it is left out and listed as a gap, and the
// manifest states the store's chain (consecutive sequence numbers).
func (x *relFed) checkCustodyOnReplica() {
	t := x.t
	held, err := x.f.dc.replicas.Store().Segments(x.cam, x.from, time.Now().Add(time.Hour))
	if err != nil || len(held) < 2 {
		t.Fatalf("dc-a's replica holds %d segments from %s: %v", len(held), stamp(x.from), err)
	}
	a, b := held[0], held[1]
	raw, err := x.f.dc.replicas.Store().ReadSegment(a)
	if err != nil {
		t.Fatal(err)
	}
	ga, err := keys.ParseSealedSegment(raw)
	if err != nil {
		t.Fatal(err)
	}
	rawB, err := x.f.dc.replicas.Store().ReadSegment(b)
	if err != nil {
		t.Fatal(err)
	}
	x.request("r10", a.Start, b.End, time.Now().Add(time.Hour))
	x.approve("r10", "bob")
	x.approve("r10", "carol")
	export := func(allowGaps bool) (release.ExportResult, error) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "r10.ts")
		x.lastOut = out
		return x.desk.Export(x.ctx, order(t, x.f.admin, release.ExportRequest{Request: "r10", Out: out, Exporter: "alice", AllowGaps: allowGaps}))
	}
	plant := func(start time.Time, end time.Time, epoch time.Time, b []byte) {
		t.Helper()
		for _, dc := range []*Node{x.f.dc, x.dcB} {
			if err := dc.replicas.Store().Put(store.SegmentMeta{Camera: x.cam, Start: start, End: end, EpochStart: epoch}, b); err != nil {
				t.Fatalf("plant on %s: %v", dc.cfg.Name, err)
			}
		}
	}

	// Planted from the end of the range backwards, so that each export
	// meets the newest plant first. The store's segment b with one byte
	// of its ciphertext changed (a new file name, so its SHA-256 matches).
	tampered := bytes.Clone(rawB)
	tampered[len(tampered)-10] ^= 1
	plant(b.Start.Add(time.Millisecond), b.End, b.EpochStart, tampered)
	if _, err := export(false); err == nil || !strings.Contains(err.Error(), "does not match its link") {
		t.Fatalf("export over a tampered segment: %v, want it refused", err)
	}
	// The store's segment b, filed under another start time.
	movedAt := b.Start.Add(-time.Millisecond)
	plant(movedAt, b.End, b.EpochStart, rawB)
	if _, err := export(false); err == nil || !strings.Contains(err.Error(), "signed link says") {
		t.Fatalf("export over a moved segment: %v, want it refused", err)
	}
	// A segment that names the store and continues its chain, sealed by a
	// key that is not the store's.
	k := keys.NewNodePrivate()
	forger, err := keys.NewCustodySigner("store", &k)
	if err != nil {
		t.Fatal(err)
	}
	l := ga.Link
	l.Seq, l.Prev, l.Start = l.Seq+1, l.Hash(), a.Start.Add(time.Millisecond)
	forged, _, err := keys.SealSegment(forger, l, ga.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	plant(l.Start, l.End, l.EpochStart, forged)
	if res, err := export(false); err == nil || res.Manifest != nil || !strings.Contains(err.Error(), "is not the store's") {
		t.Fatalf("export over a forged segment: %+v %v, want it refused", res, err)
	}

	res, err := export(true)
	if err != nil || res.Refused != "" || res.Manifest == nil {
		t.Fatalf("export with --allow-gaps: %+v %v", res, err)
	}
	m := res.Manifest
	// One gap between a and b (the forged and the moved segment), one
	// after b (the tampered one); the chain itself is whole.
	if len(m.Gaps) != 2 || !strings.Contains(m.Gaps[0].Reason, "did not verify") || m.Gaps[0].Missing != 0 ||
		!strings.Contains(m.Gaps[1].Reason, "does not match its link") {
		t.Errorf("gaps = %+v, want two naming the segments that did not verify", m.Gaps)
	}
	if len(m.Segments) != 2 {
		t.Fatalf("manifest lists %d segments, want the store's 2", len(m.Segments))
	}
	for i, s := range m.Segments {
		if s.Store != "store" || s.Seq != ga.Link.Seq+uint64(i) || !s.Start.Equal(held[i].Start) {
			t.Errorf("manifest segment %d = %+v, want store's sequence %d at %s", i, s, ga.Link.Seq+uint64(i), stamp(held[i].Start))
		}
	}
	if m.Output.Frames == 0 {
		t.Error("the export with gaps holds no frames")
	}
	checkManifest(t, x.f.admin, m, x.lastOut)
}
