package node

// The node's clock for access decisions. A store's wall clock may be wrong,
// or set back on purpose by someone who wants a window (a grant's, an
// installer's) to last longer. Every access decision this node makes reads
// n.now(), never time.Now():
//
//	now = max(local wall clock,
//	          leader's wall time at last contact + monotonic time since,
//	          last leader time persisted in DIR + monotonic time since start)
//
// so moving the wall clock back never extends a window, and moving it
// forward only ends access earlier. When the local wall clock disagrees
// with the estimated leader time by more than clockAlarmSkew the node
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
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// clockAlarmSkew bounds |local wall − leader| before new access is refused.
// NTP keeps healthy clocks within milliseconds and the RTT/2 correction errs
// by less than a mesh round trip, so 30 s is never reached by accident; it
// is well inside maxClockSkew (the 5 min the leader tolerates on a command's
// time), because here a wrong clock decides access, not a log entry's stamp.
const clockAlarmSkew = 30 * time.Second

const (
	// opTime answers a member with this node's wall time (the leader's is
	// the federation's reference).
	opTime = "time"
	// clockAsk is how often a node asks the leader; clockRetry after a
	// failure or before the first answer.
	clockAsk   = 10 * time.Second
	clockRetry = time.Second
	// clockFloorFile keeps the last leader time this node learned. It only
	// ever moves decisions later: a disk whose file is edited back gives no
	// more than the wall clock already does.
	clockFloorFile = "clock-floor"
	// clockFloorEvery bounds how often the floor is written.
	clockFloorEvery = time.Minute
)

// errClockSkew marks a refusal because of this node's clock.
var errClockSkew = errors.New("clock skew")

// trustedClock is the node's decision clock.
type trustedClock struct {
	wall func() time.Time // the local wall clock (testclock_on.go may offset it)
	dir  string

	mu sync.Mutex
	// anchor: the leader's wall time at contact (RTT/2-corrected), and the
	// local instant of contact, read only for its monotonic reading.
	leader, at time.Time
	// floor: the persisted leader time, and when it was loaded (monotonic).
	floor, floorAt time.Time
	written        time.Time // when the floor was last written (monotonic)
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

// estimates are the leader's time now as last heard (zero if never since
// start) and as the persisted floor says (zero if none).
func (c *trustedClock) estimates() (leader, floor time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.floor.IsZero() {
		floor = c.floor.Add(time.Since(c.floorAt))
	}
	if !c.leader.IsZero() {
		leader = c.leader.Add(time.Since(c.at))
	}
	return leader, floor
}

// Now is the time access decisions use: never earlier than the wall clock,
// than what the leader's clock says now, nor than the persisted floor.
func (c *trustedClock) Now() time.Time {
	t := c.wall()
	leader, floor := c.estimates()
	for _, b := range []time.Time{leader, floor} {
		if b.After(t) {
			t = b
		}
	}
	return t
}

// Skew is local wall − estimated leader time (negative: behind), and
// whether there is an estimate: the leader's since it was heard; before,
// only a wall clock behind the persisted floor is known to be wrong (the
// floor says the time is at least this, not what it is).
func (c *trustedClock) Skew() (time.Duration, bool) {
	w := c.wall()
	leader, floor := c.estimates()
	switch {
	case !leader.IsZero():
		return w.Sub(leader), true
	case !floor.IsZero() && w.Before(floor):
		return w.Sub(floor), true
	}
	return 0, false
}

// Fresh refuses new access while the wall clock disagrees with the leader's
// by more than clockAlarmSkew.
func (c *trustedClock) Fresh() error {
	d, ok := c.Skew()
	if !ok || (d <= clockAlarmSkew && d >= -clockAlarmSkew) {
		return nil
	}
	how := "ahead of"
	if d < 0 {
		how, d = "behind", -d
	}
	return fmt.Errorf("%w: this node's clock is %v %s the leader's; fix its time (NTP); no new access until then",
		errClockSkew, d.Round(time.Second), how)
}

// heard records the leader's wall time observed at local instant at.
func (c *trustedClock) heard(leader, at time.Time) {
	c.mu.Lock()
	c.leader, c.at = leader.Round(0), at
	write := c.written.IsZero() || time.Since(c.written) >= clockFloorEvery
	if write {
		c.written = time.Now()
	}
	c.mu.Unlock()
	if write && c.dir != "" {
		writeFileAtomic(filepath.Join(c.dir, clockFloorFile), []byte(leader.UTC().Format(time.RFC3339Nano)+"\n"))
	}
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

// followLeaderClock keeps the clock's anchor on the leader's time.
func (n *Node) followLeaderClock() {
	defer n.wg.Done()
	wait := time.Duration(0)
	for {
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
		if err := n.askLeaderTime(); err != nil {
			wait = clockRetry
			continue
		}
		wait = clockAsk
	}
}

// askLeaderTime asks the leader for its wall time once.
func (n *Node) askLeaderTime() error {
	if n.raft == nil {
		return errors.New("no consensus")
	}
	id := n.raft.Status().LeaderID
	if id == "" {
		return errors.New("no leader known")
	}
	if id == n.mesh.PublicKey().String() {
		now := time.Now()
		n.clock.heard(n.wallNow(), now)
		return nil
	}
	st := n.policy.State()
	name := st.NameOfKey(id)
	if name == "" {
		return errors.New("the leader is not in this replica")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t0 := time.Now()
	rd, conn, err := n.callNode(ctx, st, name, opTime, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	b, err := rd.Next()
	if err != nil {
		return err
	}
	t1 := time.Now()
	var a timeAnswer
	if err := json.Unmarshal(b, &a); err != nil || a.Time.IsZero() {
		return fmt.Errorf("the leader's time answer: %v", err)
	}
	rtt := t1.Sub(t0)
	if rtt > 4*time.Second {
		return errors.New("the leader's time answer came too late to trust")
	}
	n.clock.heard(a.Time.Add(rtt/2), t1)
	return nil
}
