package join

import (
	"strings"
	"testing"
	"time"
)

func TestAuditGate(t *testing.T) {
	g := newAuditGate(time.Minute, 1, 3, 4)
	t0 := time.Now()
	if ok, note := g.pass("a", t0); !ok || note != "" {
		t.Fatalf("first a: %v %q", ok, note)
	}
	for range 5 {
		if ok, _ := g.pass("a", t0.Add(time.Second)); ok {
			t.Fatal("a again within the interval passed")
		}
	}
	if ok, _ := g.pass("b", t0); !ok {
		t.Fatal("b refused")
	}
	if ok, _ := g.pass("c", t0); !ok {
		t.Fatal("c refused")
	}
	// Burst spent: d is held back and counted.
	if ok, _ := g.pass("d", t0); ok {
		t.Fatal("d passed over the rate")
	}
	ok, note := g.pass("a", t0.Add(time.Minute+time.Second))
	if !ok || !strings.Contains(note, "5 more like it") || !strings.Contains(note, "1 other refusals") {
		t.Fatalf("a after the interval: %v %q", ok, note)
	}
	// At most maxKeys keys are remembered.
	for i := range 10 {
		g.pass(string(rune('e'+i)), t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	if len(g.seen) > 4 {
		t.Fatalf("gate remembers %d keys", len(g.seen))
	}
}
