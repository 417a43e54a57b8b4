package e2e

// The soak's access workload (netns_soak_test.go runs it beside the policy
// clients): what the nemesis must not break about access to footage.
//
//   - live cut (invariants 5–6): desk watches a camera under a grant with an
//     absolute end; half the cycles revoke it first. The stream must stop
//     within 2 s of the end (or of the revoke's acknowledgement), by the
//     store's trusted clock, under skew and loss too; a view started after
//     it must be refused.
//   - installer window (invariant 7): an installer joins praha-1 for 40–60
//     s and watches a camera; the stream ends within 2 s of its window and
//     a later view is refused.
//   - release below quorum (invariant 4): an export with one approval must
//     be refused; with two it may succeed, and then it must verify.
//   - erasure: approved erasures are done on every holder and no erased
//     segment is left on any disk.
//   - audit: every view started and every export appears in the serving
//     node's journal.
//
// A cycle whose viewer or store (for a revoke: or a voter) was killed,
// paused or cut off around the moment that matters cannot show the cut,
// and is counted apart as excused with the fault that excused it. Skew and
// delay/loss excuse nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cutSlack is how late after its end a stream may still deliver
// (invariants 5–7: cut within 2 s); excuseAround is how close to that end
// a fault of the viewer or store excuses the cycle.
const (
	cutSlack     = 2 * time.Second
	excuseAround = 5 * time.Second
)

// The workload's operation kinds, as the soak's summary counts them.
const (
	accGrant         = "access.grant"
	accRevoke        = "access.revoke"
	accLiveCut       = "access.live.cut"
	accLiveAfter     = "access.live.after-end"
	accInstJoin      = "access.installer.join"
	accInstCut       = "access.installer.cut"
	accInstAfter     = "access.installer.after-end"
	accRequest       = "access.request"
	accApprove       = "access.approve"
	accExportBelow   = "access.export.below-quorum"
	accExport        = "access.export"
	accVerify        = "access.verify-export"
	accErase         = "access.erase"
	accAudit         = "access.audit"
	accRequestsCheck = "access.requests-check"
)

// Outcomes beyond outOK and outRefused.
const (
	accFailed     = "failed"      // a fault got in the way: no verdict
	accExcused    = "excused"     // a fault near the moment that matters
	accEarly      = "early"       // stopped before its end (not a violation)
	accNotStarted = "not-started" // never delivered a byte
	accAborted    = "aborted"     // the run ended first
	accAnomaly    = "anomaly"
)

// accessWorkload is the workload's state; each loop has a goroutine.
type accessWorkload struct {
	r         *soakRun
	f         *netFed
	keys      map[string]string // approver → key file
	approvers []string
	tmp       string
	recording time.Time // the store held footage of every camera by then

	mu        sync.Mutex
	ops       []soakOp
	anomalies []string
	cuts      []accessCut
	views     map[string]int // "actor camera" → views that delivered bytes
	exported  []string       // requests exported and verified
	refused   []string       // requests whose below-quorum export was refused
	erasures  []string       // erasure IDs filed
	installs  []*exec.Cmd    // installer nodes still running
}

// accessCut is one checked stream, kept as evidence in access.json.
type accessCut struct {
	Kind        string  `json:"kind"`
	Viewer      string  `json:"viewer"`
	Camera      string  `json:"camera"`
	Grant       string  `json:"grant,omitempty"`
	Ref         string  `json:"ref"` // "end" or "revoke"
	RefAt       float64 `json:"ref_s"`
	FirstGrowth float64 `json:"first_growth_s,omitempty"`
	LastGrowth  float64 `json:"last_growth_s,omitempty"`
	LateBy      float64 `json:"late_by_s"`
	Bytes       int64   `json:"bytes"`
	Result      string  `json:"result"`
	Reason      string  `json:"reason,omitempty"`
	Stderr      string  `json:"viewer_stderr,omitempty"`
}

