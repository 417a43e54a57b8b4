package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// TestNetnsRollingUpgrade upgrades a running federation one node at a
// time, from a build of the previous policy protocol (this tree with the
// custos_protocol1 tag) to the current one, while the store records two
// cameras: after each node's stop and start a policy write commits, a
// live view plays, and the gated command (passkey.require, protocol 2) is
// refused, naming a node still behind, until the last node runs the new
// release; then it applies everywhere and no replica stops. No segment is
// lost, and both datacenters end byte-identical to the store.
func TestNetnsRollingUpgrade(t *testing.T) {
	needNetns(t)
	dir := t.TempDir()
	build := func(name, version string, tags ...string) string {
		bin := filepath.Join(dir, name)
		args := []string{"build", "-o", bin, "-ldflags", "-X " + module + "/node.Version=" + version}
		if len(tags) > 0 {
			args = append(args, "-tags", strings.Join(tags, ","))
		}
		if out, err := exec.Command("go", append(args, module+"/cmd/custos")...).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
		return bin
	}
	oldBin := build("custos-previous", "previous", "custos_protocol1")
	newBin := build("custos-current", "current")

	f := newNetFedOn(t, oldBin)
	f.waitReplicated(time.Now(), 60*time.Second, f.dcA, f.dcB)
	for _, p := range f.nodes {
		f.checkRelease(p, "previous", 1)
	}
	before := f.storeSegments()

	// gated submits passkey.require (of no role: it changes nothing else)
	// with the new release's CLI through via, and returns its refusal.
	gated := func(via *custosProc) (refusal string) {
		f.t.Helper()
		out, errOut, err := runCLI(30*time.Second, func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, newBin, "passkey", "require", "--roles", "none", "--dir", via.dir, "--as", f.admin)
		})
		if err != nil {
			return strings.TrimSpace(errOut + out)
		}
		return ""
	}

	order := []*custosProc{f.witness, f.dcB, f.dcA, f.store, f.desk}
	for i, p := range order {
		// A graceful stop, as systemd's: SIGTERM, then the new binary on
		// the same directory.
		p.killed = true
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			f.fatalf(p, "SIGTERM %s: %v", p.name, err)
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			f.fatalf(p, "%s did not stop within 30 s of SIGTERM", p.name)
		}
		via := f.store
		if p == f.store {
			via = f.dcA
		}
		f.submit(via, 60*time.Second, "site", "add", "--name", "while-"+p.name+"-down")
		p.bin = newBin
		f.restart(p)
		f.waitReplica(p, 60*time.Second, 0, []string{"praha-1", "while-" + p.name + "-down"})
		f.checkRelease(p, "current", 2)
		f.submit(via, 60*time.Second, "site", "add", "--name", "after-"+p.name)
		f.logf("%s upgraded (%d of %d); policy writable while it was down and after", p.name, i+1, len(order))

		if p != f.desk {
			v := f.startLive(netCameras[0], 8*time.Second)
			f.finishLive(v, 8*25/2)
		}
		if i < len(order)-1 {
			behind := order[i+1].name
			r := gated(f.dcA)
			if r == "" {
				f.t.Fatalf("passkey.require committed with %s still on the previous release", behind)
			}
			// An old leader refuses it as newer than itself; a new one
			// names who is behind.
			if !strings.Contains(r, "needs protocol 2") {
				f.t.Errorf("refusal with %s behind: %s", behind, r)
			}
			f.logf("gated command refused: %s", r)
		}
	}
	f.bin = newBin // the admin's CLI too
	f.poll(60*time.Second, func() (bool, string) {
		r := gated(f.dcA)
		return r == "", r
	}, "passkey.require to commit once every node runs the new release")
	for _, p := range f.nodes {
		f.checkRelease(p, "current", 2)
		f.waitUntil(p, 30*time.Second, p.name+" to apply passkey.require", func() (bool, string) {
			var st struct {
				Commands map[string]int `json:"policy_commands"`
			}
			_, err := f.statusInto(p, &st)
			return err == nil && st.Commands["passkey.require"] == 1, fmt.Sprint(st.Commands, err)
		})
	}
	members := f.must(f.dcA, "members", "--dir", f.dcA.dir)
	if strings.Count(members, fmt.Sprintf("current (protocol %d)", policy.Protocol)) != len(f.nodes) {
		t.Errorf("custos members after the upgrade:\n%s", members)
	}

	cutoff := time.Now()
	if f.waitReplicated(cutoff, 120*time.Second, f.dcA, f.dcB) {
		f.compareReplica(f.dcA, cutoff)
		f.compareReplica(f.dcB, cutoff)
	}
	if after := f.storeSegments(); after <= before {
		t.Errorf("the store holds %d segments, %d before the upgrade", after, before)
	}
}

// checkRelease checks p's own status: its release, its protocol, and a
// replica that has not stopped.
func (f *netFed) checkRelease(p *custosProc, version string, protocol int) {
	f.t.Helper()
	var st struct {
		Version  string `json:"version"`
		Protocol int    `json:"protocol"`
		Stalled  string `json:"policy_stalled"`
	}
	if _, err := f.statusInto(p, &st); err != nil {
		f.fatalf(p, "status of %s: %v", p.name, err)
	}
	if st.Protocol == 0 {
		st.Protocol = 1 // a previous release's status may not say
	}
	if st.Version != version || st.Protocol != protocol || st.Stalled != "" {
		f.t.Errorf("%s: release %q protocol %d stalled %q; want %q protocol %d", p.name, st.Version, st.Protocol, st.Stalled, version, protocol)
	}
}
