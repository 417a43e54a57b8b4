package e2e

// A federation of `custos up` processes in network namespaces (the lab of
// netns_harness_test.go), and what the fault scenarios check on it:
// recording, replication (the store's status and the replicas' bytes) and
// live view.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netCameras are the store's two synthetic cameras.
var netCameras = []string{"praha-1/entrance", "praha-1/tills"}

// netFed is procFed (raft_process_test.go) with every node in a namespace
// of its own: dc-a, dc-b and the witness voting, store-praha-1 recording
// netCameras, and desk, an admin node granted live view of them. The soak's
// topology (netFedOpts.soak) adds two stores of one camera each and a
// second admin node.
type netFed struct {
	*procFed
	lab                            *lab
	ns                             map[*custosProc]*labNode
	dcA, dcB, witness, store, desk *custosProc
	stores, admins                 []*custosProc // store is stores[0], desk admins[0]
	cameras                        map[*custosProc][]string
	began                          time.Time
}

// netFedOpts chooses a topology; the zero value is every netns test's
// federation, with its timing.
type netFedOpts struct {
	// soak adds store-brno-1 and store-ostrava-1 (a synthetic camera each)
	// and desk2.
	soak bool
	// dcDisk, if set, is the size of a tmpfs (mount's size=, such as
	// "1024m") that dc-a's and dc-b's data directories each live on, so a
	// test can fill their disks.
	dcDisk string
}

// newNetFed founds the federation and waits until the store records both
// cameras.
func newNetFed(t *testing.T) *netFed {
	t.Helper()
	return newNetFedOn(t, custosBin(t))
}

// newNetFedOn is newNetFed with every node, and the CLI, running bin.
func newNetFedOn(t *testing.T, bin string) *netFed {
	t.Helper()
	return newNetFedWith(t, bin, netFedOpts{})
}