// setupAccess adds the approvers bob, carol and dave, seals the quorum at
// 2, checks the soak's own writes stay single-admin after it, and revokes
// desk's founding live grant, so desk's only live access is the
// workload's. It runs before the nemesis starts.
func (r *soakRun) setupAccess() *accessWorkload {
	f := r.f
	a := &accessWorkload{r: r, f: f, keys: map[string]string{}, approvers: []string{"bob", "carol", "dave"},
		tmp: filepath.Join(f.tmp, "access"), views: map[string]int{}, recording: time.Now()}
	if err := os.MkdirAll(a.tmp, 0o755); err != nil {
		r.t.Fatal(err)
	}
	for _, name := range a.approvers {
		a.keys[name] = filepath.Join(f.tmp, name+".key")
		f.must(nil, "admin", "keygen", "--out", a.keys[name], "--name", name)
		f.submit(f.dcA, 30*time.Second, "admin", "add", "--name", name, "--key", a.keys[name]+".pub", "--role", "approver")
	}
	f.submit(f.dcA, 30*time.Second, "quorum", "seal", "--threshold", "2")
	// The policy clients grant, revoke and add sites as alice: the seal must
	// leave those single-admin (a refusal here fails the run at once).
	f.submit(f.desk, 30*time.Second, "grant", "--id", "g-access-probe", "--to", "node:dc-b", "--action", "live", "--cameras", "praha-1/*", "--until", "1m", "--purpose", "soak probe")
	f.submit(f.desk, 30*time.Second, "revoke", "grant", "g-access-probe")
	f.submit(f.desk, 30*time.Second, "site", "add", "--name", "s-access-probe")
	out := f.must(f.dcA, "grants", "--dir", f.dcA.dir, "--json")
	var ids []string
	for _, g := range decodeGrants(r.t, out) {
		if g.Subject.Kind == "node" && g.Subject.Name == "desk" && !g.Revoked {
			ids = append(ids, g.ID)
		}
	}
	if len(ids) == 0 {
		r.t.Fatalf("soak access: desk has no founding live grant to revoke; grants: %s", out)
	}
	for _, id := range ids {
		f.submit(f.desk, 30*time.Second, "revoke", "grant", id)
	}
	f.waitUntil(f.desk, 60*time.Second, "desk to know the sealed quorum and no grant of its own", func() (bool, string) {
		q, qe, err := f.run(15*time.Second, "quorum", "show", "--dir", f.desk.dir)
		if err != nil || !strings.Contains(q, "dave") || !strings.Contains(q, "sealed") {
			return false, q + qe
		}
		g, ge, err := f.run(15*time.Second, "grants", "--dir", f.desk.dir, "--json")
		if err != nil {
			return false, ge
		}
		for _, x := range decodeGrants(r.t, g) {
			if x.Subject.Name == "desk" && !x.Revoked {
				return false, "desk still has grant " + x.ID
			}
		}
		return true, ""
	})
	r.t.Logf("soak access: approvers %v, quorum sealed at 2, desk's founding grants %v revoked", a.approvers, ids)
	return a
}

