package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Capacity benchmarks (media's BenchmarkStoreCapacity and its H.265
// twin) run sub-benchmarks NAME/cameras=N and report behind=1 when the
// store fell behind at N. A -capacity NAME=BASELINE flag prints how many
// cameras each sustained — the largest N that kept up — and their ratio.

// sustained is the largest camera count of name's cameras=N runs whose
// median behind is 0, whether every count tried kept up (then the real
// capacity may be higher), and whether there were any runs at all.
func sustained(sums []Summary, name string) (n int, all, found bool) {
	all = true
	for _, s := range sums {
		rest, ok := strings.CutPrefix(s.Name, name+"/cameras=")
		if !ok {
			continue
		}
		c, err := strconv.Atoi(rest)
		behind, have := s.Medians["behind"]
		if err != nil || !have {
			continue
		}
		found = true
		if behind == 0 {
			n = max(n, c)
		} else {
			all = false
		}
	}
	return n, all, found
}

// ReportCapacity writes one line per capacity comparison.
func ReportCapacity(w io.Writer, sums []Summary, caps []Ratio) error {
	var missing []string
	desc := func(n int, all bool) string {
		switch {
		case n == 0:
			return "none of the counts tried"
		case all:
			return fmt.Sprintf("≥%d (every count tried kept up)", n)
		}
		return strconv.Itoa(n)
	}
	for _, r := range caps {
		nn, nall, nok := sustained(sums, r.Num)
		dn, dall, dok := sustained(sums, r.Den)
		switch {
		case !nok:
			missing = append(missing, r.Num)
			fmt.Fprintf(w, "%s / %s = ? (no cameras=N runs with a behind metric for %s)\n", r.Num, r.Den, r.Num)
		case !dok:
			missing = append(missing, r.Den)
			fmt.Fprintf(w, "%s / %s = ? (no cameras=N runs with a behind metric for %s)\n", r.Num, r.Den, r.Den)
		case dn == 0:
			fmt.Fprintf(w, "%s / %s = ? (cameras per store: %s vs %s)\n", r.Num, r.Den, desc(nn, nall), desc(dn, dall))
		default:
			fmt.Fprintf(w, "%s / %s = %.2fx (cameras per store: %s vs %s)\n", r.Num, r.Den, float64(nn)/float64(dn), desc(nn, nall), desc(dn, dall))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("capacity benchmarks missing from input: %s", strings.Join(missing, ", "))
	}
	return nil
}