// newNetFedWith is newNetFedOn with the topology of opts.
func newNetFedWith(t *testing.T, bin string, opts netFedOpts) *netFed {
	t.Helper()
	l := newLab(t)
	tmp := t.TempDir()
	f := &netFed{
		procFed: &procFed{t: t, bin: bin, tmp: tmp, admin: filepath.Join(tmp, "alice.key")},
		lab:     l, ns: map[*custosProc]*labNode{}, cameras: map[*custosProc][]string{}, began: time.Now(),
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range f.nodes {
				t.Logf("--- stderr tail of %s ---\n%s", p.name, p.stderr)
			}
		}
	})
	type decl struct {
		name, role, site string
		cameras          []string
	}
	decls := []decl{
		{"dc-a", "datacenter", "", nil},
		{"dc-b", "datacenter", "", nil},
		{"witness", "witness", "", nil},
		{"store-praha-1", "store", "praha-1", netCameras},
		{"desk", "admin", "", nil},
	}
	if opts.soak {
		decls = append(decls,
			decl{"store-brno-1", "store", "brno-1", []string{"brno-1/gate"}},
			decl{"store-ostrava-1", "store", "ostrava-1", []string{"ostrava-1/yard"}},
			decl{"desk2", "admin", "", nil})
	}
	for _, n := range decls {
		nd := l.add(n.name)
		p := &custosProc{name: n.name, role: n.role, site: n.site,
			dir: filepath.Join(tmp, n.name), listen: nd.addr.String() + ":51820", stderr: newTailBuffer(30)}
		f.nodes = append(f.nodes, p)
		f.ns[p] = nd
		switch n.role {
		case "store":
			f.stores = append(f.stores, p)
			f.cameras[p] = n.cameras
		case "admin":
			f.admins = append(f.admins, p)
		}
	}
	f.dcA, f.dcB, f.witness, f.store, f.desk = f.nodes[0], f.nodes[1], f.nodes[2], f.nodes[3], f.nodes[4]
	if opts.dcDisk != "" {
		for _, dc := range []*custosProc{f.dcA, f.dcB} {
			f.mountTmpfs(dc.dir, opts.dcDisk)
		}
	}

	f.must(nil, "admin", "keygen", "--out", f.admin, "--name", "alice")
	recovery := filepath.Join(tmp, "recovery.key") // made apart from every node, as on the admin's machine
	f.must(nil, "recovery", "keygen", "--out", recovery)
	f.must(f.dcA, "init", "--dir", f.dcA.dir, "--name", "dc-a", "--listen", f.dcA.listen, "--federation", "acme", "--admin-key", f.admin+".pub", "--recovery", recovery+".pub")
	f.up(f.dcA)
	f.waitUntil(f.dcA, 60*time.Second, "dc-a to lead its one-node cluster", func() (bool, string) {
		st, err := f.status(f.dcA)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		return st.Consensus.Role == "leader", "role " + st.Consensus.Role
	})
	for _, s := range f.stores {
		f.submit(f.dcA, 30*time.Second, "site", "add", "--name", s.site)
	}
	for _, p := range f.nodes[1:] {
		args := []string{"invite", "--role", p.role, "--name", p.name, "--expires", "1h", "--dir", f.dcA.dir, "--as", f.admin}
		if p.site != "" {
			args = append(args, "--site", p.site)
		}
		token := strings.TrimSpace(f.must(f.dcA, args...))
		// join reaches dc-a over the network: from the node's namespace.
		if out, errOut, err := f.runIn(p, 60*time.Second, "join", "--dir", p.dir, "--token", token, "--listen", p.listen); err != nil {
			f.fatalf(p, "join %s: %v\n%s%s", p.name, err, out, errOut)
		}
		f.up(p)
	}
	for _, p := range f.nodes {
		f.waitUntil(p, 60*time.Second, p.name+"'s API and key", func() (bool, string) {
			st, err := f.status(p)
			if err != nil {
				return false, err.Error()
			}
			p.key = st.PublicKey
			return p.key != "", "no public key"
		})
	}
	f.waitUntil(f.dcA, 60*time.Second, "dc-a, dc-b and the witness voting, every other node a member", func() (bool, string) {
		st, err := f.status(f.dcA)
		if err != nil || st.Consensus == nil {
			return false, fmt.Sprint(err)
		}
		n, voters := 0, 0
		for _, m := range st.Consensus.Members {
			n++
			if m.Voter {
				voters++
			}
		}
		return n == len(f.nodes) && voters == 3, f.describeMembers(st.Consensus.Members)
	})
	for _, s := range f.stores {
		for _, cam := range f.cameras[s] {
			site, name, _ := strings.Cut(cam, "/")
			f.submit(s, 30*time.Second, "camera", "add", "--site", site, "--name", name, "--source", "synthetic:", "--purpose", "protection of property and persons")
		}
	}
	// desk's standing live grant (the soak's access workload revokes it and
	// works with short grants of its own; the soak's policy clients grant to
	// desk2).
	f.submit(f.dcA, 30*time.Second, "grant", "--to", "node:desk", "--action", "live", "--cameras", "praha-1/*", "--until", "2h", "--purpose", "e2e live view")
	for _, s := range f.stores {
		cams := f.cameras[s]
		f.waitUntil(s, 60*time.Second, s.name+" recording its cameras", func() (bool, string) {
			st, err := f.netStatus(s)
			if err != nil {
				return false, err.Error()
			}
			return st.segments() >= len(cams) && len(st.Recording.Cameras) == len(cams), st.describeRecording()
		})
	}
	t.Logf("federation of %d processes in namespaces recording after %v", len(f.nodes), time.Since(f.began).Round(time.Millisecond))
	return f
}

// mountTmpfs mounts a tmpfs of size on dir (made if missing), unmounted
// when the test ends: cleanups run last registered first, and the nodes'
// processes, started later, are killed before it.
func (f *netFed) mountTmpfs(dir, size string) {
	f.t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		f.t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, bytes.TrimSpace(out))
	}
	f.t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			f.t.Logf("umount %s: %v: %s; detaching it", dir, err, bytes.TrimSpace(out))
			exec.Command("umount", "-l", dir).Run()
		}
	})
}

// up starts `custos up` in p's namespace; ip netns exec execs custos, so the
// pid is custos's and kill (SIGKILL) hits it. The process is killed and
// reaped when the test ends.
func (f *netFed) up(p *custosProc) {
	f.t.Helper()
	if p.running() {
		f.t.Fatalf("%s already runs", p.name)
	}
	bin := f.bin
	if p.bin != "" {
		bin = p.bin
	}
	fmt.Fprintf(p.stderr, "=== %s up --dir %s --listen %s (netns %s)\n", bin, p.dir, p.listen, f.ns[p].ns)
	f.start(p, f.ns[p].command(context.Background(), bin, "up", "--dir", p.dir, "--listen", p.listen))
}

