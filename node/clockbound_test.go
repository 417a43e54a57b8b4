package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// readFloor is the time persisted in dir's clock-floor (zero if none).
func readFloor(t *testing.T, dir string) time.Time {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, clockFloorFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A lone voter (a single-voter federation's leader) answering the future
// neither moves the anchor nor the floor, so no window ends early, not even
// after a restart; the alarm is raised and clears when it answers right.
func TestClockLoneVoterCannotMoveFloor(t *testing.T) {
	for _, lie := range []time.Duration{time.Hour, 10 * 365 * 24 * time.Hour, -time.Hour} {
		t.Run(lie.String(), func(t *testing.T) {
			dir := t.TempDir()
			var w skewedWall
			c := newTrustedClock(dir, w.now)
			window := policy.Window{From: time.Now().Add(-time.Minute), Until: time.Now().Add(time.Minute)}

			// Before any right answer: nothing to follow from but the lie.
			if followed, _ := c.observe(time.Now().Add(lie), time.Now(), 1); followed {
				t.Errorf("a lone answer %v off was followed", lie)
			}
			if f := readFloor(t, dir); !f.IsZero() {
				t.Fatalf("a lone answer %v off wrote the floor %v", lie, f)
			}
			if now := c.Now(); !near(now, time.Now(), time.Second) || !window.Contains(now) {
				t.Fatalf("after a lone answer %v off: decision time %v, want the true time", lie, now)
			}
			if err := c.Fresh(); !errors.Is(err, errClockSkew) || !strings.Contains(err.Error(), "not followed") {
				t.Errorf("after a lone answer %v off: %v, want the alarm", lie, err)
			}

			// Right, then lying: the anchor and the floor stay right.
			c.observe(time.Now(), time.Now(), 1)
			if err := c.Fresh(); err != nil {
				t.Errorf("after a right answer: %v", err)
			}
			for range 3 {
				c.written = time.Time{} // the floor would be written now
				c.observe(time.Now().Add(lie), time.Now(), 1)
			}
			if f := readFloor(t, dir); !near(f, time.Now(), time.Second) {
				t.Errorf("a lone answer %v off moved the floor to %v", lie, f)
			}
			if now := c.Now(); !near(now, time.Now(), time.Second) || !window.Contains(now) {
				t.Errorf("a lone answer %v off: decision time %v, want the true time", lie, now)
			}
			err := c.Fresh()
			if !errors.Is(err, errClockSkew) || !strings.Contains(err.Error(), "not followed") {
				t.Errorf("a lone answer %v off: %v, want the alarm", lie, err)
			}
			if d, ok := c.Skew(); !ok || !near(time.Now().Add(d), time.Now().Add(-lie), time.Second) {
				t.Errorf("skew %v %v, want %v", d, ok, -lie)
			}
			if lie > 0 && !strings.Contains(err.Error(), "behind the leader's") {
				t.Errorf("the alarm %q does not say the clock is behind the answer", err)
			}

			// A restart keeps the right floor.
			r := newTrustedClock(dir, w.now)
			if now := r.Now(); !near(now, time.Now(), time.Second) {
				t.Errorf("restarted after a lone answer %v off: decision time %v", lie, now)
			}
			// Answering right again clears the alarm.
			c.observe(time.Now(), time.Now(), 1)
			if err := c.Fresh(); err != nil {
				t.Errorf("the lone voter answering right again: %v", err)
			}
		})
	}
}

// Small steps are followed: drift and round-trip error stay inside the
// bound, and a wall clock set back is still caught by the voters' time.
func TestClockFollowsWithinBound(t *testing.T) {
	var w skewedWall
	c := newTrustedClock(t.TempDir(), w.now)
	c.observe(time.Now(), time.Now(), 1)
	if followed, _ := c.observe(time.Now().Add(20*time.Second), time.Now(), 1); !followed {
		t.Fatal("a 20 s step was not followed")
	}
	if now := c.Now(); !near(now, time.Now().Add(20*time.Second), time.Second) {
		t.Errorf("decision time %v after a 20 s step", now)
	}
	w.set(-time.Hour)
	if followed, _ := c.observe(time.Now(), time.Now(), 1); !followed {
		t.Fatal("the right time, with this node's wall set back, was not followed")
	}
	if now := c.Now(); !near(now, time.Now(), time.Second) {
		t.Errorf("wall set back: decision time %v, want the true time", now)
	}
	if err := c.Fresh(); err == nil || !strings.Contains(err.Error(), "behind the leader's") || strings.Contains(err.Error(), "not followed") {
		t.Errorf("wall set back: %v", err)
	}
}

// One lying voter among several is outvoted: the median of a majority's
// answers is followed; too few agreeing answers move nothing.
func TestClockVotersOutvoteALiar(t *testing.T) {
	now := time.Now()
	s := func(name string, off time.Duration) voterSample {
		return voterSample{name: name, t: now.Add(off), at: now}
	}
	decade := 10 * 365 * 24 * time.Hour
	for _, tc := range []struct {
		name     string
		voters   int
		samples  []voterSample
		ok       bool
		agreeing int
		outliers string
	}{
		{"liar leader of 3", 3, []voterSample{s("dc-a", time.Hour), s("dc-b", 0), s("witness", 20*time.Millisecond)}, true, 2, "dc-a (1h0m0s ahead of the median)"},
		{"liar a decade ahead of 3", 3, []voterSample{s("dc-b", 0), s("dc-a", decade), s("witness", -10*time.Millisecond)}, true, 2, "dc-a"},
		{"liar behind of 3", 3, []voterSample{s("dc-a", -time.Hour), s("dc-b", 0), s("witness", 0)}, true, 2, "dc-a (1h0m0s behind the median)"},
		{"two liars of 5", 5, []voterSample{s("a", time.Hour), s("b", decade), s("c", 0), s("d", time.Second), s("e", -time.Second)}, true, 3, "a ("},
		{"liar of 4", 4, []voterSample{s("a", time.Hour), s("b", 0), s("c", 0), s("d", 0)}, true, 3, "a ("},
		{"liar and one right of 3", 3, []voterSample{s("dc-a", time.Hour), s("dc-b", 0)}, false, 1, "dc-"},
		{"liar and one right of 2", 2, []voterSample{s("dc-a", time.Hour), s("dc-b", 0)}, false, 1, "dc-"},
		{"one of 3", 3, []voterSample{s("dc-b", 0)}, false, 1, ""},
		{"lone voter", 1, []voterSample{s("dc-a", time.Hour)}, true, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, agreeing, outliers, ok := agreeOn(tc.samples, tc.voters, now)
			if ok != tc.ok || agreeing != tc.agreeing {
				t.Fatalf("agreeOn: %v agreeing %d ok %v; want agreeing %d ok %v", got, agreeing, ok, tc.agreeing, tc.ok)
			}
			if o := strings.Join(outliers, ", "); !strings.Contains(o, tc.outliers) || (tc.outliers == "") != (o == "") {
				t.Errorf("outliers %q, want %q", o, tc.outliers)
			}
			if ok && tc.voters > 1 && !near(got, now, time.Second) {
				t.Errorf("the voters' time %v, want the honest majority's %v", got, now)
			}
			if ok && tc.voters > 1 {
				dir := t.TempDir()
				c := newTrustedClock(dir, time.Now)
				if followed, _ := c.observe(got, now, agreeing); !followed {
					t.Fatal("a majority's time was not followed")
				}
				if f := readFloor(t, dir); !near(f, time.Now(), time.Second) {
					t.Errorf("floor %v after the majority's time", f)
				}
			}
		})
	}
}

// A majority of two or more voters is followed beyond the bound: a node
// restarted after an hour down with its wall set back an hour ends windows
// on time, and a floor written from a lie before is dropped, on disk too.
func TestClockMajorityStepsBeyondBound(t *testing.T) {
	dir := t.TempDir()
	writeFileAtomic(filepath.Join(dir, clockFloorFile), []byte(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)+"\n"))
	var w skewedWall
	w.set(-time.Hour)
	c := newTrustedClock(dir, w.now)
	if followed, _ := c.observe(time.Now(), time.Now(), 1); followed {
		t.Fatal("a lone voter moved the clock an hour")
	}
	if err := c.Fresh(); err == nil || !strings.Contains(err.Error(), "behind the leader's") {
		t.Errorf("a node an hour behind its lone voter: %v", err)
	}
	if followed, _ := c.observe(time.Now(), time.Now(), 2); !followed {
		t.Fatal("a majority of two was not followed")
	}
	if now := c.Now(); !near(now, time.Now(), time.Second) {
		t.Errorf("after the majority's time: decision time %v", now)
	}

	dir = t.TempDir()
	writeFileAtomic(filepath.Join(dir, clockFloorFile), []byte(time.Now().Add(10*365*24*time.Hour).UTC().Format(time.RFC3339Nano)+"\n"))
	c = newTrustedClock(dir, time.Now)
	c.observe(time.Now(), time.Now(), 1)
	if err := c.Fresh(); err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("a floor a decade ahead of the lone voter: %v", err)
	}
	c.observe(time.Now(), time.Now(), 3)
	if now := c.Now(); !near(now, time.Now(), time.Second) {
		t.Errorf("a floor a decade ahead, then a majority's time: decision time %v", now)
	}
	if f := readFloor(t, dir); !near(f, time.Now(), time.Second) {
		t.Errorf("the floor on disk is still %v", f)
	}
	if err := c.Fresh(); err != nil {
		t.Errorf("after the majority's time: %v", err)
	}
}

