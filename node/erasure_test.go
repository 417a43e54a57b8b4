package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/erasure"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// TestErasureOnEveryReplica: an erasure approved while dc-b is down is
// carried out at once on the store and dc-a, and by dc-b when it returns;
// after dc-b's catch-up no node holds a segment of the range, footage
// outside it is intact, and each node's receipt says so. A hold then
// refuses an erasure of its footage, naming the hold.
func TestErasureOnEveryReplica(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	dcB := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"})
	// The third voter: the policy keeps its quorum while dc-b is down.
	joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleWitness, Name: "witness"})
	const cam = "praha-1/entrance"
	submitOK := func(dir string, env policy.Envelope) {
		t.Helper()
		if res, err := SubmitVia(ctx, dir, env); err != nil || !res.Applied {
			t.Fatalf("submit: %+v %v", res, err)
		}
	}
	submitOK(f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}}))
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, EpochLength: 3 * time.Second, MinFree: -1}
	})
	approvers := f.seal(t, ctx)

	segsOf := func(n *Node, from, to time.Time) []store.SegmentMeta {
		var s *store.Store
		switch {
		case n.rec != nil:
			s = n.rec.Store()
		case n.replicas != nil:
			s = n.replicas.Store()
		}
		segs, err := s.Segments(cam, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return segs
	}
	all := func(n *Node) []store.SegmentMeta { return segsOf(n, time.Time{}, time.Now().Add(time.Hour)) }
	var segs []store.SegmentMeta
	waitTrue(t, 90*time.Second, "both datacenters to hold 10 segments", func() bool {
		segs = all(st1)
		return len(segs) >= 10 && len(all(f.dc)) >= 10 && len(all(dcB)) >= 10
	})
	// Segments 3 to 6, cut inside them: 2 and 7 are outside.
	from, to := segs[3].Start.Add(100*time.Millisecond), segs[6].End.Add(-100*time.Millisecond)
	dcBCfg := dcB.cfg
	if err := dcB.Close(); err != nil {
		t.Fatal(err)
	}

	dir := f.dc.cfg.Dir
	submitOK(dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "e1", Action: policy.ActionErase, Selector: cam, From: from, To: to, Purpose: "the subject's erasure request of 2026-12-01",
		Expires: time.Now().Add(time.Hour)}}))
	waitTrue(t, 10*time.Second, "dc-a to see e1", func() bool { return f.dc.Policy().Requests["e1"] != nil })
	digest := policy.RequestDigest(testFederation, f.dc.Policy().Requests["e1"])
	for _, name := range []string{"bob", "carol"} {
		submitOK(dir, signed(t, approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: "e1", Digest: digest}}))
	}
	approved := time.Now()
	rows := func() map[string]erasure.Row {
		st, err := f.dc.ErasureStatus(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]erasure.Row{}
		for _, r := range st.Rows {
			out[r.Node] = r
		}
		return out
	}
	waitTrue(t, 30*time.Second, "the store and dc-a to sign receipts of e1", func() bool {
		_, a := st1.eraser.Receipt("e1")
		_, b := f.dc.eraser.Receipt("e1")
		return a && b
	})
	t.Logf("erased on the store and dc-a %v after the last approval", time.Since(approved).Round(time.Millisecond))
	r := rows()
	if r["store"].State != keys.ErasureDone || r["dc-a"].State != keys.ErasureDone {
		t.Fatalf("status: store %+v, dc-a %+v; want both done", r["store"], r["dc-a"])
	}
	if r["dc-b"].State == keys.ErasureDone {
		t.Fatalf("dc-b is down but shows done: %+v", r["dc-b"])
	}
	if r["store"].Segments < 4 || r["dc-a"].Segments < 4 {
		t.Errorf("receipts: store %+v, dc-a %+v; want at least segments 3-6 each", r["store"], r["dc-a"])
	}
	for _, n := range []*Node{st1, f.dc} {
		if left := segsOf(n, from, to); len(left) != 0 {
			t.Errorf("%s still holds %d segments of the erased range", n.cfg.Name, len(left))
		}
		for _, keep := range []store.SegmentMeta{segs[2], segs[7]} {
			if len(segsOf(n, keep.Start, keep.End)) != 1 {
				t.Errorf("%s lost segment %s outside the range", n.cfg.Name, stamp(keep.Start))
			}
		}
	}

	// dc-b returns: it erases on its first pass and catches up, and the
	// erased range never comes back.
	dcB2, err := New(dcBCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dcB2.Close()
	waitTrue(t, 60*time.Second, "dc-b to report e1 done after its return", func() bool { return rows()["dc-b"].State == keys.ErasureDone })
	held := len(all(dcB2))
	waitTrue(t, 60*time.Second, "dc-b to catch up", func() bool { return len(all(dcB2)) >= held+3 })
	for _, n := range []*Node{st1, f.dc, dcB2} {
		if left := segsOf(n, from, to); len(left) != 0 {
			t.Errorf("%s holds %d segments of the erased range after the catch-up", n.cfg.Name, len(left))
		}
	}
	if st, _ := f.dc.ErasureStatus(ctx, "e1"); st.State != keys.ErasureDone {
		t.Errorf("status %s, want done: %+v", st.State, st.Rows)
	}

	// A hold on later footage refuses an erasure of it, naming the hold.
	hFrom, hTo := segs[8].Start, segs[9].End
	submitOK(dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "h1", Action: policy.ActionHold, Selector: cam, From: hFrom, To: hTo, Until: time.Now().Add(24 * time.Hour),
		Purpose: "police case 12/2026", Expires: time.Now().Add(time.Hour)}}))
	waitTrue(t, 10*time.Second, "dc-a to see h1", func() bool { return f.dc.Policy().Requests["h1"] != nil })
	hd := policy.RequestDigest(testFederation, f.dc.Policy().Requests["h1"])
	for _, name := range []string{"bob", "carol"} {
		submitOK(dir, signed(t, approvers[name], name, &policy.Command{Kind: policy.KindApproveRequest,
			Approval: &policy.Approval{Request: "h1", Digest: hd}}))
	}
	res, err := SubmitVia(ctx, dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "e2", Action: policy.ActionErase, Selector: cam, From: hFrom, To: hTo, Purpose: "another request", Expires: time.Now().Add(time.Hour)}}))
	if err != nil || res.Applied || !strings.Contains(res.Reason, `hold "h1"`) {
		t.Fatalf("erasure of held footage: %+v %v; want refused naming hold h1", res, err)
	}
	if len(segsOf(st1, hFrom, hTo)) == 0 {
		t.Error("the held footage is gone")
	}
}
