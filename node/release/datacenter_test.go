package release

import (
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

// A custodian decides on the request, the caller and every segment's scope
// (by its own index) before it touches its key: a batch with one segment
// outside the range is refused whole, and so is another node than the
// request's. Only a batch wholly in scope gets as far as the key (here:
// none on disk, so that is where it stops).
func TestCustodianRefusesBeforeItsKey(t *testing.T) {
	f := newTwinFed(t, "dc-a")
	st := f.st
	seg := func(i int) time.Time { return f.media.segs[i].Start }
	in := ReleaseQuery{Request: "r1", Camera: testCamera, Segments: []time.Time{seg(1), seg(2)}}

	_, err := f.svc.releasePartials(st, "dc-b", in)
	isDenied(t, "release to dc-b", err, "released to node desk, not to dc-b")
	_, err = f.svc.releasePartials(st, "desk", ReleaseQuery{Request: "r1", Camera: testCamera, Segments: []time.Time{seg(1), seg(4)}})
	isDenied(t, "a batch with a segment after the range", err, "outside the scope of request \"r1\"; nothing released")
	_, err = f.svc.releasePartials(st, "desk", ReleaseQuery{Request: "r1", Camera: testCamera, Segments: []time.Time{seg(0), seg(1)}})
	isDenied(t, "a batch with a segment before the range", err, "outside the scope")
	if f.media.reads != 0 {
		t.Fatalf("%d segments read for refused batches", f.media.reads)
	}
	_, err = f.svc.releasePartials(st, "desk", in)
	isDenied(t, "an in-scope batch", err, "holds no custodian key")
	if n := f.audit.count("key-release", audit.Deny); n != 4 {
		t.Errorf("%d refused releases audited, want 4", n)
	}

	// A node that is no custodian answers nothing.
	g := newTwinFed(t, "dc-b")
	_, err = g.svc.releasePartials(g.st, "desk", in)
	isDenied(t, "dc-b, no custodian", err, "not a custodian")
}
