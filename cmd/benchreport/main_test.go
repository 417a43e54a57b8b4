package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/custos-cctv/custos/e2e/bench
cpu: Some CPU
BenchmarkBaselineTCPLoopback-2             	   97668	     30751 ns/op	2131.16 MB/s	     17049 Mbit/s
BenchmarkOnlyMbit-2                        	   10	     30751 ns/op	     900 Mbit/s	     11 widgets/s
BenchmarkOnlyMbit-2                        	   10	     30751 ns/op	     950 Mbit/s	     13 widgets/s
BenchmarkBaselineWireguardNetstackTCP-2    	    5144	   1511263 ns/op	  43.37 MB/s	       346.9 Mbit/s
BenchmarkBaselineWireguardNetstackTCP-2    	    5000	   1611263 ns/op	  40.00 MB/s	       320.0 Mbit/s
BenchmarkBaselineWireguardNetstackTCP-2    	    5300	   1411263 ns/op	  50.00 MB/s	       400.0 Mbit/s
BenchmarkMeshTCP-8                         	    5144	   1511263 ns/op	  45.00 MB/s	       360.0 Mbit/s
BenchmarkMeshTCP-8                         	    2009/01/01 log line that split the result
     5144	   1511263 ns/op	  55.00 MB/s	       440.0 Mbit/s	  12 B/op	  3 allocs/op
--- BENCH: BenchmarkMeshTCP-8
    baseline_test.go:179: some log
BenchmarkBroken-2   	--- FAIL: BenchmarkBroken-2
    x_test.go:1: boom
   1	2 ns/op
PASS
ok  	github.com/custos-cctv/custos/e2e/bench	42.1s
`

func TestParse(t *testing.T) {
	res, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 8 {
		t.Fatalf("got %d results, want 8: %+v", len(res), res)
	}
	first := res[0]
	if first.Name != "BaselineTCPLoopback" || first.Iters != 97668 ||
		first.Metrics["MB/s"] != 2131.16 || first.Metrics["Mbit/s"] != 17049 || first.Metrics["ns/op"] != 30751 {
		t.Errorf("first result = %+v", first)
	}
	split := res[7]
	if split.Name != "MeshTCP" || split.Iters != 5144 || split.Metrics["MB/s"] != 55 || split.Metrics["allocs/op"] != 3 {
		t.Errorf("split result = %+v", split)
	}
	for _, r := range res {
		if r.Name == "Broken" {
			t.Errorf("failed benchmark parsed as result: %+v", r)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("Median modified its input: %v", tc.in)
			}
		}
	}
}

func TestSummarizeAndReport(t *testing.T) {
	res, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	sums := Summarize(res)
	if len(sums) != 4 {
		t.Fatalf("got %d groups, want 4: %+v", len(sums), sums)
	}
	if got, ok := sums[1].Mbits(); !ok || got != 925 {
		t.Errorf("OnlyMbit: Mbits() = %v, %v; want 925 from the custom metric", got, ok)
	}
	wg := sums[2]
	if wg.Name != "BaselineWireguardNetstackTCP" || wg.Runs != 3 {
		t.Fatalf("group 1 = %+v", wg)
	}
	if got, _ := wg.Mbits(); got != 43.37*8 {
		t.Errorf("median Mbit/s = %v, want %v", got, 43.37*8)
	}
	if got := wg.Medians["Mbit/s"]; got != 346.9 {
		t.Errorf("median custom Mbit/s = %v, want 346.9", got)
	}

	var out bytes.Buffer
	var ratios ratioFlags
	if err := ratios.Set("MeshTCP=BenchmarkBaselineWireguardNetstackTCP"); err != nil {
		t.Fatal(err)
	}
	if err := Report(&out, sums, ratios); err != nil {
		t.Fatal(err)
	}
	// MeshTCP median MB/s = 50, baseline 43.37: 50/43.37 = 1.15.
	if !strings.Contains(out.String(), "MeshTCP / BaselineWireguardNetstackTCP = 1.15x") {
		t.Errorf("report lacks ratio line:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "12 widgets/s") {
		t.Errorf("report lacks custom metric median:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())

	if err := Report(&out, sums, []Ratio{{Num: "Nope", Den: "MeshTCP"}}); err == nil {
		t.Error("missing ratio benchmark: no error")
	}
}

// A ratio of a named metric (latency), with the difference beside it.
func TestMetricRatio(t *testing.T) {
	sums := []Summary{
		{Name: "PolicyFailover", Runs: 5, Medians: map[string]float64{"failover-ms": 2100}},
		{Name: "PlainRaftFailover", Runs: 5, Medians: map[string]float64{"failover-ms": 2000}},
	}
	var ratios ratioFlags
	if err := ratios.Set("PolicyFailover=PlainRaftFailover:failover-ms"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Report(&out, sums, ratios); err != nil {
		t.Fatal(err)
	}
	if want := "PolicyFailover / PlainRaftFailover = 1.05x (failover-ms 2100 vs 2000, +100)"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
	if err := Report(&out, sums, []Ratio{{Num: "PolicyFailover", Den: "PlainRaftFailover", Unit: "p50-ms"}}); err == nil {
		t.Error("ratio of a metric neither reports: no error")
	}
}

func TestNoInput(t *testing.T) {
	res, err := Parse(strings.NewReader("PASS\nok  \tpkg\t0.1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Report(new(bytes.Buffer), Summarize(res), nil); err == nil || !strings.Contains(err.Error(), "no benchmark result lines") {
		t.Errorf("Report on empty input: err = %v", err)
	}
}

func TestRatioNameWithEquals(t *testing.T) {
	var ratios ratioFlags
	if err := ratios.Set("LiveLatency/viewers=10=LiveLatencyBaseline:p50-ms"); err != nil {
		t.Fatal(err)
	}
	if want := (Ratio{"LiveLatency/viewers=10", "LiveLatencyBaseline", "p50-ms"}); ratios[0] != want {
		t.Errorf("got %+v, want %+v", ratios[0], want)
	}
	if err := ratios.Set("NoBaseline"); err == nil {
		t.Error("a ratio without a baseline was accepted")
	}
}

func TestRatioBothNamesWithEquals(t *testing.T) {
	var ratios ratioFlags
	if err := ratios.Set("Scale/stores=500=Scale/stores=50:cpu-ms"); err != nil {
		t.Fatal(err)
	}
	sums := Summarize([]Result{
		{Name: "Scale/stores=50", Metrics: map[string]float64{"cpu-ms": 2}},
		{Name: "Scale/stores=500", Metrics: map[string]float64{"cpu-ms": 30}},
	})
	var out strings.Builder
	if err := Report(&out, sums, ratios); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Scale/stores=500 / Scale/stores=50 = 15.00x") {
		t.Errorf("no 15x ratio in:\n%s", out.String())
	}
}
