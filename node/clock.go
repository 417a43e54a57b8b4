package node

// The node's clock for access decisions. A store's wall clock may be wrong,
// or set back on purpose by someone who wants a window (a grant's, an
// installer's) to last longer. Every access decision this node makes reads
// n.now(), never time.Now():
//
//	now = max(local wall clock,
//	          voters' time at last contact + monotonic time since,
//	          last voters' time persisted in DIR + monotonic time since start)
//
// so moving the wall clock back never extends a window, and moving it
// forward only ends access earlier. The voters' time is the median of the
// Raft voters' wall times, followed only when a majority of them agree on
// it, and, unless two or more do, only within clockStep of the trusted
// time: one voter, the leader included, cannot move it far (forward would
// end every window on this node early, and stay in the floor). When the
// local wall clock disagrees with the voters' time by more than
// clockAlarmSkew, or the voters' time was too far to follow, the node
// refuses to start new access (n.clockFresh) and raises an alarm in its
// status and metrics; what it already allowed still ends on schedule by
// the max() clock. Audit and log timestamps stay on the wall clock: they
// record what the clock said.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// clockAlarmSkew bounds |local wall − voters' time| before new access is
// refused. NTP keeps healthy clocks within milliseconds and the RTT/2 correction errs
// by less than a mesh round trip, so 30 s is never reached by accident; it
// is well inside maxClockSkew (the 5 min the leader tolerates on a command's
// time), because here a wrong clock decides access, not a log entry's stamp.
const clockAlarmSkew = 30 * time.Second

const (
	// opTime answers a member with this node's wall time (the voters'
	// median is the federation's reference).
	opTime = "time"
	// clockAsk is how often a node asks the voters; clockRetry after too
	// few answered or before the first answer.
	clockAsk   = 10 * time.Second
	clockRetry = time.Second
	// clockFloorFile keeps the last voters' time this node followed. It only
	// ever moves decisions later: a disk whose file is edited back gives no
	// more than the wall clock already does.
	clockFloorFile = "clock-floor"
	// clockFloorEvery bounds how often the floor is written.
	clockFloorEvery = time.Minute
)

// clockStep bounds how far one observation of the voters' time may move
// the anchor and the floor away from this node's trusted time (Now), unless
// two or more voters, a majority, agree on it. Honest clocks on NTP agree to
// milliseconds, the RTT/2 correction errs by under 2 s (answers after a 4 s
// round trip are dropped) and the anchor is refreshed every clockAsk, so an
// honest answer lands far inside it; one that would move the clock by more
// than the skew alarm tolerates is exactly one the alarm reports, so it is
// shown instead of followed. Without this a lone voter answering the future
// would expire every window on this node, and persist it in the floor.
const clockStep = clockAlarmSkew

// errClockSkew marks a refusal because of this node's clock.
var errClockSkew = errors.New("clock skew")

// trustedClock is the node's decision clock.
type trustedClock struct {
	wall func() time.Time // the local wall clock (testclock_on.go may offset it)
	dir  string

	mu sync.Mutex
	// anchor: the voters' wall time at contact (RTT/2-corrected), and the
	// local instant of contact, read only for its monotonic reading. Only
	// followed observations set it.
	leader, at time.Time
	// seen: the last observation of the voters' time, followed or not, and
	// whether it was followed (the skew alarm compares against it).
	seen, seenAt time.Time
	followed     bool
	// floor: the persisted voters' time, and when it was loaded (monotonic).
	floor, floorAt time.Time
	written        time.Time // when the floor was last written (monotonic)
	// warn: voters outvoted or disagreeing, for status (not an alarm: the
	// node goes on with its anchor).
	warn string
}

func newTrustedClock(dir string, wall func() time.Time) *trustedClock {
	// Round(0): wall readings only; elapsed time comes from c.at's and
	// c.floorAt's monotonic readings.
	c := &trustedClock{wall: func() time.Time { return wall().Round(0) }, dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, clockFloorFile)); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b))); err == nil {
			c.floor, c.floorAt = t, time.Now()
		}
	}
	return c
}

// estimates are the followed voters' time now (zero if none since start),
// the persisted floor's (zero if none) and the last observation's, followed
// or not (zero if none).
func (c *trustedClock) estimates() (leader, floor, seen time.Time, followed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.estimatesLocked()
}

func (c *trustedClock) estimatesLocked() (leader, floor, seen time.Time, followed bool) {
	if !c.floor.IsZero() {
		floor = c.floor.Add(time.Since(c.floorAt))
	}
	if !c.leader.IsZero() {
		leader = c.leader.Add(time.Since(c.at))
	}
	if !c.seen.IsZero() {
		seen = c.seen.Add(time.Since(c.seenAt))
	}
	return leader, floor, seen, c.followed
}

