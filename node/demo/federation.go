package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/node/release"
	"github.com/custos-cctv/custos/policy"
)

// runFederation founds a federation on this machine: dc-a, then dc-b,
// a witness, two stores and an admin node join with invite tokens; an
// installer joins one store for a short window and is dropped at its end by
// every node's own clock; a revoked store is cut off. It prints each step
// and the cluster's status.
func runFederation(ctx context.Context, w io.Writer, dir string, logf func(string, ...any)) error {
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	loop := netip.MustParseAddr("127.0.0.1")
	listen := func() (netip.AddrPort, error) {
		p, err := nodetest.FreeUDPPort()
		return netip.AddrPortFrom(loop, p), err
	}
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	defer admin.Close()
	nodes := map[string]*node.Node{}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	start := func(name string, ap netip.AddrPort) error {
		// Short segments, so the demo shows them accumulate.
		var nlogf func(string, ...any)
		if logf != nil {
			nlogf = func(f string, a ...any) { logf(name+": "+f, a...) }
		}
		n, err := node.New(node.Config{Dir: filepath.Join(dir, name), Name: name, Listen: ap, Logf: nlogf,
			Recording: recording.Config{Segment: ts.Config{Target: 2 * time.Second}}})
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		nodes[name] = n
		return nil
	}
	var fid string // the federation's ID, once dc-a is founded
	submit := func(c *policy.Command) error {
		env, err := node.SignCommand(admin, fid, "alice", c)
		if err != nil {
			return err
		}
		res, err := node.SubmitVia(ctx, filepath.Join(dir, "dc-a"), env)
		if err != nil {
			return err
		}
		if !res.Applied {
			return fmt.Errorf("%s refused: %s", c.Kind, res.Reason)
		}
		return nil
	}

	say("\n== Federation demo: Raft over the mesh, joining by invite (data in %s)", dir)
	ap, err := listen()
	if err != nil {
		return err
	}
	// Demo shortcut: the controller's recovery key is made here, in the demo
	// process, where custos recovery keygen would make it on the admin's
	// machine; only its public half goes to dc-a, and the demo never
	// needs the private half, so it is wiped at once.
	recovery, err := keys.NewCustodianKey("recovery")
	if err != nil {
		return err
	}
	recoveryPub := recovery.Custodian().PublicKey()
	recovery.Zero()
	if err := node.Init(node.Config{Dir: filepath.Join(dir, "dc-a"), Name: "dc-a", Listen: ap},
		node.InitOptions{Federation: "acme-retail", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint(), Recovery: recoveryPub}); err != nil {
		return err
	}
	if fid, err = node.FederationIDOf(filepath.Join(dir, "dc-a")); err != nil {
		return err
	}
	if err := start("dc-a", ap); err != nil {
		return err
	}
	say("   dc-a founded federation \"acme-retail\"; first admin alice (%s)", admin.Fingerprint()[:16])
	for _, s := range []string{"praha-1", "brno-1"} {
		if err := submit(&policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: s, Jurisdiction: "EU"}}); err != nil {
			return err
		}
	}
	for _, c := range []*policy.Camera{
		{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention},
		{Site: "praha-1", Name: "tills", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention, Tags: []string{"tills"}},
		{Site: "brno-1", Name: "door", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention},
		{Site: "brno-1", Name: "yard", Source: "synthetic:?fps=10", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: 24 * time.Hour},
	} {
		if err := submit(&policy.Command{Kind: policy.KindAddCamera, Camera: c}); err != nil {
			return err
		}
	}
	joinAs := func(name string, role policy.NodeRole, site string, win policy.Window) (time.Duration, error) {
		t0 := time.Now()
		inv, err := node.MakeInvite(ctx, filepath.Join(dir, "dc-a"), admin, "alice",
			node.InviteSpec{Role: role, Name: name, Site: site, Window: win, Expires: time.Now().Add(time.Hour)}, time.Now())
		if err != nil {
			return 0, fmt.Errorf("invite %s: %w", name, err)
		}
		tok, err := node.DecodeToken(inv.Token, time.Now())
		if err != nil {
			return 0, err
		}
		ap, err := listen()
		if err != nil {
			return 0, err
		}
		res, err := node.PrepareJoin(ctx, node.Config{Dir: filepath.Join(dir, name), Name: name, Listen: ap}, tok)
		if err != nil {
			return 0, err
		}
		if !res.Applied {
			return 0, fmt.Errorf("join %s refused: %s", name, res.Reason)
		}
		if err := start(name, ap); err != nil {
			return 0, err
		}
		if err := nodetest.WaitCond(ctx, 30*time.Second, func() bool {
			st := nodes[name].Policy()
			return st != nil && st.Nodes[name] != nil
		}); err != nil {
			return 0, fmt.Errorf("%s never received the policy: %w", name, err)
		}
		return time.Since(t0), nil
	}
	for _, j := range []struct {
		name string
		role policy.NodeRole
		site string
	}{{"dc-b", policy.RoleDatacenter, ""}, {"witness", policy.RoleWitness, ""}, {"store-praha-1", policy.RoleStore, "praha-1"},
		{"store-brno-1", policy.RoleStore, "brno-1"}, {"admin-alice", policy.RoleAdminNode, ""}} {
		d, err := joinAs(j.name, j.role, j.site, policy.Window{})
		if err != nil {
			return err
		}
		say("   %-14s joined as %-10s (token → replica of the policy in %v)", j.name, j.role, d.Round(time.Millisecond))
	}

	say("\n== Each store records its site's two synthetic cameras, encrypted per epoch")
	if err := nodetest.WaitCond(ctx, 20*time.Second, func() bool {
		for _, name := range []string{"store-praha-1", "store-brno-1"} {
			st, err := nodes[name].Status()
			if err != nil || st.Recording == nil || len(st.Recording.Cameras) != 2 {
				return false
			}
			for _, c := range st.Recording.Cameras {
				if c.SegmentsWritten < 1 {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("the stores are not recording: %w", err)
	}
	for _, name := range []string{"store-praha-1", "store-brno-1"} {
		demoCameras(w, name, nodes[name])
	}
	demoEncrypted(w, filepath.Join(dir, "store-praha-1"))

	// The window must outlast the join itself, which takes seconds on a
	// loaded machine (a window that ends first admits no one); replication
	// and live view are shown while it runs.
	const window = 25 * time.Second
	say("\n== An installer joins praha-1 for %v", window)
	end := time.Now().Add(window)
	if _, err := joinAs("installer-jan", policy.RoleInstaller, "praha-1", policy.Window{Until: end}); err != nil {
		return err
	}
	inst := nodes["installer-jan"].Mesh().Addr()
	peerOf := func(n string) bool { _, ok := nodes[n].Mesh().PeerByAddr(inst); return ok }
	// The drop is timed from the window's end while the demo goes on with
	// replication and live view.
	type drop struct {
		after time.Duration
		err   error
	}
	dropped, quit := make(chan drop, 1), make(chan struct{})
	defer close(quit)
	stMesh, dcMesh := nodes["store-praha-1"].Mesh(), nodes["dc-a"].Mesh()
	go func() {
		select {
		case <-time.After(time.Until(end)):
		case <-quit:
			return
		}
		for {
			_, st := stMesh.PeerByAddr(inst)
			_, dc := dcMesh.PeerByAddr(inst)
			if !st && !dc {
				dropped <- drop{after: time.Since(end)}
				return
			}
			if time.Since(end) > 5*time.Second {
				dropped <- drop{err: fmt.Errorf("still a peer %v after its window", time.Since(end).Round(time.Millisecond))}
				return
			}
			select {
			case <-time.After(5 * time.Millisecond):
			case <-quit:
				return
			}
		}
	}()
	say("   peer of store-praha-1: %v, of store-brno-1: %v (stores see only their own site's installers)", peerOf("store-praha-1"), peerOf("store-brno-1"))
	for _, q := range []struct {
		act policy.Action
		cam string
	}{{policy.ActLive, "praha-1/entrance"}, {policy.ActPlayback, "praha-1/entrance"}, {policy.ActLive, "brno-1/door"}} {
		d := policy.Authorize(nodes["store-praha-1"].Policy(), policy.Subject{Kind: "node", Name: "installer-jan"}, q.act, q.cam, time.Now())
		verdict := "denied"
		if d.Allow {
			verdict = "allowed"
		}
		say("   installer %-8s %-17s %s: %s", q.act, q.cam, verdict, d.Reason)
	}

	if err := demoReplication(ctx, w, nodes); err != nil {
		return err
	}
	if err := demoLive(ctx, w, dir, nodes, submit); err != nil {
		return err
	}

	say("\n== The installer's window ends")
	var d drop
	select {
	case d = <-dropped:
	case <-ctx.Done():
		return ctx.Err()
	}
	if d.err != nil {
		return fmt.Errorf("installer: %w", d.err)
	}
	say("   dropped by store-praha-1 and dc-a %v after its end, by their own clocks", d.after.Round(time.Millisecond))

	say("\n== store-brno-1 is revoked")
	brno := nodes["store-brno-1"].Mesh().Addr()
	if err := submit(&policy.Command{Kind: policy.KindRevokeNode, Name: "store-brno-1"}); err != nil {
		return err
	}
	t0 := time.Now()
	if err := nodetest.WaitCond(ctx, 5*time.Second, func() bool {
		for _, n := range []string{"dc-a", "dc-b", "witness", "admin-alice"} {
			if _, ok := nodes[n].Mesh().PeerByAddr(brno); ok {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("revoked store still connected: %w", err)
	}
	say("   cut off by every node within %v", time.Since(t0).Round(time.Millisecond))

	say("\n== Recordings a little later (store-brno-1, cut off, never heard of its revocation: it keeps")
	say("   recording locally, encrypted to keys whose shares only the datacenters and the recovery key open)")
	for _, name := range []string{"store-praha-1", "store-brno-1"} {
		demoCameras(w, name, nodes[name])
	}

	if err := demoRelease(ctx, w, dir, nodes, admin, submit); err != nil {
		return err
	}

	st, err := nodes["dc-a"].Status()
	if err == nil && st.Consensus != nil {
		c := st.Consensus
		say("\n== dc-a: raft %s, term %d, commit %d; members:", c.Role, c.Term, c.CommitIndex)
		pol := nodes["dc-a"].Policy()
		for _, m := range c.Members {
			kind := "non-voter"
			if m.Voter {
				kind = "voter"
			}
			say("   %-14s %s", node.NameByKey(pol, m.ID), kind)
		}
	}
	return nil
}

// demoCameras prints what a store records.
func demoCameras(w io.Writer, name string, n *node.Node) {
	st, err := n.Status()
	if err != nil || st.Recording == nil {
		return
	}
	if st.Recording.Waiting != "" {
		fmt.Fprintf(w, "   %s: not recording: %s\n", name, st.Recording.Waiting)
	}
	for _, c := range st.Recording.Cameras {
		fmt.Fprintf(w, "   %-14s %-17s %-9s %4.1f fps %6.0f kbit/s  %3d segments %6.2f MB  %d epoch keys  last %s\n",
			name, c.Camera, c.State, c.FPS, c.BitrateBPS/1000, c.Segments, float64(c.Bytes)/1e6, c.Epochs, c.LastSegment.Local().Format(time.TimeOnly))
	}
}

// demoEncrypted shows a few stored segment files: OpenPGP messages, no
// MPEG-TS packet or H.264 start code in sight.
func demoEncrypted(w io.Writer, dir string) {
	var files []string
	filepath.WalkDir(node.MediaDir(dir), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(path, ".seg") {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	for i, f := range files {
		if i == 2 {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(w, "   %s…seg: %d bytes, starts % x (an OpenPGP message); MPEG-TS packets in it: %d\n",
			rel[:min(len(rel), 70)], len(b), b[:min(4, len(b))], nodetest.TSPackets(b))
	}
}

// demoRelease: bob and carol become approvers and alice seals the
// federation (demoGovernance); alice, at her admin node, asks for a minute
// of praha-1/entrance; one approval is not enough; with bob's and carol's
// the custodians answer for each approved segment, to her node only; the export holds exactly the minute, its
// manifest verifies, and ffprobe counts its frames.
func demoRelease(ctx context.Context, w io.Writer, dir string, nodes map[string]*node.Node, alice *keys.AdminKey, submit func(*policy.Command) error) error {
	say := func(f string, a ...any) { fmt.Fprintf(w, f+"\n", a...) }
	approvers := map[string]*keys.AdminKey{}
	for _, name := range []string{"bob", "carol"} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Minute))
		if err != nil {
			return err
		}
		defer k.Close()
		approvers[name] = k
		if err := submit(&policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: name, Role: policy.UserApprover, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}}); err != nil {
			return err
		}
	}
	if err := demoGovernance(ctx, w, nodes["admin-alice"], filepath.Join(dir, "admin-alice"), alice, approvers, submit); err != nil {
		return err
	}
	say("\n== Key release: alice asks for a minute of praha-1/entrance; bob and carol must approve")
	const cam = "praha-1/entrance"
	store := nodes["store-praha-1"]
	segs, err := store.HeldSegments(cam, time.Time{}, time.Now().Add(time.Hour))
	if err != nil || len(segs) < 2 {
		return fmt.Errorf("no recording to ask for: %v", err)
	}
	from := segs[1].Start // segments start at keyframes
	to := from.Add(time.Minute)
	say("   waiting until the store has recorded the minute %s – %s", from.Local().Format(time.TimeOnly), to.Local().Format(time.TimeOnly))
	if err := nodetest.WaitCond(ctx, time.Until(to)+30*time.Second, func() bool {
		segs, _ := store.HeldSegments(cam, to, to.Add(time.Hour))
		return len(segs) > 0
	}); err != nil {
		return fmt.Errorf("the store never recorded the minute: %w", err)
	}
	desk := nodes["admin-alice"]
	pub, err := desk.NewReleaseKey()
	if err != nil {
		return err
	}
	deskDir := filepath.Join(dir, "admin-alice")
	fid := desk.Policy().FederationID
	signAs := func(k *keys.AdminKey, name string, c *policy.Command) policy.Envelope {
		env, _ := node.SignCommand(k, fid, name, c)
		return env
	}
	res, err := node.SubmitVia(ctx, deskDir, signAs(alice, "alice", &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{
		ID: "r-demo", Node: "admin-alice", Selector: cam, From: from, To: to, Purpose: "a theft reported at the entrance",
		Basis: "GDPR art. 6(1)(f); police report 2026/1127", Key: pub, Expires: time.Now().Add(time.Hour)}}))
	if err != nil || !res.Applied {
		return fmt.Errorf("request: %+v %v", res, err)
	}
	say("   alice filed r-demo from admin-alice; its one-time key lives only in that node's memory")
	if err := nodetest.WaitCond(ctx, 10*time.Second, func() bool { return desk.Policy().Requests["r-demo"] != nil }); err != nil {
		return err
	}
	digest := policy.RequestDigest(fid, desk.Policy().Requests["r-demo"])
	approve := func(k *keys.AdminKey, name string) (node.ApplyResult, error) {
		return node.SubmitVia(ctx, deskDir, signAs(k, name, &policy.Command{Kind: policy.KindApproveRequest, Approval: &policy.Approval{Request: "r-demo", Digest: digest}}))
	}
	if res, err := approve(alice, "alice"); err == nil && !res.Applied {
		say("   alice approving her own request: refused (%s)", lastClause(res.Reason))
	}
	if res, err := approve(approvers["bob"], "bob"); err != nil || !res.Applied {
		return fmt.Errorf("bob's approval: %+v %v", res, err)
	}
	out := filepath.Join(dir, "exports", "r-demo.ts")
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	if r, err := desk.Export(ctx, signedOrder(alice, fid, release.ExportRequest{Request: "r-demo", Out: out, Exporter: "alice"})); err == nil && r.Refused != "" {
		say("   export after bob's approval alone: refused (%s)", r.Refused)
	}
	if res, err := approve(approvers["carol"], "carol"); err != nil || !res.Applied {
		return fmt.Errorf("carol's approval: %+v %v", res, err)
	}
	approved := time.Now()
	r, err := desk.Export(ctx, signedOrder(alice, fid, release.ExportRequest{Request: "r-demo", Out: out, Exporter: "alice"}))
	if err != nil || r.Refused != "" {
		return fmt.Errorf("export: %+v %v", r, err)
	}
	m := r.Manifest
	say("   carol approved: dc-a and dc-b each answered for every approved segment, to admin-alice only; keys usable %v after the approval committed",
		(time.Since(approved) - r.Total + r.Release).Round(time.Millisecond))
	say("   export %s: %d frames, %.1f MB, from %d segments, in %v; release keys held now: %d",
		out, m.Output.Frames, float64(m.Output.Bytes)/1e6, len(m.Segments), r.Total.Round(time.Millisecond), desk.HeldReleaseKeys())
	body, sig, err := keys.SignManifest(alice, m)
	if err != nil {
		return err
	}
	vm, fp, err := keys.VerifyManifest(body, sig, alice.PublicKey())
	if err == nil {
		b, rerr := os.ReadFile(out)
		if err = rerr; err == nil {
			err = keys.CheckExport(vm, bytes.NewReader(b))
		}
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	say("   manifest signed by alice (%s…), approvers %s: verifies, and the export matches its SHA-256", fp[:16], strings.Join(vm.Approvers, ", "))
	if n := len(vm.Segments); n > 0 {
		first, last := vm.Segments[0], vm.Segments[n-1]
		gaps := "with no gap"
		if len(vm.Gaps) > 0 {
			gaps = fmt.Sprintf("with %d gaps listed in the manifest", len(vm.Gaps))
		}
		say("   chain of custody: every segment sealed by store %s, sequence %d to %d %s", first.Store, first.Seq, last.Seq, gaps)
	}
	if path, err := exec.LookPath("ffprobe"); err == nil {
		o, err := exec.CommandContext(ctx, path, "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", out).Output()
		if err == nil {
			say("   ffprobe decodes %s frames (a minute at 25 fps is 1500)", strings.Fields(string(o) + " ?")[0])
		}
	}
	return nil
}

// lastClause keeps the end of a refusal, the part that says why.
func lastClause(s string) string {
	if i := strings.LastIndex(s, "refused: "); i >= 0 {
		return s[i+len("refused: "):]
	}
	return s
}
