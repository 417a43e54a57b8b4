package release

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// The store side against in-memory twins: it serves desk the approved
// scope only, clipped to the request's range, and nothing to another node
// or outside the scope, before any media is read.
func TestStoreServesOnlyTheApprovedScope(t *testing.T) {
	f := newTwinFed(t, "store")
	ctx := context.Background()
	in := ScopeQuery{Request: "r1", Camera: testCamera, From: f.from.Add(-time.Hour), To: f.to.Add(time.Hour)}

	for what, c := range map[string]struct {
		peer keys.NodePublic
		q    ScopeQuery
		want string
	}{
		"dc-b asking for desk's scope": {f.dcB, in, "released to node desk, not to dc-b"},
		"another camera":               {f.desk, ScopeQuery{Request: "r1", Camera: "praha-1/yard", From: f.from, To: f.to}, "outside the scope"},
		"an earlier time":              {f.desk, ScopeQuery{Request: "r1", Camera: testCamera, From: f.from.Add(-time.Hour), To: f.from.Add(-time.Minute)}, "outside the scope"},
		"another request":              {f.desk, ScopeQuery{Request: "r2", Camera: testCamera, From: f.from, To: f.to}, "no request"},
		"a stranger":                   {keys.NewNodePrivate().Public(), in, "not a live member"},
	} {
		var w framesTwin
		isDenied(t, what, f.svc.serveSegments(ctx, c.peer, body(c.q), &w), c.want)
		isDenied(t, what+" (epochs)", f.svc.serveEpochs(ctx, c.peer, body(c.q), &w), c.want)
		if len(w.frames) != 0 {
			t.Errorf("%s: %d frames served", what, len(w.frames))
		}
	}
	if f.media.reads != 0 {
		t.Fatalf("%d segments read for refused queries", f.media.reads)
	}
	if n := f.audit.count("serve-segments", audit.Deny); n != 5 {
		t.Errorf("%d refused segment serves audited, want 5", n)
	}

	// A pending request (one approval left) is no release.
	f.st.Requests["r1"].Approvals = f.st.Requests["r1"].Approvals[:1]
	isDenied(t, "a pending request", f.svc.serveSegments(ctx, f.desk, body(in), &framesTwin{}), "pending")
	f.st.Requests["r1"].Approvals = append(f.st.Requests["r1"].Approvals, policy.Approval{Request: "r1", User: "carol", Key: "fc"})

	// Desk asks beyond the range: it gets the segments that overlap the
	// request's own range, a header and a ciphertext frame each.
	var w framesTwin
	if err := f.svc.serveSegments(ctx, f.desk, body(in), &w); err != nil {
		t.Fatal(err)
	}
	if len(w.frames) != 6 {
		t.Fatalf("%d frames, want 3 segments of the range (header and ciphertext each)", len(w.frames))
	}
	for i := 0; i < len(w.frames); i += 2 {
		var h SegmentHeader
		if err := rpc.DecodeStrict(w.frames[i], &h); err != nil {
			t.Fatal(err)
		}
		if h.Start.Before(f.from) || !h.Start.Before(f.to) || checkSegmentSum(h, w.frames[i+1]) != nil {
			t.Errorf("segment %s served for [%s, %s), or its sum does not match", stamp(h.Start), stamp(f.from), stamp(f.to))
		}
	}
	if n := f.audit.count("serve-segments", audit.Allow); n != 1 {
		t.Errorf("%d allowed segment serves audited, want 1", n)
	}
}

// A copy the store cannot read intact is named in its header, with no
// ciphertext, and counted, logged and audited as an alarm; the others go
// out.
func TestStoreNamesACorruptSegment(t *testing.T) {
	f := newTwinFed(t, "store")
	bad := f.media.segs[2]
	f.media.bad[bad.Start.UnixNano()] = true
	var w framesTwin
	if err := f.svc.serveSegments(context.Background(), f.desk, body(ScopeQuery{Request: "r1", Camera: testCamera, From: f.from, To: f.to}), &w); err != nil {
		t.Fatal(err)
	}
	if len(w.frames) != 5 {
		t.Fatalf("%d frames, want 2 segments and the corrupt one's header", len(w.frames))
	}
	var h SegmentHeader
	if err := rpc.DecodeStrict(w.frames[2], &h); err != nil || !h.Start.Equal(bad.Start) || h.Corrupt == "" {
		t.Fatalf("the corrupt segment's header: %+v %v", h, err)
	}
	if f.corrupt.Load() != 1 || f.audit.count("corrupt-segment", audit.Deny) != 1 || len(f.logged) != 1 || !strings.Contains(f.logged[0], "ALARM") {
		t.Errorf("corrupt count %d, %d audited, logged %q", f.corrupt.Load(), f.audit.count("corrupt-segment", audit.Deny), f.logged)
	}
}