// Now is the time access decisions use: never earlier than the wall clock,
// than the voters' time as last followed, nor than the persisted floor.
func (c *trustedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *trustedClock) nowLocked() time.Time {
	t := c.wall()
	leader, floor, _, _ := c.estimatesLocked()
	for _, b := range []time.Time{leader, floor} {
		if b.After(t) {
			t = b
		}
	}
	return t
}

// Skew is local wall − the voters' time as last observed (negative:
// behind), and whether there is an estimate: the voters' since they were
// heard, followed or not; before, only a wall clock behind the persisted
// floor is known to be wrong (the floor says the time is at least this, not
// what it is).
func (c *trustedClock) Skew() (time.Duration, bool) {
	w := c.wall()
	_, floor, seen, _ := c.estimates()
	switch {
	case !seen.IsZero():
		return w.Sub(seen), true
	case !floor.IsZero() && w.Before(floor):
		return w.Sub(floor), true
	}
	return 0, false
}

// Fresh refuses new access while the wall clock disagrees with the voters'
// time by more than clockAlarmSkew, or while the last observation of the
// voters' time was too far from the trusted time to be followed.
func (c *trustedClock) Fresh() error {
	d, ok := c.Skew()
	c.mu.Lock()
	now := c.nowLocked()
	_, _, seen, followed := c.estimatesLocked()
	c.mu.Unlock()
	var unfollowed string
	if !seen.IsZero() && !followed {
		unfollowed = fmt.Sprintf("; that time is %s this node's trusted time, more than one voter may move it, so it is not followed: check the voters' clocks too",
			howFar(seen.Sub(now)))
	}
	if ok && (d > clockAlarmSkew || d < -clockAlarmSkew) {
		how := "ahead of"
		if d < 0 {
			how, d = "behind", -d
		}
		return fmt.Errorf("%w: this node's clock is %v %s the leader's; fix its time (NTP); no new access until then%s",
			errClockSkew, d.Round(time.Second), how, unfollowed)
	}
	if s := seen.Sub(now); unfollowed != "" && (s > clockStep || s < -clockStep) {
		return fmt.Errorf("%w: the voters' time is %s this node's trusted time (its %s or an earlier answer), more than one voter may move it, so it is not followed: check the voters' clocks and this node's; no new access until then",
			errClockSkew, howFar(s), clockFloorFile)
	}
	return nil
}

// howFar says d as "1h0m0s ahead of" or "1h0m0s behind".
func howFar(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Second).String() + " behind"
	}
	return d.Round(time.Second).String() + " ahead of"
}

// Warning is what the clock noticed about the voters without acting on it
// (a voter outvoted, voters disagreeing), or "".
func (c *trustedClock) Warning() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.warn
}

// setWarning records w and says whether it changed (to log only changes).
func (c *trustedClock) setWarning(w string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.warn != w
	c.warn = w
	return changed
}

// observe records the voters' time t observed at local instant at, which
// agreeing voters (at least a majority of the configuration's) agree on. It
// is followed — the anchor moves and the floor is written — when it is
// within clockStep of the trusted time, or when two or more voters agree on
// it: no single voter, leader or not, moves this node's clock further. It
// returns whether it was followed and how far t is from the trusted time.
func (c *trustedClock) observe(t, at time.Time, agreeing int) (bool, time.Duration) {
	t = t.Round(0)
	c.mu.Lock()
	step := t.Add(time.Since(at)).Sub(c.nowLocked())
	follow := agreeing >= 2 || (step <= clockStep && step >= -clockStep)
	c.seen, c.seenAt, c.followed = t, at, follow
	if !follow {
		c.mu.Unlock()
		return false, step
	}
	c.leader, c.at = t, at
	write := c.written.IsZero() || time.Since(c.written) >= clockFloorEvery
	if !c.floor.IsZero() && c.floor.Add(time.Since(c.floorAt)).Sub(t.Add(time.Since(at))) > clockStep {
		// A majority says the floor is wrong (written from a wrong answer
		// before): drop it now, and on disk, rather than keep it forever.
		c.floor, write = time.Time{}, true
	}
	if write {
		c.written = time.Now()
	}
	c.mu.Unlock()
	if write && c.dir != "" {
		writeFileAtomic(filepath.Join(c.dir, clockFloorFile), []byte(t.UTC().Format(time.RFC3339Nano)+"\n"))
	}
	return true, step
}

func writeFileAtomic(path string, b []byte) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return
	}
	os.Rename(tmp, path)
}

// now is the node's decision clock.
func (n *Node) now() time.Time { return n.clock.Now() }

// wallNow is the node's wall clock (offset by testclock-offset in test
// builds): for what the node stamps and signs.
func (n *Node) wallNow() time.Time { return n.clock.wall() }

// clockFresh refuses new access while this node's clock is skewed.
func (n *Node) clockFresh() error { return n.clock.Fresh() }

type timeAnswer struct {
	Time time.Time `json:"time"`
}

