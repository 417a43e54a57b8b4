package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNetnsHarness measures the harness itself with UDP probes between two
// namespaces: a clean link loses nothing; an impaired one adds about the
// configured delay each way and drops about the configured share each way;
// a partition stops everything and heal restores the link as it was.
func TestNetnsHarness(t *testing.T) {
	l := newLab(t)
	a, b := l.add("a"), l.add("b")
	l.startHelper(b, "echo", "ECHO_LISTEN=0.0.0.0:9000")
	to := "PROBE_TO=" + b.addr.String() + ":9000"

	base := l.probe(a, to, 200, 2*time.Millisecond)
	t.Logf("clean link: %+v", base)
	if base.Received < 198 {
		t.Fatalf("clean link lost %d of %d probes", base.Sent-base.Received, base.Sent)
	}

	const delay, loss = 50 * time.Millisecond, 5.0
	l.impair(a, delay, loss)
	imp := l.probe(a, to, 600, 5*time.Millisecond)
	fwd := 100 * float64(imp.Sent-imp.Echoed) / float64(imp.Sent)
	back := 100 * float64(imp.Echoed-imp.Received) / float64(imp.Echoed)
	added := imp.RTTs - base.RTTs
	t.Logf("impaired link (%s, delay %v and loss %v%% each way): %+v; loss out %.1f%%, back %.1f%%; median RTT +%v",
		a.mode, delay, loss, imp, fwd, back, added)
	if imp.Echoed < 0 {
		t.Fatal("the echo server's count never came back over the impaired link")
	}
	for _, p := range []float64{fwd, back} {
		if p < 1 || p > 15 {
			t.Errorf("measured loss %.1f%% one way, want 1–15%% for %v%% configured", p, loss)
		}
	}
	if added < 2*delay || added > 2*delay+50*time.Millisecond {
		t.Errorf("median round trip grew by %v, want %v (two delays) to %v", added, 2*delay, 2*delay+50*time.Millisecond)
	}
	if imp.RTTMin < 2*delay {
		t.Errorf("a probe came back in %v, faster than two delays of %v", imp.RTTMin, delay)
	}

	// Partitioned while impaired: nothing passes; healed: impaired again.
	l.partition(a)
	if p := l.probe(a, to+" PROBE_NO_COUNT=1", 50, 10*time.Millisecond); p.Received != 0 {
		t.Errorf("partitioned link passed probes: %+v", p)
	}
	l.heal(a)
	if p := l.probe(a, to, 100, 5*time.Millisecond); p.Received < 70 || p.RTTMin < 2*delay {
		t.Errorf("healed impaired link: %+v, want most probes back, each after two delays", p)
	}

	// Cleared: as clean as at first; partition and heal without impairment.
	l.clearImpair(a)
	if p := l.probe(a, to, 200, 2*time.Millisecond); p.Received < 198 || p.RTTs > base.RTTs+10*time.Millisecond {
		t.Errorf("link after clearImpair: %+v, want clean (%+v)", p, base)
	}
	l.partition(a)
	if p := l.probe(a, to+" PROBE_NO_COUNT=1", 50, 10*time.Millisecond); p.Received != 0 {
		t.Errorf("partitioned link passed probes: %+v", p)
	}
	l.heal(a)
	if p := l.probe(a, to, 200, 2*time.Millisecond); p.Received < 198 {
		t.Errorf("healed link: %+v, want clean", p)
	}
}

// startHelper starts this test binary as a helper inside nd's namespace
// and waits for its "ready" line; the helper is killed when the test ends.
func (l *lab) startHelper(nd *labNode, kind string, env ...string) {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := nd.command(context.Background(), self)
	cmd.Env = append(append(os.Environ(), netnsHelperEnv+"="+kind), env...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		l.t.Fatalf("helper %s in %s did not start: %q %s", kind, nd.name, line, errOut.String())
	}
}

// probe runs the prober in nd's namespace to the end and returns its result.
func (l *lab) probe(nd *labNode, env string, count int, interval time.Duration) probeResult {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := nd.command(context.Background(), self)
	cmd.Env = append(append(os.Environ(), strings.Fields(env)...), netnsHelperEnv+"=probe",
		"PROBE_COUNT="+strconv.Itoa(count), "PROBE_INTERVAL="+interval.String())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		l.t.Fatalf("probe from %s: %v\n%s", nd.name, err, errOut.String())
	}
	var res probeResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		l.t.Fatalf("probe from %s: %v: %q", nd.name, err, strings.TrimSpace(out.String()))
	}
	return res
}
