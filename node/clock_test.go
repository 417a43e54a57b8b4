package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/live"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// skewedWall is a wall clock a test moves.
type skewedWall struct{ off atomic.Int64 }

func (s *skewedWall) now() time.Time            { return time.Now().Add(time.Duration(s.off.Load())) }
func (s *skewedWall) set(d time.Duration)       { s.off.Store(int64(d)) }
func near(a, b time.Time, d time.Duration) bool { return a.Sub(b) <= d && b.Sub(a) <= d }

// The decision clock is max(wall, leader + monotonic elapsed, floor): a wall
// clock set back neither moves it back nor passes the freshness check, one
// set forward moves it forward; the floor survives a restart.
func TestTrustedClockMaxRule(t *testing.T) {
	dir := t.TempDir()
	var w skewedWall
	c := newTrustedClock(dir, w.now)
	if _, ok := c.Skew(); ok {
		t.Fatal("a skew estimate before any leader was heard")
	}
	if err := c.Fresh(); err != nil {
		t.Fatalf("fresh before any leader: %v", err)
	}
	c.observe(time.Now(), time.Now(), 1)

	w.set(-time.Hour)
	if now := c.Now(); !near(now, time.Now(), time.Second) {
		t.Errorf("wall set back 1h: decision time %v, want about the true time %v", now, time.Now())
	}
	err := c.Fresh()
	if !errors.Is(err, errClockSkew) || !strings.Contains(err.Error(), "this node's clock is 1h0m0s behind the leader's; fix its time (NTP)") {
		t.Errorf("wall 1h behind: %v", err)
	}

	w.set(time.Hour)
	if now := c.Now(); !near(now, time.Now().Add(time.Hour), time.Second) {
		t.Errorf("wall set forward 1h: decision time %v, want the wall's", now)
	}
	if err := c.Fresh(); err == nil || !strings.Contains(err.Error(), "ahead of the leader's") {
		t.Errorf("wall 1h ahead: %v", err)
	}

	w.set(10 * time.Second) // inside the bound
	if err := c.Fresh(); err != nil {
		t.Errorf("10 s of skew: %v", err)
	}

	// A restart with the clock set back: the persisted leader time is a
	// floor, and the node knows its clock is behind it.
	w.set(-time.Hour)
	r := newTrustedClock(dir, w.now)
	if now := r.Now(); now.Before(time.Now().Add(-2 * time.Second)) {
		t.Errorf("restarted with the wall 1h back: decision time %v is below the persisted leader time", now)
	}
	if err := r.Fresh(); err == nil || !strings.Contains(err.Error(), "behind the leader's") {
		t.Errorf("restarted 1h behind the persisted leader time: %v", err)
	}
	w.set(0)
	if err := r.Fresh(); err != nil {
		t.Errorf("restarted with a right clock: %v", err)
	}
}