// restart starts p again on the same directory and address and waits until
// its API answers.
func (f *netFed) restart(p *custosProc) {
	f.t.Helper()
	f.up(p)
	f.waitUntil(p, 60*time.Second, p.name+" answering after its restart", func() (bool, string) {
		_, err := f.status(p)
		return err == nil, fmt.Sprint(err)
	})
}

// runIn is procFed.run inside p's namespace.
func (f *netFed) runIn(p *custosProc, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	return runCLI(timeout, func(ctx context.Context) *exec.Cmd { return f.ns[p].command(ctx, f.bin, args...) })
}

func (f *netFed) voters() []*custosProc { return []*custosProc{f.dcA, f.dcB, f.witness} }

// logf logs with the time since the federation was founded.
func (f *netFed) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("[%6.1fs] %s", time.Since(f.began).Seconds(), fmt.Sprintf(format, args...))
}

// netStatus is the part of `custos status --json` the scenarios read.
type netStatus struct {
	nodeStatus
	Recording *struct {
		Cameras []struct {
			Camera       string    `json:"camera"`
			State        string    `json:"state"`
			Segments     int       `json:"segments"`
			SegmentsLost uint64    `json:"segments_lost"`
			LastSegment  time.Time `json:"last_segment"`
		} `json:"cameras"`
	} `json:"recording"`
	// Replication is on stores: one entry per camera × datacenter.
	Replication []replStatus `json:"replication"`
}

type replStatus struct {
	Camera         string    `json:"camera"`
	Datacenter     string    `json:"datacenter"`
	State          string    `json:"state"`
	ReplicatedUpTo time.Time `json:"replicated_up_to"`
	LagSeconds     float64   `json:"lag_seconds"`
	LagBytes       int64     `json:"lag_bytes"`
	LagSegments    int       `json:"lag_segments"`
	Error          string    `json:"error"`
}

func (f *netFed) netStatus(p *custosProc) (netStatus, error) {
	var st netStatus
	_, err := f.statusInto(p, &st)
	return st, err
}

// segments is how many segments the store holds, all cameras.
func (st netStatus) segments() int {
	n := 0
	if st.Recording != nil {
		for _, c := range st.Recording.Cameras {
			n += c.Segments
		}
	}
	return n
}

// lost is how many segments the recorders dropped.
func (st netStatus) lost() uint64 {
	var n uint64
	if st.Recording != nil {
		for _, c := range st.Recording.Cameras {
			n += c.SegmentsLost
		}
	}
	return n
}

func (st netStatus) describeRecording() string {
	if st.Recording == nil {
		return "no recording status"
	}
	var s []string
	for _, c := range st.Recording.Cameras {
		s = append(s, fmt.Sprintf("%s %s: %d segments, %d lost", c.Camera, c.State, c.Segments, c.SegmentsLost))
	}
	return strings.Join(s, "; ")
}

// replicatedUpTo is how far every one of cams is replicated to dc, by the
// store's status (zero if some camera has no entry).
func (st netStatus) replicatedUpTo(dc string, cams []string) time.Time {
	var low time.Time
	for _, cam := range cams {
		found := false
		for _, r := range st.Replication {
			if r.Camera == cam && r.Datacenter == dc {
				found = true
				if low.IsZero() || r.ReplicatedUpTo.Before(low) {
					low = r.ReplicatedUpTo
				}
			}
		}
		if !found {
			return time.Time{}
		}
	}
	return low
}

func (st netStatus) describeReplication() string {
	var s []string
	for _, r := range st.Replication {
		s = append(s, fmt.Sprintf("%s→%s %s up to %s (lag %.1fs, %d segments)%s", r.Camera, r.Datacenter, r.State,
			r.ReplicatedUpTo.Format("15:04:05.000"), r.LagSeconds, r.LagSegments, map[bool]string{true: ": " + r.Error}[r.Error != ""]))
	}
	return strings.Join(s, "; ")
}

