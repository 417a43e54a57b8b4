package main

import (
	"bytes"
	"strings"
	"testing"
)

// The cameras per store a capacity benchmark sustained is its largest
// cameras=N whose median behind is 0, compared between two benchmarks.
func TestCapacity(t *testing.T) {
	in := `BenchmarkStoreCapacity/cameras=100-2    1  20000000000 ns/op  0 behind  25.0 fps/camera
BenchmarkStoreCapacity/cameras=150-2    1  20000000000 ns/op  0 behind  25.0 fps/camera
BenchmarkStoreCapacity/cameras=200-2    1  20000000000 ns/op  1 behind  21.0 fps/camera
BenchmarkStoreCapacityH265/cameras=100-2    1  20000000000 ns/op  0 behind  25.0 fps/camera
BenchmarkStoreCapacityH265/cameras=150-2    1  20000000000 ns/op  1 behind  23.0 fps/camera
BenchmarkStoreCapacityH265/cameras=200-2    1  20000000000 ns/op  1 behind  20.0 fps/camera
`
	results, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var caps ratioFlags
	if err := caps.Set("StoreCapacityH265=StoreCapacity"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ReportCapacity(&out, Summarize(results), caps); err != nil {
		t.Fatal(err)
	}
	if want := "StoreCapacityH265 / StoreCapacity = 0.67x (cameras per store: 100 vs 150)"; !strings.Contains(out.String(), want) {
		t.Errorf("report %q lacks %q", out.String(), want)
	}
	out.Reset()
	if err := ReportCapacity(&out, Summarize(results[:2]), []Ratio{{Num: "StoreCapacity", Den: "StoreCapacity"}}); err != nil {
		t.Fatal(err)
	}
	if want := "cameras per store: ≥150 (every count tried kept up)"; !strings.Contains(out.String(), want) {
		t.Errorf("report %q lacks %q", out.String(), want)
	}
	if err := ReportCapacity(&out, Summarize(results), []Ratio{{Num: "Nope", Den: "StoreCapacity"}}); err == nil {
		t.Error("a missing capacity benchmark: no error")
	}
}
