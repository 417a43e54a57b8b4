package replication

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
)

// A datacenter keeps showing what it holds of a store it pulls from no
// more (revoked, say, once stolen): the footage stays for retention and
// exports, and the status must not make it look lost.
func TestReplicaStatusKeepsFormerStores(t *testing.T) {
	f := nodetest.NewCustody(t)
	tr := newTestReplica(t, f.St)
	r, p := tr.r, tr.p
	e0 := f.Rec.Start
	sum := sha256.Sum256(f.Sealed)
	if err := r.apply(p, replItem{Kind: "epoch", Camera: f.Rec.Camera, Start: e0, End: f.Rec.End, EpochStart: e0, SHA256: hex.EncodeToString(sum[:])}, f.Sealed); err != nil {
		t.Fatal(err)
	}
	seg, l := f.Segment(t, f.Signer, 0, e0.Add(time.Second), [32]byte{})
	sum = sha256.Sum256(seg)
	if err := r.apply(p, replItem{Kind: "segment", Camera: f.Rec.Camera, Start: l.Start, End: l.End, EpochStart: e0, SHA256: hex.EncodeToString(sum[:])}, seg); err != nil {
		t.Fatal(err)
	}
	held := func(ss []ReplicaStatus, name string) *ReplicaStatus {
		for i := range ss {
			if ss[i].Store == name {
				return &ss[i]
			}
		}
		return nil
	}
	// Pulled from: pulling or unreachable, with its site's camera.
	if s := held(r.Status(), "store"); s == nil || s.State != "unreachable" || len(s.Cameras) != 1 || s.Cameras[0].Segments != 1 {
		t.Fatalf("while pulled: %+v", s)
	}
	// Revoked, so pulled from no more (reconcile stops its puller): still
	// listed with what is held; store2 of the same site holds nothing of
	// its own and is listed once, as is brno (nothing held: not listed).
	f.St.Nodes["store"].Revoked = true
	f.St.Nodes["store2"].Revoked = true
	delete(r.pullers, "store")
	ss := r.Status()
	s := held(ss, "store")
	if s == nil || s.State != "revoked" || len(s.Cameras) != 1 || s.Cameras[0].Camera != f.Rec.Camera || s.Cameras[0].Segments != 1 {
		t.Fatalf("after revocation: %+v (all: %+v)", s, ss)
	}
	if held(ss, "brno") != nil {
		t.Errorf("a store whose site nothing is held of is listed: %+v", ss)
	}
	// Another store of the site pulled from again: the site's footage is
	// shown under it, not twice.
	r.pullers["store2"] = &puller{store: "store2", site: "praha-1", audit: p.audit}
	ss = r.Status()
	if held(ss, "store") != nil || held(ss, "store2") == nil {
		t.Errorf("with store2 pulled: %+v", ss)
	}
}
