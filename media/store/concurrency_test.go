package store

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrent writes four cameras from eight goroutines (two per
// camera, racing on the same segments), reads and runs retention at the
// same time; run with -race.
func TestConcurrent(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MinFree: -1})
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for c := range 4 {
		camera := fmt.Sprintf("site-%d/cam", c)
		for range 2 {
			wg.Go(func() {
				for i := range n {
					m := segAt(camera, i)
					if err := ensureEpoch(s, camera, m.EpochStart); err != nil {
						// The other writer of this camera may have won.
						if _, rerr := s.Epoch(camera, m.EpochStart); rerr != nil {
							errs <- err
							return
						}
					}
					if err := s.Put(m, payload(i, 500)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Go(func() {
			for range n {
				segs, err := s.Segments(camera, minTime, maxTime)
				if err != nil {
					errs <- err
					return
				}
				for _, m := range segs {
					// Retention may have removed it meanwhile: ErrNotFound is fine.
					if _, err := s.ReadSegment(m); err != nil && !isNotFound(err) {
						errs <- err
						return
					}
				}
				s.Stats(camera)
				s.Cameras()
				s.Health()
			}
		})
		wg.Go(func() {
			for i := range n / 5 {
				if _, err := s.DeleteBefore(camera, segAt(camera, i*2).Start); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkConsistent(t, s)
	for c := range 4 {
		segs, _ := s.Segments(fmt.Sprintf("site-%d/cam", c), minTime, maxTime)
		if len(segs) == 0 || segIndex(segs[len(segs)-1]) != n-1 {
			t.Errorf("camera %d: %d segments", c, len(segs))
		}
	}
}
