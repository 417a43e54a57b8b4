package erasure

import (
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// BenchmarkErasureCameraHour: one camera-hour (900 segments of 4 s, 60
// epoch records of a minute) on a store and two datacenters, each with its
// own media store and eraser; timed from the policy change that carries
// the last approval to the three nodes' signed receipts. Segments are
// 256 KiB (a 0.5 Mbit/s stream) to keep the run's disk use small: the
// work is per file and per index entry, not per byte.
func BenchmarkErasureCameraHour(b *testing.B) {
	const segs, size = 900, 256 << 10
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for range b.N {
		b.StopTimer()
		f := newFixture(b)
		st := f.with()
		p := nodetest.NewPolicy(st)
		nodes := []string{"store", "dc-a", "dc-b"}
		erasers := map[string]*Eraser{}
		for _, name := range nodes {
			s, err := store.Open(b.TempDir(), store.Options{MinFree: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := range segs {
				start := at(4 * i)
				ep := base.Add(start.Sub(base) / time.Minute * time.Minute)
				if i%15 == 0 {
					if err := s.PutEpoch(cam, ep, ep.Add(time.Minute), []byte("record")); err != nil {
						b.Fatal(err)
					}
				}
				data[0], data[1] = byte(i), byte(i>>8)
				if err := s.Put(store.SegmentMeta{Camera: cam, Start: start, End: start.Add(4 * time.Second), EpochStart: ep}, data); err != nil {
					b.Fatal(err)
				}
			}
			e, err := Start(Deps{Name: name, Dir: b.TempDir(), Policy: p, Audit: &nodetest.Journal{}, Logf: func(string, ...any) {},
				Self: func(*policy.State) string { return name }, Custody: f.signers[name], Media: func() *store.Store { return s }})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			erasers[name] = e
		}
		r := erasureOf("e-1", base, at(3600), cam)
		b.StartTimer()
		start := time.Now()
		p.Set(f.with(r))
		for _, name := range nodes {
			for {
				if rb, ok := erasers[name].Receipt("e-1"); ok {
					rec, err := Open(f.with(r), name, "e-1", rb)
					if err != nil || rec.State != keys.ErasureDone || rec.Cameras[0].Segments != segs {
						b.Fatalf("%s: %+v %v", name, rec, err)
					}
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/camera-hour")
		b.ReportMetric(0, "ns/op")
	}
}
