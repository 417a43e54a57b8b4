// Command benchreport summarises `go test -bench` output read from stdin.
//
// Results are grouped by benchmark name (the -GOMAXPROCS suffix is
// stripped, so -count=N runs of one benchmark form one group), and for each
// benchmark it prints the median throughput in Mbit/s (derived from MB/s),
// the number of runs, and the median of every other reported metric.
// Optional -ratio flags add "a / b" rows comparing two medians:
//
//	go test -run '^$' -bench . -count=5 ./e2e/bench/ | go run ./cmd/benchreport \
//		-ratio 'MeshTCP=BaselineWireguardNetstackTCP' -ratio 'MeshQUIC=BaselineWireguardNetstackQUIC'
//
// Names may be given with or without the "Benchmark" prefix. -capacity
// flags compare the cameras per store two capacity benchmarks sustained
// (capacity.go).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Result is one benchmark result line.
type Result struct {
	Name    string             // without "Benchmark" prefix and -N suffix
	Iters   int64              // iterations
	Metrics map[string]float64 // unit -> value, e.g. "ns/op", "MB/s", "Mbit/s"
}

// Summary is the per-benchmark aggregate of one or more Results.
type Summary struct {
	Name    string
	Runs    int
	Medians map[string]float64 // unit -> median over the runs reporting it
}

