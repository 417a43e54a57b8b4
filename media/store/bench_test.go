package store

import (
	"testing"
)

// BenchmarkPut stores 500 KB segments, each fsynced with its directory and
// committed to the index, on t.TempDir's file system.
func BenchmarkPut(b *testing.B) {
	s := openT(b, b.TempDir(), Options{MinFree: -1})
	const size = 500_000
	data := payload(0, size)
	b.SetBytes(size)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m := segAt(cam, i)
		if err := ensureEpoch(s, cam, m.EpochStart); err != nil {
			b.Fatal(err)
		}
		data[8], data[9] = byte(i), byte(i>>8) // distinct bytes, distinct hash
		if err := s.Put(m, data); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "segments/s")
}
