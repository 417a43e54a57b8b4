package demo

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// releaseCam is the camera whose minute alice asks for.
const releaseCam = "praha-1/entrance"

// approverNames are the admins made approvers besides alice.
var approverNames = []string{"bob", "carol"}

// release: bob and carol become approvers and alice seals the federation
// (governance); alice, at her admin node, asks for a minute of
// praha-1/entrance; one approval is not enough; with bob's and carol's the
// custodians answer for each approved segment, to her node only; the export
// holds exactly the minute, its manifest verifies, and ffprobe counts its
// frames.
func (f *federation) release() error {
	approvers := map[string]*keys.AdminKey{}
	defer func() {
		for _, name := range slices.Backward(approverNames) {
			if k := approvers[name]; k != nil {
				k.Close()
			}
		}
	}()
	if err := f.addApprovers(approvers); err != nil {
		return err
	}
	if err := f.governance(approvers); err != nil {
		return err
	}
	r := &keyRelease{federation: f, approvers: approvers, desk: f.nodes["admin-alice"], deskDir: filepath.Join(f.dir, "admin-alice"),
		out: filepath.Join(f.dir, "exports", "r-demo.ts")}
	if err := r.request(); err != nil {
		return err
	}
	approved, err := r.approvals()
	if err != nil {
		return err
	}
	if err := r.export(approved); err != nil {
		return err
	}
	if err := r.subjectAccess(); err != nil {
		return err
	}
	return r.erasure()
}

// addApprovers makes bob's and carol's keys, into approvers, and has alice
// add them as approvers while she still can alone.
func (f *federation) addApprovers(approvers map[string]*keys.AdminKey) error {
	for _, name := range approverNames {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Minute))
		if err != nil {
			return err
		}
		approvers[name] = k
		if err := f.submit(&policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: name, Role: policy.UserApprover, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}}); err != nil {
			return err
		}
	}
	return nil
}

// keyRelease is the state the key-release steps share: the request r-demo,
// filed and exported at alice's admin node (the desk).
type keyRelease struct {
	*federation
	approvers map[string]*keys.AdminKey
	desk      *node.Node
	deskDir   string
	deskFID   string    // the federation ID as the desk's policy has it
	out       string    // where the export goes
	to        time.Time // the end of the minute r-demo asks for
}

// signAs signs c as name with k; a failure to sign shows as a refusal of
// the empty envelope.
func (r *keyRelease) signAs(k *keys.AdminKey, name string, c *policy.Command) policy.Envelope {
	env, _ := node.SignCommand(k, r.deskFID, name, c)
	return env
}

// request waits until the store holds the minute asked for, then files
// r-demo at the desk, with a one-time key made in the desk's memory.
func (r *keyRelease) request() error {
	r.say("\n== Key release: alice asks for a minute of praha-1/entrance; bob and carol must approve")
	store := r.nodes["store-praha-1"]
	segs, err := store.HeldSegments(releaseCam, time.Time{}, time.Now().Add(time.Hour))
	if err != nil || len(segs) < 2 {
		return fmt.Errorf("no recording to ask for: %v", err)
	}
	from := segs[1].Start // segments start at keyframes
	to := from.Add(time.Minute)
	r.to = to
	r.say("   waiting until the store has recorded the minute %s – %s", from.Local().Format(time.TimeOnly), to.Local().Format(time.TimeOnly))
	if err := nodetest.WaitCond(r.ctx, time.Until(to)+30*time.Second, func() bool {
		segs, _ := store.HeldSegments(releaseCam, to, to.Add(time.Hour))
		return len(segs) > 0
	}); err != nil {
		return fmt.Errorf("the store never recorded the minute: %w", err)
	}
	pub, err := r.desk.NewReleaseKey()
	if err != nil {
		return err
	}
	r.deskFID = r.desk.Policy().FederationID
	res, err := node.SubmitVia(r.ctx, r.deskDir, r.signAs(r.admin, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "r-demo", Node: "admin-alice", Selector: releaseCam, From: from, To: to, Purpose: "a theft reported at the entrance",
		Basis: "GDPR art. 6(1)(f); police report 2026/1127", Key: pub, Expires: time.Now().Add(time.Hour)}}))
	if err != nil || !res.Applied {
		return fmt.Errorf("request: %+v %v", res, err)
	}
	r.say("   alice filed r-demo from admin-alice; its one-time key lives only in that node's memory")
	return nodetest.WaitCond(r.ctx, 10*time.Second, func() bool { return r.desk.Policy().Requests["r-demo"] != nil })
}