// Mbits returns the median throughput in Mbit/s, derived from MB/s (1 MB =
// 1e6 bytes, as printed by the testing package), or else taken from a
// custom "Mbit/s" metric.
func (s Summary) Mbits() (float64, bool) {
	if v, ok := s.Medians["MB/s"]; ok {
		return v * 8, true
	}
	v, ok := s.Medians["Mbit/s"]
	return v, ok
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// normalizeName strips the "Benchmark" prefix and the -GOMAXPROCS suffix.
func normalizeName(name string) string {
	name = strings.TrimPrefix(name, "Benchmark")
	return procsSuffix.ReplaceAllString(name, "")
}

// Parse reads `go test -bench` output and returns the result lines in input
// order. Non-benchmark lines are ignored. Log output written while a
// benchmark runs can split a result line after its name ("BenchmarkX-2 \t"
// then a log line, then the figures); such a name is remembered and joined
// with the next line that starts with the figures.
func Parse(r io.Reader) ([]Result, error) {
	var (
		results []Result
		pending string // benchmark name printed without figures
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.HasPrefix(fields[0], "Benchmark") && len(fields[0]) > len("Benchmark") {
			if res, ok := parseFigures(fields[0], fields[1:]); ok {
				results = append(results, res)
				pending = ""
				continue
			}
			// "BenchmarkX-2 \t--- FAIL/SKIP": no figures will follow.
			if len(fields) > 1 && fields[1] == "---" {
				pending = ""
				continue
			}
			// "BenchmarkX-2 \t" alone or followed by log text: the figures
			// follow on a later line.
			pending = fields[0]
			continue
		}
		if fields[0] == "---" || fields[0] == "PASS" || fields[0] == "FAIL" || fields[0] == "ok" {
			pending = "" // the pending benchmark failed or was skipped
			continue
		}
		if pending != "" {
			if res, ok := parseFigures(pending, fields); ok {
				results = append(results, res)
				pending = ""
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return results, nil
}

// parseFigures parses "<iters> <value> <unit> [<value> <unit>]...".
func parseFigures(name string, f []string) (Result, bool) {
	if len(f) < 3 || len(f)%2 != 1 {
		return Result{}, false
	}
	iters, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || iters <= 0 {
		return Result{}, false
	}
	m := make(map[string]float64, len(f)/2)
	for i := 1; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		m[f[i+1]] = v
	}
	return Result{Name: normalizeName(name), Iters: iters, Metrics: m}, true
}

// Median returns the median of xs (mean of the middle two for even
// lengths), or 0 for an empty slice.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Summarize groups results by name (in first-appearance order) and takes
// the median of every metric.
func Summarize(results []Result) []Summary {
	var order []string
	runs := map[string]int{}
	values := map[string]map[string][]float64{}
	for _, r := range results {
		if _, ok := values[r.Name]; !ok {
			order = append(order, r.Name)
			values[r.Name] = map[string][]float64{}
		}
		runs[r.Name]++
		for unit, v := range r.Metrics {
			values[r.Name][unit] = append(values[r.Name][unit], v)
		}
	}
	out := make([]Summary, 0, len(order))
	for _, name := range order {
		s := Summary{Name: name, Runs: runs[name], Medians: map[string]float64{}}
		for unit, vs := range values[name] {
			s.Medians[unit] = Median(vs)
		}
		out = append(out, s)
	}
	return out
}

// Ratio is one -ratio flag: Num / Den.
// Unit, if set, names the metric compared (e.g. p50-ms); otherwise the
// throughput in Mbit/s.
type Ratio struct{ Num, Den, Unit string }

type ratioFlags []Ratio

func (r *ratioFlags) String() string {
	var parts []string
	for _, x := range *r {
		p := x.Num + "=" + x.Den
		if x.Unit != "" {
			p += ":" + x.Unit
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

func (r *ratioFlags) Set(s string) error {
	// Sub-benchmark names may hold "=" (LiveLatency/viewers=1): the
	// baseline is after the last one.
	body, unit, _ := strings.Cut(s, ":")
	i := strings.LastIndex(body, "=")
	ok := i >= 0
	num, den := body, ""
	if ok {
		num, den = body[:i], body[i+1:]
	}
	num, den = normalizeName(strings.TrimSpace(num)), normalizeName(strings.TrimSpace(den))
	if !ok || num == "" || den == "" {
		return fmt.Errorf("want NAME=BASELINE[:UNIT], got %q", s)
	}
	*r = append(*r, Ratio{num, den, strings.TrimSpace(unit)})
	return nil
}

// resolve splits a ratio whose both names hold "=" (Scale/stores=500 over
// Scale/stores=50): Set split at the last "=", so when that split names no
// result, the first split that names two results is taken.
func (r Ratio) resolve(byName map[string]Summary) Ratio {
	_, okN := byName[r.Num]
	_, okD := byName[r.Den]
	if okN && okD {
		return r
	}
	full := r.Num + "=" + r.Den
	for i := range len(full) {
		if full[i] != '=' {
			continue
		}
		num, den := full[:i], full[i+1:]
		_, okN := byName[num]
		_, okD := byName[den]
		if okN && okD {
			return Ratio{num, den, r.Unit}
		}
	}
	return r
}

// builtinUnits are printed in their own columns (or not at all). "Mbit/s",
// as reported by e2e/bench, is the same figure as the Mbit/s column.
var builtinUnits = map[string]bool{"ns/op": true, "MB/s": true, "Mbit/s": true, "B/op": true, "allocs/op": true}

// Report writes the summary table and the ratio lines to w.
func Report(w io.Writer, sums []Summary, ratios []Ratio) error {
	if len(sums) == 0 {
		return errors.New("no benchmark result lines in input (run `go test -run '^$' -bench ...` and pipe its output)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tMbit/s (median)\truns\tother metrics (median)")
	byName := map[string]Summary{}
	for _, s := range sums {
		byName[s.Name] = s
		mbit := "-"
		if v, ok := s.Mbits(); ok {
			mbit = formatFloat(v)
		}
		var extra []string
		units := make([]string, 0, len(s.Medians))
		for u := range s.Medians {
			if !builtinUnits[u] {
				units = append(units, u)
			}
		}
		sort.Strings(units)
		for _, u := range units {
			extra = append(extra, formatFloat(s.Medians[u])+" "+u)
		}
		if v, ok := s.Medians["ns/op"]; ok {
			extra = append(extra, formatFloat(v)+" ns/op")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, mbit, s.Runs, strings.Join(extra, "  "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ratios) > 0 {
		fmt.Fprintln(w)
	}
	var missing []string
	for _, r := range ratios {
		r = r.resolve(byName)
		num, okN := byName[r.Num]
		den, okD := byName[r.Den]
		what, get := "MB/s", Summary.Mbits
		if r.Unit != "" {
			what = r.Unit
			get = func(s Summary) (float64, bool) { v, ok := s.Medians[r.Unit]; return v, ok }
		}
		nv, okNV := get(num)
		dv, okDV := get(den)
		switch {
		case !okN || !okNV:
			fmt.Fprintf(w, "%s / %s = ? (no %s result for %s)\n", r.Num, r.Den, what, r.Num)
			missing = append(missing, r.Num)
		case !okD || !okDV || dv == 0:
			fmt.Fprintf(w, "%s / %s = ? (no %s result for %s)\n", r.Num, r.Den, what, r.Den)
			missing = append(missing, r.Den)
		case r.Unit != "":
			fmt.Fprintf(w, "%s / %s = %.2fx (%s %s vs %s, %+.3g)\n", r.Num, r.Den, nv/dv, r.Unit, formatFloat(nv), formatFloat(dv), nv-dv)
		default:
			fmt.Fprintf(w, "%s / %s = %.2fx\n", r.Num, r.Den, nv/dv)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("ratio benchmarks missing from input: %s", strings.Join(missing, ", "))
	}
	return nil
}

func formatFloat(v float64) string {
	if v >= 100 || v <= -100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func main() {
	var ratios, caps ratioFlags
	flag.Var(&ratios, "ratio", "`NAME=BASELINE`: print median Mbit/s of NAME divided by BASELINE (repeatable)")
	flag.Var(&caps, "capacity", "`NAME=BASELINE`: print the cameras per store NAME/cameras=N and BASELINE/cameras=N sustained (largest N with behind 0), and their ratio (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go test -run '^$' -bench ... | benchreport [-ratio NAME=BASELINE]...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	results, err := Parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport: reading input:", err)
		os.Exit(1)
	}
	sums := Summarize(results)
	if err := Report(os.Stdout, sums, ratios); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	if err := ReportCapacity(os.Stdout, sums, caps); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}