// A leader whose time answers are an hour, then a decade, ahead (its wall
// clock, as a lying leader's answers would be) does not move a store's
// clock or floor: the store's windows stay open, its alarm names the
// time it did not follow, and clears once the leader answers right.
func TestClockLyingLeaderCannotExpireWindows(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var lw skewedWall
	f := foundAcmeWith(t, ctx, func(c *Config) { c.wall = lw.now })
	store := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"})
	waitTrue(t, 30*time.Second, "the store to hear the leader's time", func() bool { _, ok := store.clock.Skew(); return ok })
	window := policy.Window{From: time.Now().Add(-time.Minute), Until: time.Now().Add(3 * time.Minute)}
	for _, lie := range []time.Duration{time.Hour, 10 * 365 * 24 * time.Hour} {
		lw.set(lie)
		waitTrue(t, 2*clockAsk+5*time.Second, "the store's alarm on the leader's time", func() bool {
			s, err := store.Status()
			return err == nil && s.ClockAlarm != "" && s.ClockSkewSeconds != nil && *s.ClockSkewSeconds < -(lie-time.Minute).Seconds()
		})
		if now := store.now(); !near(now, time.Now(), 2*time.Second) || !window.Contains(now) {
			t.Errorf("the leader %v ahead: the store's decision time %v, want the true time", lie, now)
		}
		if fl := readFloor(t, store.cfg.Dir); fl.After(time.Now().Add(2 * time.Second)) {
			t.Errorf("the leader %v ahead: the store's floor moved to %v", lie, fl)
		}
		if r := newTrustedClock(store.cfg.Dir, time.Now); !near(r.Now(), time.Now(), 2*time.Second) {
			t.Errorf("the leader %v ahead: a restarted store's decision time %v", lie, r.Now())
		}
		if s, err := store.Status(); err != nil || !strings.Contains(s.ClockAlarm, "behind the leader's") || !strings.Contains(s.ClockAlarm, "not followed") {
			t.Errorf("the leader %v ahead: the store's alarm %q %v", lie, s.ClockAlarm, err)
		}
	}
	lw.set(0)
	waitTrue(t, 2*clockAsk+5*time.Second, "the store's alarm to clear", func() bool {
		s, err := store.Status()
		return err == nil && s.ClockAlarm == ""
	})
}