// A store's clock set back 1 h mid-window extends nothing: the installer is
// dropped from its peers and desk's live view is cut within 2 s of the true
// end; while skewed it refuses a new live view with the skew error and shows
// the alarm; a clock set forward ends access early; once fixed, access works.
func TestClockSetBackDoesNotExtendAccess(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := foundAcme(t, ctx)
	submit := func(c *policy.Command) {
		t.Helper()
		if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", c)); err != nil || !res.Applied {
			t.Fatalf("%s: %+v %v", c.Kind, res, err)
		}
	}
	cam := "praha-1/entrance"
	submit(&policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:",
		Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})
	var wall skewedWall
	store := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
		c.wall = wall.now
	})
	desk := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleAdminNode, Name: "desk"})
	waitTrue(t, 60*time.Second, "the store to record", func() bool {
		s, err := store.Status()
		return err == nil && s.Recording != nil && len(s.Recording.Cameras) == 1 && s.Recording.Cameras[0].Frames > 30
	})
	waitTrue(t, 30*time.Second, "desk to know the store", func() bool { return hasPeer(desk, "store") })
	waitTrue(t, 30*time.Second, "the store to hear the leader's time", func() bool { _, ok := store.clock.Skew(); return ok })

	// An installer whose window ends soon, and a grant ending with it. A
	// slow join gets a longer window (as in the cut-off test).
	var name string
	var end time.Time
	for window := 30 * time.Second; ; window *= 2 {
		if window > 2*time.Minute {
			t.Fatal("an installer's join took longer than a 2-minute window")
		}
		name = fmt.Sprintf("installer-%d", int(window.Seconds()))
		end = time.Now().Add(window)
		installer := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleInstaller, Name: name, Site: "praha-1",
			Window: policy.Window{From: time.Now().Add(-time.Minute), Until: end}})
		for !(hasPeer(store, name) && hasPeer(installer, "store")) && time.Until(end) > 15*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		if time.Until(end) > 15*time.Second {
			break
		}
	}
	submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk", Window: policy.Window{Until: end}}})
	waitTrue(t, 30*time.Second, "the store to apply the grant", func() bool { return store.Policy().Grants["g-desk"] != nil })

	type ended struct {
		at  time.Time
		res live.Result
		err error
	}
	watch := func() (<-chan ended, *countingWriter) {
		out := &countingWriter{}
		ch := make(chan ended, 1)
		go func() {
			res, err := desk.Live(ctx, cam, out, live.Options{})
			ch <- ended{time.Now(), res, err}
		}()
		return ch, out
	}
	view, out := watch()
	waitTrue(t, 30*time.Second, "desk's live view to flow", func() bool { return out.n.Load() > 0 })

	wall.set(-time.Hour) // mid-window: the store's clock goes back 1 h
	waitTrue(t, 5*time.Second, "the store's clock alarm", func() bool {
		s, err := store.Status()
		return err == nil && strings.Contains(s.ClockAlarm, "behind the leader's") && s.ClockSkewSeconds != nil && *s.ClockSkewSeconds < -3500
	})
	var none bytes.Buffer
	_, err := desk.Live(ctx, cam, &none, live.Options{})
	wantDenied(t, "a new live view while the store's clock is 1h behind", err, "this node's clock is 1h0m0s behind the leader's; fix its time (NTP)")

	select {
	case e := <-view:
		if e.at.Before(end.Add(-time.Second)) || e.at.After(end.Add(2*time.Second)) {
			t.Errorf("live view ended at %v, %v from the window's end; want within 2 s after it (%+v %v)", e.at, e.at.Sub(end), e.res, e.err)
		}
		if !strings.Contains(e.res.Ended, "access ended") {
			t.Errorf("live view ended with %+v %v; want the store to end it", e.res, e.err)
		}
	case <-time.After(time.Until(end) + 30*time.Second):
		t.Fatal("the live view outlived its window by 30 s on a store whose clock was set back")
	}
	waitTrue(t, time.Until(end)+5*time.Second, "the store to drop the installer", func() bool { return !hasPeer(store, name) })
	if late := time.Since(end); late > 2*time.Second+time.Second { // the poll above ticks, so one more second
		t.Errorf("the store dropped the installer %v after its window's end", late)
	}

	// Fixed: a grant without end works again.
	wall.set(0)
	submit(&policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-desk-2", Subject: policy.Subject{Kind: "node", Name: "desk"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: "guard desk", Window: policy.Window{Until: time.Now().Add(30 * time.Minute)}}})
	waitTrue(t, 30*time.Second, "the store to apply the second grant", func() bool { return store.Policy().Grants["g-desk-2"] != nil })
	view, out = watch()
	waitTrue(t, 30*time.Second, "desk's live view to flow after the clock is fixed", func() bool { return out.n.Load() > 0 })

	// Forward 1 h, past the grant's end: access ends early, never later.
	wall.set(time.Hour)
	select {
	case e := <-view:
		if !strings.Contains(e.res.Ended, "access ended") {
			t.Errorf("live view with the clock 1h ahead ended with %+v %v; want the store to end it", e.res, e.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a clock set 1h forward, past the grant's end, did not end the live view")
	}
	_, err = desk.Live(ctx, cam, &none, live.Options{})
	wantDenied(t, "a new live view while the store's clock is 1h ahead", err, "")
	wall.set(0)
	waitTrue(t, 5*time.Second, "the store's alarm to clear", func() bool {
		s, err := store.Status()
		return err == nil && s.ClockAlarm == ""
	})
	view, out = watch()
	waitTrue(t, 30*time.Second, "desk's live view to flow once the clock is right", func() bool { return out.n.Load() > 0 })
	cancel()
	<-view
}

type countingWriter struct{ n atomic.Int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)