type accGrantJSON struct {
	ID      string `json:"id"`
	Subject struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"subject"`
	Revoked bool `json:"revoked"`
}

// decodeGrants reads `custos grants --json`: a list, or a map by ID.
func decodeGrants(t interface{ Fatalf(string, ...any) }, out string) []accGrantJSON {
	var list []accGrantJSON
	if err := json.Unmarshal([]byte(out), &list); err == nil {
		return list
	}
	var m map[string]accGrantJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("grants --json: %v\n%s", err, out)
	}
	for _, g := range m {
		list = append(list, g)
	}
	return list
}

// run runs the workload's loops until ctx ends, each on its own PCG
// stream of the soak's seed.
func (a *accessWorkload) run(ctx context.Context, seed uint64) {
	var wg sync.WaitGroup
	for i, loop := range []func(context.Context, *rand.Rand){a.liveLoop, a.installerLoop, a.releaseLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx, rand.New(rand.NewPCG(seed, uint64(100+i))))
		}()
	}
	wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.installs {
		c.Process.Kill()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (a *accessWorkload) record(kind, key, via string, call time.Time, result, reason string) {
	op := soakOp{Client: 10, Kind: kind, Key: key, Via: via, Call: call.Sub(a.r.began).Nanoseconds(),
		Return: time.Since(a.r.began).Nanoseconds(), Result: result, Reason: reason}
	a.mu.Lock()
	a.ops = append(a.ops, op)
	a.mu.Unlock()
	if result == accAnomaly {
		a.anomaly("%s %s: %s", kind, key, reason)
	}
}

func (a *accessWorkload) anomaly(format string, args ...any) {
	msg := fmt.Sprintf("[%6.1fs] ", a.r.since()) + fmt.Sprintf(format, args...)
	a.mu.Lock()
	a.anomalies = append(a.anomalies, msg)
	a.mu.Unlock()
	a.r.t.Logf("soak access: ANOMALY %s", msg)
}

// faultedIn says whether any of names was under a fault that stops a node
// serving or reaching the others (anything but impair and skew, which
// excuse nothing) at some moment in [from, to], and which: "" if none.
func (r *soakRun) faultedIn(names []string, from, to time.Time) string {
	return r.faultOf(names, from, to, func(fault string) bool { return fault != "impair" && fault != "skew" })
}

// faultOf is faultedIn for the faults kinds accepts.
func (r *soakRun) faultOf(names []string, from, to time.Time, kinds func(string) bool) string {
	a, b := from.Sub(r.began).Seconds(), to.Sub(r.began).Seconds()
	r.mu.Lock()
	events := slices.Clone(r.events)
	r.mu.Unlock()
	for i, e := range events {
		if e.Action != "inject" || !kinds(e.Fault) {
			continue
		}
		end := 1e18 // not healed yet
		for _, h := range events[i+1:] {
			if h.Action == "heal" && h.Fault == e.Fault && h.Target == e.Target {
				end = h.At
				break
			}
		}
		if e.At > b || end < a {
			continue
		}
		if strings.HasPrefix(e.Fault, "split") {
			// A split stops nothing on either side: it matters when it
			// separates names (a viewer from its store, a store from a
			// voter), so it excuses only names found on both sides.
			if s := splitApart(e.Detail, names); s != "" {
				return fmt.Sprintf("%s %s at %.1fs–%.1fs", e.Fault, s, e.At, min(end, r.since()))
			}
			continue
		}
		targets := strings.FieldsFunc(e.Target, func(c rune) bool { return strings.ContainsRune(", |/+;", c) })
		for _, n := range names {
			if slices.Contains(targets, n) {
				return fmt.Sprintf("%s %s at %.1fs–%.1fs", e.Fault, n, e.At, min(end, r.since()))
			}
		}
	}
	return ""
}

// splitApart reads a split's sides from its schedule detail ("{a,b} |
// {c,d} for 10s") and says which of names it put apart: "a|c", or "" when
// they all sit on one side.
func splitApart(detail string, names []string) string {
	left, right, ok := strings.Cut(detail, " | ")
	if !ok {
		return ""
	}
	side := func(s string) []string {
		s = s[strings.Index(s, "{")+1:]
		s, _, _ = strings.Cut(s, "}")
		return strings.Split(s, ",")
	}
	a, b := side(left), side(right)
	var onA, onB string
	for _, n := range names {
		switch {
		case onA == "" && slices.Contains(a, n):
			onA = n
		case onB == "" && slices.Contains(b, n):
			onB = n
		}
	}
	if onA == "" || onB == "" {
		return ""
	}
	return onA + "|" + onB
}

// viewer is one `custos live` process writing to a file, watched every
// 100 ms for growth.
type viewer struct {
	cmd         *exec.Cmd
	out         string
	stderr      *tailBuffer
	done        chan struct{}
	first, last atomic.Int64 // unix ns of the first and last growth seen
	size        atomic.Int64
}

var viewSeq atomic.Int64

// startViewer runs `custos live` through dir's node inside nd's namespace.
func (a *accessWorkload) startViewer(nd *labNode, dir, camera string, d time.Duration) (*viewer, error) {
	v := &viewer{out: filepath.Join(a.tmp, fmt.Sprintf("live-%d.ts", viewSeq.Add(1))), stderr: newTailBuffer(10), done: make(chan struct{})}
	v.cmd = nd.command(context.Background(), a.f.bin, "live", "--dir", dir, "--camera", camera, "--out", v.out, "--for", d.Round(time.Second).String())
	v.cmd.Stderr = v.stderr
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { v.cmd.Wait(); close(v.done) }()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			exited := false
			select {
			case <-v.done:
				exited = true
			case <-t.C:
			}
			if fi, err := os.Stat(v.out); err == nil && fi.Size() > v.size.Load() {
				now := time.Now().UnixNano()
				v.size.Store(fi.Size())
				v.first.CompareAndSwap(0, now)
				v.last.Store(now)
			}
			if exited {
				return
			}
		}
	}()
	return v, nil
}

func (v *viewer) stop() {
	v.cmd.Process.Kill()
	<-v.done
}

func (v *viewer) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// openView starts a viewer and retries until it delivers bytes or until
// giveUp: the grant or the installer's membership may not have reached
// the store yet. It returns the viewer delivering, or nil and why not.
func (a *accessWorkload) openView(ctx context.Context, nd *labNode, dir, camera string, until, giveUp time.Time) (*viewer, string) {
	var last string
	for attempt := 1; time.Now().Before(giveUp) && ctx.Err() == nil; attempt++ {
		v, err := a.startViewer(nd, dir, camera, time.Until(until))
		if err != nil {
			return nil, err.Error()
		}
		deadline := time.Now().Add(8 * time.Second)
		for time.Now().Before(deadline) && v.first.Load() == 0 && !v.exited() {
			time.Sleep(100 * time.Millisecond)
		}
		if v.first.Load() != 0 {
			return v, ""
		}
		v.stop()
		last = fmt.Sprintf("attempt %d: %s", attempt, strings.TrimSpace(v.stderr.String()))
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return nil, last
}

// judgeCut decides a stream's outcome against ref, the moment access
// ended (the grant's or window's end, or the revoke's acknowledgement).
func (a *accessWorkload) judgeCut(c *accessCut, v *viewer, ref time.Time, excuse []string) {
	c.RefAt = ref.Sub(a.r.began).Seconds()
	c.Bytes = v.size.Load()
	c.Stderr = strings.TrimSpace(v.stderr.String())
	first, last := time.Unix(0, v.first.Load()), time.Unix(0, v.last.Load())
	c.FirstGrowth, c.LastGrowth = first.Sub(a.r.began).Seconds(), last.Sub(a.r.began).Seconds()
	c.LateBy = last.Sub(ref).Seconds()
	why := a.r.faultedIn(excuse, ref.Add(-excuseAround), ref.Add(excuseAround))
	switch {
	case why != "":
		c.Result, c.Reason = accExcused, why
		if last.After(ref.Add(cutSlack)) {
			c.Reason += fmt.Sprintf(" (delivered until %.1fs after the end)", c.LateBy)
		}
	case last.After(ref.Add(cutSlack)):
		c.Result = accAnomaly
		c.Reason = fmt.Sprintf("%s's stream of %s still grew %.2fs after its access ended (%s at %.1fs), more than %v",
			c.Viewer, c.Camera, c.LateBy, c.Ref, c.RefAt, cutSlack)
	case last.Before(ref.Add(-3 * time.Second)):
		c.Result, c.Reason = accEarly, fmt.Sprintf("last growth %.1fs before the end", -c.LateBy)
		// A store clock set forward ends access early by design (the
		// trusted clock only ever decides later than the leader's time).
		if why := a.r.faultOf(excuse, last.Add(-2*time.Second), last.Add(2*time.Second), func(fault string) bool { return fault != "kill" }); why != "" {
			c.Reason += "; " + why
		}
	default:
		c.Result = outOK
	}
}

// afterEnd checks that a view started once access ended is refused.
func (a *accessWorkload) afterEnd(kind string, nd *labNode, viewerName, dir, camera string, ref time.Time, excuse []string) {
	call := time.Now()
	v, err := a.startViewer(nd, dir, camera, 3*time.Second)
	if err != nil {
		a.record(kind, viewerName+" "+camera, viewerName, call, accFailed, err.Error())
		return
	}
	select {
	case <-v.done:
	case <-time.After(8 * time.Second):
		v.stop()
	}
	time.Sleep(200 * time.Millisecond) // the watcher's last look
	msg := strings.TrimSpace(v.stderr.String())
	switch {
	case v.size.Load() == 0 && v.cmd.ProcessState != nil && v.cmd.ProcessState.ExitCode() == 4:
		a.record(kind, viewerName+" "+camera, viewerName, call, outRefused, msg)
	case v.size.Load() == 0 && kind == accInstAfter && strings.Contains(msg, "no mesh peer has this address"):
		// The installer's own node dropped the store from its mesh at the
		// window's end (invariant 8): the view cannot even be asked for.
		a.record(kind, viewerName+" "+camera, viewerName, call, outRefused, "cut from the mesh: "+msg)
	case v.size.Load() == 0:
		a.record(kind, viewerName+" "+camera, viewerName, call, accFailed, msg)
	default:
		if why := a.r.faultedIn(excuse, ref.Add(-excuseAround), time.Now()); why != "" {
			a.record(kind, viewerName+" "+camera, viewerName, call, accExcused, fmt.Sprintf("%d bytes after the end; %s", v.size.Load(), why))
			return
		}
		a.record(kind, viewerName+" "+camera, viewerName, call, accAnomaly,
			fmt.Sprintf("a view started %.1fs after access ended delivered %d bytes (%s)", call.Sub(ref).Seconds(), v.size.Load(), msg))
	}
}

func (a *accessWorkload) addCut(c accessCut, call time.Time) {
	a.mu.Lock()
	a.cuts = append(a.cuts, c)
	if c.Bytes > 0 {
		a.views["node:"+c.Viewer+" "+c.Camera]++
	}
	a.mu.Unlock()
	a.r.t.Logf("soak access: %s %s %s (%s at %.1fs, last growth %+.2fs) %s %s", c.Kind, c.Viewer, c.Camera, c.Ref, c.RefAt, c.LateBy, c.Result, c.Reason)
	a.record(c.Kind, c.Viewer+" "+c.Camera, c.Viewer, call, c.Result, c.Reason)
}

// liveLoop: desk's grant with an absolute end, a view, in half the cycles
// a revoke first; the cut and a refused view after it.
func (a *accessWorkload) liveLoop(ctx context.Context, rng *rand.Rand) {
	f := a.f
	nd := f.ns[f.desk]
	for n := 0; ctx.Err() == nil; n++ {
		cam := netCameras[rng.IntN(len(netCameras))]
		id := fmt.Sprintf("g-live-%d", n)
		start := time.Now()
		end := start.Add(time.Duration(20+rng.IntN(21)) * time.Second)
		revokeAt := time.Time{}
		if rng.IntN(2) == 0 {
			revokeAt = start.Add(8*time.Second + time.Duration(rng.Int64N(int64(end.Sub(start)-12*time.Second))))
		}
		pause := time.Duration(1+rng.IntN(3)) * time.Second
		a.liveCycle(ctx, nd, id, cam, end, revokeAt)
		sleepCtx(ctx, pause)
	}
}

func (a *accessWorkload) liveCycle(ctx context.Context, nd *labNode, id, cam string, end, revokeAt time.Time) {
	f := a.f
	call := time.Now()
	out, errOut, err := f.run(20*time.Second, "grant", "--id", id, "--to", "node:desk", "--action", "live", "--cameras", cam,
		"--until", end.UTC().Format(time.RFC3339Nano), "--purpose", "soak live cut", "--dir", f.desk.dir, "--as", f.admin)
	if err != nil {
		a.record(accGrant, id, f.desk.name, call, accFailed, strings.TrimSpace(err.Error()+": "+errOut+out))
		// It may commit late: wait its end out so the next cycle's view
		// is the next grant's alone.
		sleepCtx(ctx, time.Until(end.Add(3*time.Second)))
		return
	}
	a.record(accGrant, id, f.desk.name, call, outOK, "")
	c := accessCut{Kind: accLiveCut, Viewer: "desk", Camera: cam, Grant: id, Ref: "end"}
	v, why := a.openView(ctx, nd, f.desk.dir, cam, end.Add(10*time.Second), end.Add(-3*time.Second))
	if v == nil {
		if ctx.Err() != nil {
			a.record(accLiveCut, "desk "+cam, "desk", call, accAborted, "the run ended")
			return
		}
		a.record(accLiveCut, "desk "+cam, "desk", call, accNotStarted, why)
		sleepCtx(ctx, time.Until(end.Add(3*time.Second)))
		return
	}
	defer v.stop()
	ref, excuse := end, []string{f.desk.name, f.store.name}
	if !revokeAt.IsZero() {
		if !sleepCtx(ctx, time.Until(revokeAt)) {
			a.record(accLiveCut, "desk "+cam, "desk", call, accAborted, "the run ended")
			return
		}
		rcall := time.Now()
		out, errOut, err := f.run(20*time.Second, "revoke", "grant", id, "--dir", f.desk.dir, "--as", f.admin)
		if err == nil {
			a.record(accRevoke, id, f.desk.name, rcall, outOK, "")
			ref, c.Ref = time.Now(), "revoke"
			for _, p := range f.voters() {
				excuse = append(excuse, p.name)
			}
		} else {
			// Maybe committed, maybe not: the grant's end still bounds it.
			a.record(accRevoke, id, f.desk.name, rcall, accFailed, strings.TrimSpace(err.Error()+": "+errOut+out))
		}
	}
	if !sleepCtx(ctx, time.Until(ref.Add(cutSlack+2*time.Second))) {
		a.record(accLiveCut, "desk "+cam, "desk", call, accAborted, "the run ended")
		return
	}
	v.stop()
	time.Sleep(150 * time.Millisecond)
	a.judgeCut(&c, v, ref, excuse)
	a.addCut(c, call)
	if time.Now().Before(end) && c.Ref == "end" {
		sleepCtx(ctx, time.Until(end))
	}
	a.afterEnd(accLiveAfter, nd, "desk", f.desk.dir, cam, ref, excuse)
}

// installerLoop: every couple of minutes an installer for praha-1 with a
// 40–60 s window joins, watches a camera of its site, and is cut at the
// window's end.
func (a *accessWorkload) installerLoop(ctx context.Context, rng *rand.Rand) {
	if !sleepCtx(ctx, time.Duration(10+rng.IntN(20))*time.Second) {
		return
	}
	for n := 1; ctx.Err() == nil; n++ {
		window := time.Duration(40+rng.IntN(21)) * time.Second
		cam := netCameras[rng.IntN(len(netCameras))]
		gap := time.Duration(20+rng.IntN(40)) * time.Second
		a.installerCycle(ctx, fmt.Sprintf("inst-%d", n), cam, window)
		sleepCtx(ctx, gap)
	}
}

func (a *accessWorkload) installerCycle(ctx context.Context, name, cam string, window time.Duration) {
	f := a.f
	call := time.Now()
	from, until := call, call.Add(window)
	token, errOut, err := f.run(20*time.Second, "invite", "--role", "installer", "--name", name, "--site", "praha-1",
		"--from", from.UTC().Format(time.RFC3339Nano), "--until", until.UTC().Format(time.RFC3339Nano), "--expires", "10m",
		"--dir", f.desk.dir, "--as", f.admin)
	if err != nil {
		a.record(accInstJoin, name, f.desk.name, call, accFailed, "invite: "+strings.TrimSpace(err.Error()+": "+errOut))
		return
	}
	nd := f.lab.add(name)
	dir, listen := filepath.Join(f.tmp, name), nd.addr.String()+":51820"
	out, errOut, err := runCLI(60*time.Second, func(ctx context.Context) *exec.Cmd {
		return nd.command(ctx, f.bin, "join", "--dir", dir, "--token", strings.TrimSpace(token), "--listen", listen)
	})
	if err != nil {
		a.record(accInstJoin, name, name, call, accFailed, "join: "+strings.TrimSpace(err.Error()+": "+errOut+out))
		return
	}
	up := nd.command(context.Background(), f.bin, "up", "--dir", dir, "--listen", listen)
	upErr := newTailBuffer(20)
	up.Stderr = upErr
	if err := up.Start(); err != nil {
		a.record(accInstJoin, name, name, call, accFailed, "up: "+err.Error())
		return
	}
	a.mu.Lock()
	a.installs = append(a.installs, up)
	a.mu.Unlock()
	defer func() { up.Process.Kill(); up.Wait() }()
	a.record(accInstJoin, name, name, call, outOK, "")
	c := accessCut{Kind: accInstCut, Viewer: name, Camera: cam, Ref: "end"}
	v, why := a.openView(ctx, nd, dir, cam, until.Add(10*time.Second), until.Add(-3*time.Second))
	if v == nil {
		result := accNotStarted
		if ctx.Err() != nil {
			result = accAborted
		}
		a.record(accInstCut, name+" "+cam, name, call, result, why+"; node: "+lastLines(upErr.String(), 3))
		return
	}
	defer v.stop()
	if !sleepCtx(ctx, time.Until(until.Add(cutSlack+2*time.Second))) {
		a.record(accInstCut, name+" "+cam, name, call, accAborted, "the run ended")
		return
	}
	v.stop()
	time.Sleep(150 * time.Millisecond)
	a.judgeCut(&c, v, until, []string{f.store.name})
	a.addCut(c, call)
	a.afterEnd(accInstAfter, nd, name, dir, cam, until, []string{f.store.name})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// releaseLoop: a request of a recent range through desk, one approval and
// an export that must be refused, a second approval and an export that
// must verify when it succeeds; every third cycle or so an erasure too.
func (a *accessWorkload) releaseLoop(ctx context.Context, rng *rand.Rand) {
	lastErase := time.Now()
	for n := 1; ctx.Err() == nil; n++ {
		perm := rng.Perm(len(a.approvers))
		first, second := a.approvers[perm[0]], a.approvers[perm[1]]
		a.releaseCycle(ctx, fmt.Sprintf("rq-soak-%d", n), first, second)
		if time.Since(lastErase) > time.Duration(60+rng.IntN(40))*time.Second {
			lastErase = time.Now()
			a.eraseCycle(ctx, fmt.Sprintf("er-soak-%d", n), first, second)
		}
		sleepCtx(ctx, time.Duration(2+rng.IntN(5))*time.Second)
	}
}

// approve has approver approve id through desk, retrying while desk's
// replica may not hold the request yet.
func (a *accessWorkload) approve(ctx context.Context, id, approver string) bool {
	f := a.f
	call := time.Now()
	var last string
	for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
		out, errOut, err := f.run(20*time.Second, "approve", id, "--dir", f.desk.dir, "--as", a.keys[approver])
		if err == nil {
			a.record(accApprove, id+" "+approver, f.desk.name, call, outOK, strings.TrimSpace(lastLines(out, 1)))
			return true
		}
		last = strings.TrimSpace(err.Error() + ": " + errOut)
		sleepCtx(ctx, 2*time.Second)
	}
	if ctx.Err() != nil {
		a.record(accApprove, id+" "+approver, f.desk.name, call, accAborted, "the run ended")
		return false
	}
	a.record(accApprove, id+" "+approver, f.desk.name, call, accFailed, last)
	return false
}

func (a *accessWorkload) releaseCycle(ctx context.Context, id, first, second string) {
	f := a.f
	cam := netCameras[0]
	// A range from before the store recorded has nothing to export.
	if !sleepCtx(ctx, time.Until(a.recording.Add(32*time.Second))) {
		return
	}
	to := time.Now().Add(-25 * time.Second).UTC().Truncate(time.Second)
	from := to.Add(-6 * time.Second)
	call := time.Now()
	out, errOut, err := f.run(20*time.Second, "request", "--cameras", cam, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--purpose", "soak release", "--basis", "soak test", "--id", id, "--dir", f.desk.dir, "--as", f.admin)
	if err != nil {
		a.record(accRequest, id, f.desk.name, call, accFailed, strings.TrimSpace(err.Error()+": "+errOut+out))
		return
	}
	a.record(accRequest, id, f.desk.name, call, outOK, "")
	if !a.approve(ctx, id, first) {
		return
	}
	file := filepath.Join(a.tmp, id+"-below.ts")
	call = time.Now()
	out, errOut, err = f.run(100*time.Second, "export", id, "--out", file, "--dir", f.desk.dir, "--as", f.admin)
	var ee *exec.ExitError
	switch {
	case err == nil:
		a.record(accExportBelow, id, f.desk.name, call, accAnomaly, "release below quorum: an export with one approval ("+first+") succeeded: "+strings.TrimSpace(out))
	case errors.As(err, &ee) && ee.ExitCode() == 4 && strings.Contains(errOut, "pending (1 of 2 approvals)"):
		a.record(accExportBelow, id, f.desk.name, call, outRefused, strings.TrimSpace(errOut))
		a.mu.Lock()
		a.refused = append(a.refused, id)
		a.mu.Unlock()
	default:
		a.record(accExportBelow, id, f.desk.name, call, accFailed, strings.TrimSpace(err.Error()+": "+errOut))
	}
	if !a.approve(ctx, id, second) {
		return
	}
	file = filepath.Join(a.tmp, id+".ts")
	call = time.Now()
	out, errOut, err = f.run(100*time.Second, "export", id, "--out", file, "--dir", f.desk.dir, "--as", f.admin)
	if err != nil {
		a.record(accExport, id, f.desk.name, call, accFailed, strings.TrimSpace(err.Error()+": "+errOut))
		return
	}
	a.record(accExport, id, f.desk.name, call, outOK, lastLines(out, 1))
	call = time.Now()
	out, errOut, err = f.run(60*time.Second, "verify-export", file, "--dir", f.desk.dir)
	if err != nil || !strings.HasPrefix(out, "OK: ") {
		a.record(accVerify, id, f.desk.name, call, accAnomaly, fmt.Sprintf("verify-export of a completed export: %v: %s%s", err, out, errOut))
		return
	}
	a.record(accVerify, id, f.desk.name, call, outOK, "")
	a.mu.Lock()
	a.exported = append(a.exported, id)
	a.mu.Unlock()
	os.Remove(file) // the verdict is recorded; the bytes are not needed
}

// eraseCycle files the erasure of a few seconds of the other camera (the
// requests read netCameras[0]), has two approvers approve it and waits for
// every holder to be done.
func (a *accessWorkload) eraseCycle(ctx context.Context, id, first, second string) {
	f := a.f
	cam := netCameras[1]
	to := time.Now().Add(-90 * time.Second).UTC().Truncate(time.Second)
	from := to.Add(-4 * time.Second)
	call := time.Now()
	out, errOut, err := f.run(20*time.Second, "erase", "--camera", cam, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--reason", "soak", "--id", id, "--dir", f.desk.dir, "--as", f.admin)
	a.mu.Lock()
	a.erasures = append(a.erasures, id) // checked after the heal if it committed
	a.mu.Unlock()
	if err != nil {
		a.record(accErase, id, f.desk.name, call, accFailed, "erase: "+strings.TrimSpace(err.Error()+": "+errOut+out))
		return
	}
	if !a.approve(ctx, id, first) || !a.approve(ctx, id, second) {
		a.record(accErase, id, f.desk.name, call, accFailed, "not approved")
		return
	}
	out, errOut, err = f.run(90*time.Second, "erase", "status", id, "--dir", f.desk.dir, "--wait", "60s")
	if err != nil {
		a.record(accErase, id, f.desk.name, call, accFailed, "not done everywhere within 60s (checked again after the heal): "+strings.TrimSpace(out+errOut))
		return
	}
	a.record(accErase, id, f.desk.name, call, "done", "")
}

// checkAccess runs after the heal and the convergence check: the
// requests, the erasures, the audit journals; then it adds the workload's
// operations to the soak's history and fails the run on any anomaly, with
// the evidence in the run directory.
func (a *accessWorkload) checkAccess() {
	r := a.r
	a.checkRequests()
	a.checkErasures()
	a.checkAudit()

	a.mu.Lock()
	defer a.mu.Unlock()
	counts := map[string]int{}
	for _, op := range a.ops {
		counts[op.Kind+" "+op.Result]++
	}
	r.mu.Lock()
	r.hist = append(r.hist, a.ops...)
	r.mu.Unlock()
	evidence := struct {
		Anomalies []string       `json:"anomalies"`
		Cuts      []accessCut    `json:"cuts"`
		Counts    map[string]int `json:"counts"`
		Exported  []string       `json:"exported"`
		Refused   []string       `json:"refused_below_quorum"`
		Erasures  []string       `json:"erasures"`
	}{a.anomalies, a.cuts, counts, a.exported, a.refused, a.erasures}
	b, _ := json.MarshalIndent(evidence, "", " ")
	if err := os.WriteFile(filepath.Join(r.dir, "access.json"), b, 0o644); err != nil {
		r.t.Logf("soak access: %v", err)
	}
	excused := map[string]int{}
	for _, c := range a.cuts {
		if c.Result == accExcused {
			excused[strings.SplitN(c.Reason, " ", 2)[0]]++
		}
	}
	r.t.Logf("soak access: %d cuts checked within 2 s of their end (%d live, %d installer; %d of them stopped early), %d excused by %v; %d below-quorum exports refused, %d exports verified, %d erasures filed",
		countOK(a.cuts, ""), countOK(a.cuts, accLiveCut), countOK(a.cuts, accInstCut), countEarly(a.cuts), len(a.cuts)-countChecked(a.cuts), excused,
		len(a.refused), len(a.exported), len(a.erasures))
	if len(a.anomalies) > 0 {
		r.t.Errorf("soak access: %d anomalies (evidence in %s):\n%s", len(a.anomalies), filepath.Join(r.dir, "access.json"), strings.Join(a.anomalies, "\n"))
	}
}

// countOK counts the cuts of kind ("" any) checked and on time.
func countOK(cs []accessCut, kind string) int {
	n := 0
	for _, c := range cs {
		if (kind == "" || c.Kind == kind) && (c.Result == outOK || c.Result == accEarly) {
			n++
		}
	}
	return n
}

func countEarly(cs []accessCut) int {
	n := 0
	for _, c := range cs {
		if c.Result == accEarly {
			n++
		}
	}
	return n
}

func countChecked(cs []accessCut) int {
	n := 0
	for _, c := range cs {
		if c.Result != accExcused {
			n++
		}
	}
	return n
}

type accRequestRow struct {
	ID        string `json:"id"`
	Action    string `json:"action"`
	Requester string `json:"requester"`
	Status    string `json:"status"`
	Approvals []struct {
		User string `json:"user"`
	} `json:"approvals"`
	Cameras []string  `json:"cameras"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// requests reads `custos requests --json` through desk (the only node
// that knows which requests it exported), after the convergence check.
func (a *accessWorkload) requests() (map[string]accRequestRow, error) {
	out, errOut, err := a.f.run(30*time.Second, "requests", "--dir", a.f.desk.dir, "--json")
	if err != nil {
		return nil, fmt.Errorf("requests --json: %v: %s", err, errOut)
	}
	var rows []accRequestRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("requests --json: %v", err)
	}
	m := map[string]accRequestRow{}
	for _, row := range rows {
		m[row.ID] = row
	}
	return m, nil
}