// approvals shows that alice cannot approve her own request and that one
// approval does not open an export, then adds carol's; it returns when
// the second approval was committed.
func (r *keyRelease) approvals() (time.Time, error) {
	digest := policy.RequestDigest(r.deskFID, r.desk.Policy().Requests["r-demo"])
	approve := func(k *keys.AdminKey, name string) (node.ApplyResult, error) {
		return node.SubmitVia(r.ctx, r.deskDir, r.signAs(k, name, &policy.Command{Kind: policy.KindApproveRequest, Approval: &policy.Approval{Request: "r-demo", Digest: digest}}))
	}
	if res, err := approve(r.admin, "alice"); err == nil && !res.Applied {
		r.say("   alice approving her own request: refused (%s)", lastClause(res.Reason))
	}
	if res, err := approve(r.approvers["bob"], "bob"); err != nil || !res.Applied {
		return time.Time{}, fmt.Errorf("bob's approval: %+v %v", res, err)
	}
	if err := os.MkdirAll(filepath.Dir(r.out), 0o700); err != nil {
		return time.Time{}, err
	}
	if x, err := r.desk.Export(r.ctx, r.order()); err == nil && x.Refused != "" {
		r.say("   export after bob's approval alone: refused (%s)", x.Refused)
	}
	if res, err := approve(r.approvers["carol"], "carol"); err != nil || !res.Applied {
		return time.Time{}, fmt.Errorf("carol's approval: %+v %v", res, err)
	}
	return time.Now(), nil
}

// order is alice's signed order to export r-demo to r.out.
func (r *keyRelease) order() release.ExportRequest {
	return signedOrder(r.admin, r.deskFID, release.ExportRequest{Request: "r-demo", Out: r.out, Exporter: "alice"})
}

// export exports the approved minute and shows how soon the keys came,
// that the manifest holds, and what ffprobe makes of the file.
func (r *keyRelease) export(approved time.Time) error {
	x, err := r.desk.Export(r.ctx, r.order())
	if err != nil || x.Refused != "" {
		return fmt.Errorf("export: %+v %v", x, err)
	}
	m := x.Manifest
	r.say("   carol approved: dc-a and dc-b each answered for every approved segment, to admin-alice only; keys usable %v after the approval committed",
		(time.Since(approved) - x.Total + x.Release).Round(time.Millisecond))
	r.say("   export %s: %d frames, %.1f MB, from %d segments, in %v; release keys held now: %d",
		r.out, m.Output.Frames, float64(m.Output.Bytes)/1e6, len(m.Segments), x.Total.Round(time.Millisecond), r.desk.HeldReleaseKeys())
	if err := r.checkManifest(m); err != nil {
		return err
	}
	r.probeExport()
	return nil
}

// checkManifest signs the manifest as alice, verifies it as a recipient
// would, checks the export against its SHA-256 and shows its chain of
// custody.
func (r *keyRelease) checkManifest(m *keys.Manifest) error {
	body, sig, err := keys.SignManifest(r.admin, m)
	if err != nil {
		return err
	}
	vm, fp, err := keys.VerifyManifest(body, sig, r.admin.PublicKey())
	if err == nil {
		b, rerr := os.ReadFile(r.out)
		if err = rerr; err == nil {
			err = keys.CheckExport(vm, bytes.NewReader(b))
		}
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	r.say("   manifest signed by alice (%s…), approvers %s: verifies, and the export matches its SHA-256", fp[:16], strings.Join(vm.Approvers, ", "))
	if n := len(vm.Segments); n > 0 {
		first, last := vm.Segments[0], vm.Segments[n-1]
		gaps := "with no gap"
		if len(vm.Gaps) > 0 {
			gaps = fmt.Sprintf("with %d gaps listed in the manifest", len(vm.Gaps))
		}
		r.say("   chain of custody: every segment sealed by store %s, sequence %d to %d %s", first.Store, first.Seq, last.Seq, gaps)
	}
	return nil
}

// probeExport has ffprobe, if installed, count the export's frames.
func (r *keyRelease) probeExport() {
	path, err := exec.LookPath("ffprobe")
	if err != nil {
		return
	}
	o, err := exec.CommandContext(r.ctx, path, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", r.out).Output()
	if err == nil {
		r.say("   ffprobe decodes %s frames (a minute at 25 fps is 1500)", strings.Fields(string(o) + " ?")[0])
	}
}

// signedOrder is req signed by its exporter k; a failure to sign shows as
// the node's refusal of an unsigned order.
func signedOrder(k *keys.AdminKey, fid string, req release.ExportRequest) release.ExportRequest {
	release.SignExport(k, fid, &req)
	return req
}

// lastClause keeps the end of a refusal, the part that says why.
func lastClause(s string) string {
	if i := strings.LastIndex(s, "refused: "); i >= 0 {
		return s[i+len("refused: "):]
	}
	return s
}
