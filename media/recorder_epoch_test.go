package media

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/store"
)

// TestEpochBoundary records 10 s of footage across 2 s epochs: every
// segment is encrypted to the epoch that holds its start (also when it
// runs on into the next), that epoch's record is in the store before the
// segment is put, only epochs with footage are stored, and a neighbour
// epoch's key does not open a segment.
func TestEpochBoundary(t *testing.T) {
	const length = 2 * time.Second
	// Half a second before a boundary, so segments straddle epochs.
	base := keys.EpochStart(time.Now(), length).Add(length - 500*time.Millisecond)
	var mu sync.Mutex
	var checked int
	r := newRig(t, rigOpts{base: base, config: func(c *RecorderConfig) {
		c.EpochLength = length
		c.Now = func() time.Time { return base } // EpochKeys makes keys around the footage's time
	}})
	r.rec.hookBeforePut = func(m store.SegmentMeta) error {
		// On the writer goroutine, just before Put: the record must be stored.
		eps, err := r.st.Epochs(testCamera, m.Start, m.Start.Add(time.Nanosecond))
		if err != nil || len(eps) != 1 || !eps[0].Start.Equal(m.EpochStart) {
			t.Errorf("before putting segment %s (epoch %s) the store holds epochs %+v, %v", m.Start, m.EpochStart, eps, err)
		}
		mu.Lock()
		checked++
		mu.Unlock()
		return nil
	}
	r.record(clip.Frames)

	segs := decryptDC(t, r.st)
	if len(segs) != clip.Frames/clip.GOP || checked != len(segs) {
		t.Fatalf("%d segments stored, %d checked before Put; want %d", len(segs), checked, clip.Frames/clip.GOP)
	}
	withFootage := map[time.Time]bool{}
	for _, s := range segs {
		want := keys.EpochStart(s.meta.Start, length)
		if !s.meta.EpochStart.Equal(want) || !s.rec.Start.Equal(want) || !s.rec.End.Equal(want.Add(length)) {
			t.Errorf("segment %s: epoch %s, record %s–%s; want the epoch from %s", s.meta.Start, s.meta.EpochStart, s.rec.Start, s.rec.End, want)
		}
		withFootage[want] = true
	}
	// base is 1.5 s into an epoch; 1 s segments from there start in 6 epochs.
	if len(withFootage) != 6 {
		t.Errorf("segments in %d epochs, want 6", len(withFootage))
	}
	eps, err := r.st.Epochs(testCamera, allFrom, allTo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		if !withFootage[e.Start] {
			t.Errorf("epoch record %s stored without any segment (a restart would conflict with it)", e.Start)
		}
	}
	if len(eps) != len(withFootage) {
		t.Errorf("%d epoch records stored, want %d", len(eps), len(withFootage))
	}
	if st := r.rec.Stats(); st.EpochsMade < uint64(len(eps)) || st.Epochs != len(eps) {
		t.Errorf("Stats: %d epochs made, %d stored; want at least %d made", st.EpochsMade, st.Epochs, len(eps))
	}

	// A neighbour's key refuses.
	first, second := segs[0], segs[1]
	if first.rec.Fingerprint == second.rec.Fingerprint {
		t.Fatal("the first two segments share an epoch key")
	}
	dcA, dcB := dcKeys(t)
	ct := storedCiphertext(t, r.st, second.meta)
	if _, err := keys.DecryptSegmentAsCustodians(first.rec, ct, dcA, dcB); !errors.Is(err, keys.ErrWrongKey) {
		t.Errorf("decrypting epoch %s's segment with epoch %s's key: %v, want ErrWrongKey", second.rec.Start, first.rec.Start, err)
	}
}