// checkRequests: every request released or exported has at least two
// distinct approvals, none by its requester; every export the workload saw
// succeed is among them.
func (a *accessWorkload) checkRequests() {
	call := time.Now()
	rows, err := a.requests()
	if err != nil {
		a.record(accRequestsCheck, "", a.f.desk.name, call, accAnomaly, err.Error())
		return
	}
	checked := 0
	for id, row := range rows {
		if !strings.HasPrefix(id, "rq-soak-") || (row.Status != "approved" && row.Status != "exported") {
			continue
		}
		checked++
		users := map[string]bool{}
		for _, ap := range row.Approvals {
			if ap.User == row.Requester {
				a.anomaly("request %s (%s) has an approval by its requester %s", id, row.Status, ap.User)
			}
			users[ap.User] = true
		}
		delete(users, row.Requester)
		if len(users) < 2 {
			a.anomaly("release below quorum: request %s is %s with approvals by %v only", id, row.Status, slices.Sorted(mapsKeys(users)))
		}
	}
	for _, id := range a.exported {
		if rows[id].Status != "exported" {
			a.anomaly("request %s was exported, but desk's requests say %q", id, rows[id].Status)
		}
	}
	a.record(accRequestsCheck, "", a.f.desk.name, call, outOK, fmt.Sprintf("%d released or exported requests checked", checked))
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkErasures: every erasure the quorum approved is done on every holder
// (by their signed receipts, erase status), and no segment overlapping its
// range is left in any holder's media directory.
func (a *accessWorkload) checkErasures() {
	f := a.f
	rows, err := a.requests()
	if err != nil {
		a.anomaly("erasures: %v", err)
		return
	}
	for _, id := range a.erasures {
		row, ok := rows[id]
		if !ok || row.Status != "approved" {
			a.r.t.Logf("soak access: erasure %s not approved (%q): nothing to check", id, row.Status)
			continue
		}
		call := time.Now()
		out, errOut, err := f.run(4*time.Minute, "erase", "status", id, "--dir", f.desk.dir, "--wait", "3m", "--json")
		var st struct {
			State string `json:"state"`
			Rows  []struct {
				Node     string `json:"node"`
				State    string `json:"state"`
				Segments int    `json:"segments"`
			} `json:"rows"`
		}
		if jerr := json.Unmarshal([]byte(out), &st); err != nil || jerr != nil {
			a.record(accErase+".final", id, f.desk.name, call, accAnomaly, fmt.Sprintf("approved erasure not done on every holder 3 min after the heal: %v: %s%s", err, out, errOut))
			continue
		}
		holders := map[string]bool{}
		segs := 0
		for _, row := range st.Rows {
			holders[row.Node] = row.State == "done"
			segs += row.Segments
		}
		for _, p := range []*custosProc{f.store, f.dcA, f.dcB} {
			if !holders[p.name] {
				a.anomaly("erasure %s: %s is not among its done holders: %s", id, p.name, out)
			}
			for _, left := range segmentsOverlapping(p.dir, row.Cameras, row.From, row.To) {
				a.anomaly("erasure %s done, but %s still holds %s", id, p.name, left)
			}
		}
		a.record(accErase+".final", id, f.desk.name, call, "done", fmt.Sprintf("%d holders done, %d segments deleted", len(st.Rows), segs))
	}
}

// segmentsOverlapping lists the segment files under dir/media of cameras
// whose [start, end) meets [from, to).
func segmentsOverlapping(dir string, cameras []string, from, to time.Time) []string {
	var left []string
	root := filepath.Join(dir, "media", "segments")
	filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(e.Name(), ".seg") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		cam := strings.SplitN(rel, string(filepath.Separator), 2)[0]
		hit := false
		for _, c := range cameras {
			if cam == strings.ReplaceAll(c, "/", "%2F") {
				hit = true
			}
		}
		start, end := nameTime(e.Name(), 0), nameTime(e.Name(), 1)
		if hit && !start.IsZero() && start.Before(to) && end.After(from) {
			left = append(left, rel)
		}
		return nil
	})
	return left
}