// handleTime answers a live member with this node's wall time.
func (n *Node) handleTime(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	st := n.policy.State()
	if name := st.NameOfKey(peer.String()); name == "" || !policy.Member(st, name, n.now()) {
		return rpc.Deny("you are not a live member of the federation")
	}
	b, err := json.Marshal(timeAnswer{Time: n.wallNow()})
	if err != nil {
		return err
	}
	return w.WriteFrame(b)
}

// followVoterClocks keeps the clock's anchor on the voters' time.
func (n *Node) followVoterClocks() {
	defer n.wg.Done()
	wait := time.Duration(0)
	for {
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
		if err := n.askVoterTimes(); err != nil {
			wait = clockRetry
			continue
		}
		wait = clockAsk
	}
}

// voterSample is one voter's answer: its wall time t (RTT/2-corrected) at
// local instant at (read for its monotonic reading).
type voterSample struct {
	name  string
	t, at time.Time
}

// agreeOn is the voters' time at local instant now: the median of the
// answers (of an even count, the earlier middle one: an earlier time ends
// nothing early), and how many answers lie within clockStep of it. ok when
// those are a majority of the configuration's voters, so that no minority
// of voters, leader or not, decides it. outliers are the other answers'
// voters with their distance from the median.
func agreeOn(samples []voterSample, voters int, now time.Time) (t time.Time, agreeing int, outliers []string, ok bool) {
	if len(samples) == 0 {
		return time.Time{}, 0, nil, false
	}
	est := make([]time.Time, len(samples))
	for i, s := range samples {
		est[i] = s.t.Add(now.Sub(s.at))
	}
	sorted := slices.Clone(est)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	t = sorted[(len(sorted)-1)/2]
	for i, e := range est {
		if d := e.Sub(t); d <= clockStep && d >= -clockStep {
			agreeing++
		} else {
			outliers = append(outliers, fmt.Sprintf("%s (%s the median)", samples[i].name, howFar(d)))
		}
	}
	return t, agreeing, outliers, agreeing >= voters/2+1
}

// askVoterTimes asks every voter in the Raft configuration for its wall
// time once, and offers the clock their median if a majority agree on it.
func (n *Node) askVoterTimes() error {
	if n.raft == nil {
		return errors.New("no consensus")
	}
	self := n.mesh.PublicKey().String()
	var ids []string
	for _, m := range n.raft.Status().Members {
		if m.Voter {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return errors.New("no voters known")
	}
	st := n.policy.State()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	samples := make([]voterSample, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		name := st.NameOfKey(id)
		if id == self {
			samples[i] = voterSample{name: n.cfg.Name, t: n.wallNow(), at: time.Now()}
			continue
		}
		if name == "" {
			continue // not in this replica yet
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if t, at, err := n.askTime(ctx, st, name); err == nil {
				samples[i] = voterSample{name: name, t: t, at: at}
			}
		}()
	}
	wg.Wait()
	samples = slices.DeleteFunc(samples, func(s voterSample) bool { return s.t.IsZero() })
	if len(samples) < len(ids)/2+1 {
		return fmt.Errorf("%d of %d voters answered the time; a majority is needed", len(samples), len(ids))
	}
	now := time.Now()
	t, agreeing, outliers, ok := agreeOn(samples, len(ids), now)
	var warn []string
	if !ok {
		warn = append(warn, fmt.Sprintf("the voters' times disagree: %d of %d within %v of their median; not followed", agreeing, len(ids), clockStep))
	} else if followed, step := n.clock.observe(t, now, agreeing); !followed {
		warn = append(warn, fmt.Sprintf("the voters' time is %s this node's trusted time, more than the %v one voter may move it; not followed",
			howFar(step), clockStep))
	}
	if len(outliers) > 0 {
		warn = append(warn, "outvoted on the time: "+strings.Join(outliers, ", "))
	}
	if w := strings.Join(warn, "; "); n.clock.setWarning(w) && w != "" {
		n.logf("node: clock: %s", w)
	}
	return nil
}

// askTime asks one voter for its wall time: the answer corrected by half
// the round trip, and the local instant it was received.
func (n *Node) askTime(ctx context.Context, st *policy.State, name string) (time.Time, time.Time, error) {
	t0 := time.Now()
	rd, conn, err := n.callNode(ctx, st, name, opTime, nil)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	defer conn.Close()
	b, err := rd.Next()
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	t1 := time.Now()
	var a timeAnswer
	if err := json.Unmarshal(b, &a); err != nil || a.Time.IsZero() {
		return time.Time{}, time.Time{}, fmt.Errorf("%s's time answer: %v", name, err)
	}
	rtt := t1.Sub(t0)
	if rtt > 4*time.Second {
		return time.Time{}, time.Time{}, fmt.Errorf("%s's time answer came too late to trust", name)
	}
	return a.Time.Add(rtt / 2), t1, nil
}
