package recording

import (
	"slices"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// TestRetentionKeepsHeldFootage: retention deletes footage past the
// camera's retention except what an active evidence hold keeps; once the
// hold ends, the next pass deletes it too.
func TestRetentionKeepsHeldFootage(t *testing.T) {
	const cam = "praha-1/door"
	s, err := store.Open(t.TempDir(), store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Ten 4-s segments three hours ago, in one epoch.
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	if err := s.PutEpoch(cam, base, base.Add(time.Minute), []byte("record")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		start := base.Add(time.Duration(i) * 4 * time.Second)
		if err := s.Put(store.SegmentMeta{Camera: cam, Start: start, End: start.Add(4 * time.Second), EpochStart: base}, []byte{byte(i), 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	hold := &policy.Request{ID: "h1", Action: policy.ActionHold, Cameras: []string{cam}, From: base.Add(8 * time.Second), To: base.Add(16 * time.Second),
		Until: time.Now().Add(time.Hour), ApprovedAt: base.Add(time.Hour), Purpose: "incident"}
	st := &policy.State{
		Cameras:  map[string]*policy.Camera{cam: {Site: "praha-1", Name: "door", Retention: time.Hour}},
		Requests: map[string]*policy.Request{"h1": hold},
	}
	p := nodetest.NewPolicy(st)
	j := &nodetest.Journal{}
	d := Deps{Name: "store", Policy: p, Audit: j, Logf: t.Logf}

	RetainStore(d, s)
	left, _ := s.Segments(cam, base, base.Add(time.Minute))
	var starts []time.Duration
	for _, m := range left {
		starts = append(starts, m.Start.Sub(base))
	}
	if want := []time.Duration{8 * time.Second, 12 * time.Second}; !slices.Equal(starts, want) {
		t.Fatalf("after retention under the hold: segments at %v, want the held %v", starts, want)
	}
	if _, err := s.Epoch(cam, base); err != nil {
		t.Fatalf("the held segments' epoch record: %v", err)
	}

	// The hold ends: retention applies again.
	ended := *hold
	ended.Until = time.Now().Add(-time.Second)
	p.Set(&policy.State{Cameras: st.Cameras, Requests: map[string]*policy.Request{"h1": &ended}})
	RetainStore(d, s)
	if left, _ := s.Segments(cam, base, base.Add(time.Minute)); len(left) != 0 {
		t.Fatalf("after the hold ended: %d segments left", len(left))
	}
}