type accAuditEntry struct {
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Object   string    `json:"object"`
	Decision string    `json:"decision"`
	Reason   string    `json:"reason"`
}

func (a *accessWorkload) journal(p *custosProc) ([]accAuditEntry, error) {
	out, errOut, err := a.f.run(60*time.Second, "audit", "--dir", p.dir, "--json")
	if err != nil {
		return nil, fmt.Errorf("audit on %s: %v: %s", p.name, err, errOut)
	}
	var es []accAuditEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		return nil, fmt.Errorf("audit --json on %s: %v", p.name, err)
	}
	return es, nil
}

// checkAudit: every view that delivered bytes has its start in the store's
// journal (counted per viewer and camera: the store's wall clock may have
// been skewed, so times do not match), and every export its entry in
// desk's.
func (a *accessWorkload) checkAudit() {
	f := a.f
	call := time.Now()
	store, err := a.journal(f.store)
	if err != nil {
		a.record(accAudit, "store", f.store.name, call, accAnomaly, err.Error())
		return
	}
	starts := map[string]int{}
	for _, e := range store {
		if e.Action == "live-view" && strings.EqualFold(e.Decision, "allow") && strings.HasPrefix(e.Reason, "start") {
			starts[e.Actor+" "+e.Object]++
		}
	}
	keys := make([]string, 0, len(a.views))
	for k := range a.views {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if starts[k] < a.views[k] {
			a.anomaly("audit: %d live views %s delivered bytes, the store's journal has %d starts", a.views[k], k, starts[k])
		}
	}
	a.record(accAudit, "live", f.store.name, call, outOK, fmt.Sprintf("%d viewer×camera pairs, starts in the journal %v", len(keys), starts))
	desk, err := a.journal(f.desk)
	if err != nil {
		a.record(accAudit, "desk", f.desk.name, call, accAnomaly, err.Error())
		return
	}
	allowed, denied := map[string]bool{}, map[string]bool{}
	for _, e := range desk {
		if e.Action != "export" {
			continue
		}
		req, _, _ := strings.Cut(e.Object, " ")
		if strings.EqualFold(e.Decision, "allow") {
			allowed[req] = true
		} else {
			denied[req] = true
		}
	}
	for _, id := range a.exported {
		if !allowed[id] {
			a.anomaly("audit: export of %s completed, desk's journal has no allowed export of it", id)
		}
	}
	for _, id := range a.refused {
		if !denied[id] {
			a.anomaly("audit: the below-quorum export of %s was refused, desk's journal has no refused export of it", id)
		}
	}
	a.record(accAudit, "export", f.desk.name, call, outOK, fmt.Sprintf("%d exports and %d refusals found in desk's journal", len(a.exported), len(a.refused)))
}