// storeSegments is how many segments the store holds; it fails the test if
// the recorders dropped any.
func (f *netFed) storeSegments() int {
	f.t.Helper()
	st, err := f.netStatus(f.store)
	if err != nil {
		f.fatalf(f.store, "store status: %v", err)
	}
	if st.lost() > 0 {
		f.t.Errorf("the store's recorders dropped %d segments: %s", st.lost(), st.describeRecording())
	}
	return st.segments()
}

// storeList is the stores the scenario checks: every store of the
// topology, or f.store alone in a federation built elsewhere.
func (f *netFed) storeList() []*custosProc {
	if len(f.stores) > 0 {
		return f.stores
	}
	return []*custosProc{f.store}
}

// camerasOf is the cameras store s records.
func (f *netFed) camerasOf(s *custosProc) []string {
	if c, ok := f.cameras[s]; ok {
		return c
	}
	return netCameras
}

// waitReplicated waits until every store reports each of its cameras
// replicated to each of dcs up to at least t; a timeout fails the test (and
// returns false).
func (f *netFed) waitReplicated(t time.Time, d time.Duration, dcs ...*custosProc) bool {
	f.t.Helper()
	for _, s := range f.storeList() {
		for _, dc := range dcs {
			cams := f.camerasOf(s)
			ok := f.poll(d, func() (bool, string) {
				st, err := f.netStatus(s)
				if err != nil {
					return false, err.Error()
				}
				up := st.replicatedUpTo(dc.name, cams)
				return !up.IsZero() && !up.Before(t), st.describeReplication()
			}, fmt.Sprintf("%s replicating every camera to %s up to %s", s.name, dc.name, t.Format("15:04:05.000")))
			if !ok {
				return false
			}
		}
	}
	return true
}

// poll is waitUntil that fails the test without stopping it, so a scenario
// still checks the rest.
func (f *netFed) poll(d time.Duration, cond func() (bool, string), what string) bool {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return true
		}
		for _, q := range f.nodes {
			if e := q.exited(); e != "" && !q.killed {
				f.fatalf(q, "waiting for %s: %s", what, e)
			}
		}
		if time.Now().After(deadline) {
			f.t.Errorf("timed out after %v waiting for %s; last seen: %s", d, what, last)
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// compareReplica checks that dc holds, byte for byte at the same relative
// path, every segment of every store that ended by cutoff and every epoch
// record that started by then.
func (f *netFed) compareReplica(dc *custosProc, cutoff time.Time) {
	f.t.Helper()
	for _, s := range f.storeList() {
		f.compareStoreReplica(s, dc, cutoff, nil)
	}
}

// compareStoreReplica is compareReplica for store s alone (media/store's
// layout, names.go: segment files are START-END-EPOCH-SHA.seg, epoch files
// START-END-SHA.epoch; camera directories are unique across stores). A file
// whose path relative to the media directory skip reports true is left out
// (say, the range an erasure removed from both sides); skip may be nil.
func (f *netFed) compareStoreReplica(s, dc *custosProc, cutoff time.Time, skip func(rel string) bool) {
	f.t.Helper()
	root := filepath.Join(s.dir, "media")
	segs, epochs := 0, 0
	var problems []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		name := e.Name()
		var t time.Time
		switch {
		case strings.HasPrefix(rel, "segments/") && strings.HasSuffix(name, ".seg"):
			t = nameTime(name, 1) // the end
		case strings.HasPrefix(rel, "epochs/") && strings.HasSuffix(name, ".epoch"):
			t = nameTime(name, 0) // the start
		default:
			return nil
		}
		if t.IsZero() || t.After(cutoff) || (skip != nil && skip(rel)) {
			return nil
		}
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(dc.dir, "media", rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problems = append(problems, "missing "+rel)
		case err != nil:
			return err
		case !bytes.Equal(got, want):
			problems = append(problems, fmt.Sprintf("differs: %s (%d bytes, store %d)", rel, len(got), len(want)))
		}
		if strings.HasSuffix(name, ".seg") {
			segs++
		} else {
			epochs++
		}
		return nil
	})
	if err != nil {
		f.t.Errorf("comparing %s's replica with %s: %v", dc.name, s.name, err)
		return
	}
	if segs == 0 {
		f.t.Errorf("%s has no segment ending by %s to compare", s.name, cutoff.Format(time.RFC3339))
	}
	if len(problems) > 0 {
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("… and %d more", len(problems)-10))
		}
		f.t.Errorf("%s's replica is not %s's (%d segments and %d epoch records compared up to %s):\n%s",
			dc.name, s.name, segs, epochs, cutoff.Format("15:04:05"), strings.Join(problems, "\n"))
		return
	}
	f.logf("%s's replica: all %d segments and %d epoch records of %s up to %s byte-identical to the store's", dc.name, segs, epochs, s.name, cutoff.Format("15:04:05"))
}

// nameTime is the i-th time field of a media file name ("" on a bad name).
func nameTime(name string, i int) time.Time {
	parts := strings.Split(strings.TrimSuffix(strings.TrimSuffix(name, ".seg"), ".epoch"), "-")
	if i >= len(parts) {
		return time.Time{}
	}
	t, err := time.Parse("20060102T150405.000000000Z", parts[i])
	if err != nil {
		return time.Time{}
	}
	return t
}

// liveView is a `custos live` run on desk, writing MPEG-TS to a file.
type liveView struct {
	camera, out string
	cmd         *exec.Cmd
	stderr      bytes.Buffer
	done        chan struct{}
	err         error
}

// startLive runs `custos live` for d on desk (through its socket, from the
// host namespace).
func (f *netFed) startLive(camera string, d time.Duration) *liveView {
	f.t.Helper()
	v := &liveView{camera: camera, out: filepath.Join(f.tmp, strings.ReplaceAll(camera, "/", "_")+".ts"), done: make(chan struct{})}
	for i := 2; ; i++ { // a file of its own for each view
		if _, err := os.Stat(v.out); errors.Is(err, fs.ErrNotExist) {
			break
		}
		v.out = filepath.Join(f.tmp, fmt.Sprintf("%s-%d.ts", strings.ReplaceAll(camera, "/", "_"), i))
	}
	v.cmd = exec.Command(f.bin, "live", "--dir", f.desk.dir, "--camera", camera, "--out", v.out, "--for", d.String())
	v.cmd.Stderr = &v.stderr
	if err := v.cmd.Start(); err != nil {
		f.t.Fatalf("custos live: %v", err)
	}
	f.t.Cleanup(func() { v.cmd.Process.Kill(); <-v.done })
	go func() { v.err = v.cmd.Wait(); close(v.done) }()
	f.logf("live view of %s on desk for %v", camera, d)
	return v
}

// size is how many bytes the viewer has written so far.
func (v *liveView) size() int64 {
	fi, err := os.Stat(v.out)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// checkFlowing fails the test unless the live output grows within d.
func (f *netFed) checkFlowing(v *liveView, d time.Duration, when string) {
	f.t.Helper()
	from := v.size()
	if !f.poll(d, func() (bool, string) {
		return v.size() > from, fmt.Sprintf("%d bytes", v.size())
	}, "live view of "+v.camera+" delivering "+when) {
		return
	}
	f.logf("live view delivering %s (%d bytes so far)", when, v.size())
}

// finishLive waits for the viewer's --for to end and checks its exit and,
// with ffprobe, that its output holds at least minFrames video frames.
func (f *netFed) finishLive(v *liveView, minFrames int) {
	f.t.Helper()
	select {
	case <-v.done:
	case <-time.After(2 * time.Minute):
		f.t.Errorf("custos live of %s still runs long after its --for", v.camera)
		return
	}
	if v.err != nil {
		f.t.Errorf("custos live of %s: %v\n%s", v.camera, v.err, v.stderr.String())
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", v.out).CombinedOutput()
	if err != nil {
		f.t.Errorf("ffprobe of the live view's output: %v: %s", err, out)
		return
	}
	var frames int
	fmt.Sscan(strings.TrimSpace(string(out)), &frames)
	if frames < minFrames {
		f.t.Errorf("live view of %s: ffprobe counts %d frames, want at least %d", v.camera, frames, minFrames)
		return
	}
	f.logf("live view of %s: %d frames (ffprobe), %d bytes", v.camera, frames, v.size())
}
